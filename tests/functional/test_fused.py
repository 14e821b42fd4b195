"""The fused multi-step neurons against the step-by-step reference."""

import pytest
import torch

from spikeformer.nn import IF, LIF, ATan, FastSigmoid, Sigmoid


@pytest.mark.parametrize("cls", [LIF, IF])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.2])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("surrogate", [Sigmoid, ATan, FastSigmoid])
def test_fused_matches_reference(cls, v_reset, detach_reset, surrogate):
    torch.manual_seed(0)
    kw = dict(v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate())
    if cls is LIF:
        kw.update(tau=3.0, decay_input=bool(v_reset is None))
    x = (torch.randn(6, 4, 5) * 1.5).requires_grad_(True)
    ref, fused = cls(**kw), cls(**kw, backend="fused")
    s_ref = ref(x)
    s_fused = fused(x)
    assert torch.equal(s_ref, s_fused)
    assert torch.allclose(ref.v, fused.v, atol=1e-6)
    w = torch.randn_like(s_ref)
    (g_ref,) = torch.autograd.grad((s_ref * w).sum() + ref.v.sum(), x)
    (g_fused,) = torch.autograd.grad((s_fused * w).sum() + fused.v.sum(), x)
    assert torch.allclose(g_ref, g_fused, atol=1e-5), (g_ref - g_fused).abs().max()


def test_fused_backend_in_a_model_gives_same_outputs_and_grads():
    import spikeformer

    torch.manual_seed(0)
    kw = dict(img_size=28, in_chans=1, num_classes=10, embed_dim=32, depth=1, num_heads=4, timesteps=3)
    a = spikeformer.create_model("spikformer-4-384", **kw)
    b = spikeformer.create_model("spikformer-4-384", backend="fused", **kw)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 1, 28, 28) * 4
    ya, yb = a(x), b(x)
    assert torch.allclose(ya, yb, atol=1e-5)
    ya.sum().backward()
    yb.sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4, rtol=1e-3), n

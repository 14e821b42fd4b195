"""The compiled CPU kernels against plain torch (they must build on every machine the tests run on)."""

import pytest
import torch
import torch.nn.functional as F

from spikeformer.functional import fused
from spikeformer.kernels import cpu as kernels


@pytest.fixture(scope="module")
def k():
    mod = kernels.get()
    assert mod is not None, f"compiled kernels did not build: {kernels.unavailable_reason()}"
    return mod


def _events(shape, rate, seed, values=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) < rate).float()
    if values:  # sums of spikes (residual paths) and negative values: any non-zero input is an event
        x = x * torch.randint(-2, 4, shape, generator=g).float()
    return x


@pytest.mark.parametrize("m,kk,n", [(37, 50, 70), (64, 128, 64), (5, 16, 10), (1, 300, 130)])
@pytest.mark.parametrize("values", [False, True])
def test_event_linear_matches_dense(k, m, kk, n, values):
    x = _events((m, kk), 0.2, m + kk, values)
    w = torch.randn(n, kk)
    b = torch.randn(n)
    got = k.event_linear(x, w.t().contiguous(), b)
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-4, atol=1e-4)
    got = k.event_linear(x, w.t().contiguous(), torch.empty(0))  # no bias
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-4, atol=1e-4)


def test_event_linear_all_zero_rows_give_the_bias(k):
    x = torch.zeros(3, 20)
    b = torch.randn(7)
    assert torch.equal(k.event_linear(x, torch.randn(20, 7), b), b.expand(3, 7))


@pytest.mark.parametrize("c,o,h,w", [(3, 10, 5, 7), (16, 96, 8, 8), (48, 64, 6, 5), (8, 130, 3, 3)])
def test_event_conv3x3_matches_conv2d(k, c, o, h, w):
    x = _events((2, c, h, w), 0.25, c * o, values=True)
    weight = torch.randn(o, c, 3, 3)
    bias = torch.randn(o)
    wt = weight.permute(2, 3, 1, 0).reshape(9 * c, o).contiguous()
    torch.testing.assert_close(k.event_conv3x3(x, wt, bias), F.conv2d(x, weight, bias, padding=1), rtol=1e-4, atol=1e-4)


def _both_paths(monkeypatch, fn):
    with_kernels = fn()
    monkeypatch.setattr(fused, "_kernels", lambda *t: None)  # the torch loop of spikeformer.functional.fused
    return with_kernels, fn()


@pytest.mark.parametrize("v_reset", [0.0, -0.3, None])
@pytest.mark.parametrize("decay", [0.5, None])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan", "fast_sigmoid"])
@pytest.mark.parametrize("detach", [True, False])
def test_lif_kernel_is_identical_to_the_torch_loop(k, monkeypatch, v_reset, decay, surrogate, detach):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(6, 3, 700, generator=g) * 1.5  # 2,100 neurons: several kernel chunks and a partial one
    gs = torch.randn(6, 3, 700, generator=g)

    def run():
        x = x0.clone().requires_grad_(True)
        v0 = torch.full((3, 700), 0.1, requires_grad=True)
        s, v = fused.fused_multistep(x, v0, decay, True, 1.0, v_reset, detach, surrogate, 4.0)
        (s * gs).sum().add((v * 0.5).sum()).backward()
        return s.detach(), v.detach(), x.grad, v0.grad

    (s1, v1, gx1, gv1), (s2, v2, gx2, gv2) = _both_paths(monkeypatch, run)
    assert torch.equal(s1, s2)  # identical spikes: same operations in the same order
    assert torch.equal(v1, v2)
    torch.testing.assert_close(gx1, gx2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gv1, gv2, rtol=1e-5, atol=1e-6)


def test_kernels_can_be_disabled(monkeypatch):
    monkeypatch.setattr(kernels, "_state", {"done": False, "module": None, "reason": None})
    monkeypatch.setenv("SPIKEFORMER_KERNELS", "0")
    assert kernels.get() is None
    assert "SPIKEFORMER_KERNELS=0" in kernels.unavailable_reason()


def test_lif_kernel_reads_and_writes_bfloat16(k):
    """bf16 in and out (CPU autocast): the membrane is float32, so the spikes are those of the float32 recurrence on
    the same (rounded) inputs; dL/dx comes back in bf16, rounded to nearest even like a torch cast."""
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(5, 2, 900, generator=g) * 1.5).to(torch.bfloat16)
    gs = torch.randn(5, 2, 900, generator=g).to(torch.bfloat16)
    v0 = torch.zeros(1)
    s, v, h = k.lif_forward(x, v0, 0.5, 0.5, 0.0, 1.0, False, 0.0, True)
    s32, v32, h32 = k.lif_forward(x.float(), v0, 0.5, 0.5, 0.0, 1.0, False, 0.0, True)
    assert s.dtype == torch.bfloat16 and torch.equal(s.float(), s32) and torch.equal(h, h32) and torch.equal(v, v32)
    gv = torch.zeros(2 * 900)
    gx, g0 = k.lif_backward(h, gs, gv, 0.5, 0.5, 1.0, False, 0.0, True, 0, 4.0)
    gx32, g032 = k.lif_backward(h, gs.float(), gv, 0.5, 0.5, 1.0, False, 0.0, True, 0, 4.0)
    assert gx.dtype == torch.bfloat16 and torch.equal(gx, gx32.to(torch.bfloat16)) and torch.equal(g0, g032)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "k_s_p,hw", [((3, 2, 1), (9, 8)), ((3, 2, 1), (16, 16)), ((2, 2, 0), (7, 6)), ((3, 1, 1), (5, 7))]
)
def test_max_pool_with_argmax_trains_like_torch(k, dtype, k_s_p, hw):
    """Spike maps are full of ties: the gradient goes to the first maximum of each window in scan order, as in
    PyTorch; a pixel picked by several windows sums their gradients (in float32, rounded once)."""
    from spikeformer.runtime.pool import FastMaxPool2d

    kk, s, p = k_s_p
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(3, 40, *hw, generator=g) < 0.4).float() + torch.randn(3, 40, *hw, generator=g).clamp(min=0) * 0.3
    x = x.round().to(dtype).requires_grad_(True)  # integer-valued: many ties
    y = FastMaxPool2d(kk, s, p)(x)
    go = torch.randn(y.shape, generator=g).to(dtype)
    (gx,) = torch.autograd.grad(y, x, go)
    xr = x.detach().float().requires_grad_(True)
    yr = F.max_pool2d(xr, kk, s, p)
    (gr,) = torch.autograd.grad(yr, xr, go.float())
    assert y.dtype == dtype and torch.equal(y.float(), yr)
    assert gx.dtype == dtype and torch.equal(gx.float(), gr.to(dtype).float())


@pytest.mark.parametrize("int8_spikes", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_lif_reading_int32_accumulators_equals_dequantize_then_lif(k, int8_spikes, with_bias):
    g = torch.Generator().manual_seed(6)
    acc = torch.randint(-300, 300, (4, 3, 5, 48), generator=g, dtype=torch.int32)  # [T, B, N, C] products
    scale = torch.rand(48, generator=g) * 0.03
    bias = torch.randn(48, generator=g) * 0.3 if with_bias else torch.empty(0)
    v0 = torch.zeros(1)
    x = k.dequantize([acc.reshape(-1, 48)], scale[None], bias, 0).reshape(acc.shape)
    s_ref, v_ref, _ = k.lif_forward(x, v0, 0.5, 0.5, 0.0, 1.0, False, 0.0, False)
    s, v = k.lif_forward_dequant(acc, scale, bias, v0, 0.5, 0.5, 0.0, 1.0, False, 0.0, int8_spikes)
    assert s.dtype == (torch.int8 if int8_spikes else torch.float32)
    assert torch.equal(s.float(), s_ref) and torch.equal(v, v_ref) and s_ref.mean() > 0.05

import pytest
import torch

from spikeformer.functional import lif_multistep
from spikeformer.nn import IF, LIF, PLIF, ATan, FastSigmoid, Sigmoid, make_surrogate, reset_states


def test_lif_module_matches_functional_reference():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5) * 2
    s_ref, v_ref = lif_multistep(x, tau=2.0)
    n = LIF(tau=2.0)
    assert torch.equal(n(x), s_ref)
    assert torch.allclose(n.v, v_ref)


def test_internal_state_persists_until_reset():
    n = LIF(step_mode="s")
    x = torch.full((1,), 1.6)
    out = [n(x).item() for _ in range(3)]  # h = 0.8, 1.2 (spike, reset), 0.8
    assert out == [0.0, 1.0, 0.0]
    reset_states(torch.nn.Sequential(n))
    assert n.v is None
    assert n(x).item() == 0.0


def test_explicit_state_does_not_touch_internal_state():
    n = LIF()
    x = torch.full((4, 2), 0.9)
    s1, v1 = n(x, None)
    assert n.v is None
    s2, v2 = n(x, v1)  # continuing from v1 equals running 8 steps at once
    s_all = n(torch.full((8, 2), 0.9))
    assert torch.equal(torch.cat([s1, s2]), s_all)


def test_single_and_multi_step_agree():
    torch.manual_seed(1)
    x = torch.randn(6, 4)
    multi = LIF(tau=3.0)(x)
    single = LIF(tau=3.0, step_mode="s")
    assert torch.equal(torch.stack([single(xt) for xt in x]), multi)


def test_if_and_plif():
    x = torch.full((4, 1), 0.6)
    assert IF()(x)[:, 0].tolist() == [0, 1, 0, 1]
    p = PLIF(init_tau=2.0)
    assert p.tau == pytest.approx(2.0)
    torch.manual_seed(0)
    xr = torch.randn(5, 3)
    assert torch.equal(p(xr), LIF(tau=2.0)(xr))
    p(torch.randn(5, 3) + 1).sum().backward()
    assert p.w.grad is not None and p.w.grad.abs() > 0  # the time constant learns


@pytest.mark.parametrize("cls,alpha", [(Sigmoid, 4.0), (ATan, 2.0), (FastSigmoid, 10.0)])
def test_surrogate_modules_expose_hyper_parameters(cls, alpha):
    s = cls()
    assert s.alpha == alpha
    assert make_surrogate(cls.name, 3.0).alpha == 3.0
    assert f"alpha={alpha}" in repr(s)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tau": 1.0}, "tau"),
        ({"v_threshold": 0.0}, "v_threshold"),
        ({"step_mode": "x"}, "step_mode"),
        ({"backend": "nope"}, "backend"),
    ],
)
def test_bad_neuron_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)


def test_unknown_surrogate():
    with pytest.raises(ValueError, match="accepted"):
        make_surrogate("relu")

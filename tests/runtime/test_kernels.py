"""The compiled CPU kernels against plain torch (they must build on every machine the tests run on)."""

import pytest
import torch
import torch.nn.functional as F

from spikeformer.functional import fused, kernels


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

import math

import pytest
import torch

from spikeformer.functional.surrogate import ATanSpike, FastSigmoidSpike, SigmoidSpike


def _numeric(fn, x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    return (fn(x + eps) - fn(x - eps)) / (2 * eps)


@pytest.mark.parametrize(
    "cls,alpha,primitive",
    [
        (SigmoidSpike, 4.0, lambda x, a: torch.sigmoid(a * x)),
        (ATanSpike, 2.0, lambda x, a: torch.atan(math.pi / 2 * a * x) / math.pi + 0.5),
        (FastSigmoidSpike, 10.0, lambda x, a: x / (1 + a * x.abs())),
    ],
)
def test_surrogate_gradient_is_derivative_of_its_primitive(cls, alpha, primitive):
    x = torch.linspace(-2, 2, 101, dtype=torch.float64).requires_grad_(True)
    y = cls.apply(x, alpha)
    assert torch.equal(y, (x >= 0).double())
    (g,) = torch.autograd.grad(y.sum(), x)
    expected = _numeric(lambda z: primitive(z, alpha), x.detach())
    mask = x.detach().abs() > 1e-3  # FastSigmoid's derivative has a kink at 0
    assert torch.allclose(g[mask], expected[mask], atol=1e-6)


def test_sigmoid_surrogate_peak_value():
    x = torch.zeros(1, requires_grad=True)
    SigmoidSpike.apply(x, 4.0).sum().backward()
    assert x.grad.item() == pytest.approx(1.0)  # alpha * 0.5 * 0.5

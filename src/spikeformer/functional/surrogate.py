"""Surrogate gradients for the Heaviside spike function.

The forward pass of every surrogate is the Heaviside step ``S = H(x) = 1[x >= 0]`` (``x = v - v_threshold``); the
backward pass replaces the Dirac delta by the derivative of a smooth function. Each surrogate is a
``torch.autograd.Function`` whose hyper-parameter is a plain float argument, so it can be inspected and saved.

Derivatives (``sg`` is the logistic sigmoid):
- Sigmoid (Spikformer default, alpha = 4): ``d/dx sg(alpha x) = alpha sg(alpha x) (1 - sg(alpha x))``.
- ATan (Fang et al., ICCV 2021, alpha = 2):
  ``d/dx [arctan(pi/2 alpha x) / pi + 1/2] = alpha / 2 / (1 + (pi/2 alpha x)^2)``.
- FastSigmoid / SuperSpike (Zenke & Ganguli, 2018, alpha = 10): ``d/dx [x / (1 + alpha |x|)] = 1 / (1 + alpha |x|)^2``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "heaviside",
    "SigmoidSpike",
    "ATanSpike",
    "FastSigmoidSpike",
    "sigmoid_grad",
    "atan_grad",
    "fast_sigmoid_grad",
]


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Heaviside step ``1[x >= 0]`` in the dtype of ``x`` (a spike exactly at threshold fires, as in SpikingJelly)."""
    return (x >= 0).to(x.dtype)


def sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Analytic derivative of ``sigmoid(alpha x)``."""
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


def atan_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Analytic derivative of ``arctan(pi/2 alpha x) / pi + 1/2``."""
    return alpha / 2.0 / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def fast_sigmoid_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Analytic derivative of ``x / (1 + alpha |x|)`` (SuperSpike)."""
    return 1.0 / (1.0 + alpha * x.abs()) ** 2


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, ``grad_fn(x, alpha)`` backward. Subclasses set ``grad_fn``."""

    grad_fn = staticmethod(sigmoid_grad)

    @classmethod
    def forward(cls, ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        if x.requires_grad:
            ctx.save_for_backward(x)
        ctx.alpha = alpha
        return heaviside(x)

    @classmethod
    def backward(cls, ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * cls.grad_fn(x, ctx.alpha), None


class SigmoidSpike(_SpikeFunction):
    """Heaviside with the sigmoid surrogate; ``SigmoidSpike.apply(x, alpha)``."""

    grad_fn = staticmethod(sigmoid_grad)


class ATanSpike(_SpikeFunction):
    """Heaviside with the arctan surrogate; ``ATanSpike.apply(x, alpha)``."""

    grad_fn = staticmethod(atan_grad)


class FastSigmoidSpike(_SpikeFunction):
    """Heaviside with the fast-sigmoid (SuperSpike) surrogate; ``FastSigmoidSpike.apply(x, alpha)``."""

    grad_fn = staticmethod(fast_sigmoid_grad)

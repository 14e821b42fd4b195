"""Quantized activations of ANNs built to convert to spiking networks.

``QCFS`` (quantization-clip-floor-shift, Bu et al., ICLR 2022) is the activation a convertible network trains with:
an integrate-and-fire neuron with threshold ``lambda``, reset by subtraction and initial membrane ``lambda / 2`` fires
at the rate of QCFS of its mean input, so each QCFS becomes one such neuron in the spiking twin
(``spikeformer.nn.neuron.QuantIF``, rate coding, or ``STBIF``, accumulation coding).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["QCFS"]


class _QCFSFunction(torch.autograd.Function):
    """QCFS forward; backward with the straight-through estimator for the floor (Bu et al., ICLR 2022):
    ``dy/dx = 1[0 < x < lambda]``, ``dy/dlambda = floor(u) / L - (x / lambda) 1[0 < x < lambda]``,
    ``u = clip(x / lambda, 0, 1) L + 1/2``. One node instead of five keeps training memory and time down."""

    @staticmethod
    def forward(ctx, x, lam, levels):  # type: ignore[override]
        q = torch.floor(torch.clamp(x / lam, 0.0, 1.0) * levels + 0.5)
        ctx.save_for_backward(x, lam, q)
        ctx.levels = levels
        return q * (lam / levels)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, lam, q = ctx.saved_tensors
        inside = (x > 0) & (x < lam)
        grad_x = grad * inside
        grad_lam = (
            (grad * (q / ctx.levels - torch.where(inside, x / lam, 0.0))).sum() if ctx.needs_input_grad[1] else None
        )
        return grad_x, grad_lam, None


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation (Bu et al., ICLR 2022) with a trainable threshold ``lambda``.

    ``y = lambda / L * clip(floor(x L / lambda + 1/2), 0, L)``: ``L + 1`` levels from 0 to ``lambda``. The floor
    passes gradients straight through; ``lambda`` learns from both ends of the clip.

    Args:
        levels: ``L``, the number of quantization steps.
        threshold: initial ``lambda`` (the inputs are BatchNorm outputs or residual sums of order 1).
    """

    def __init__(self, levels: int = 8, threshold: float = 4.0) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QCFSFunction.apply(x, self.threshold.clamp(min=1e-3), self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}"

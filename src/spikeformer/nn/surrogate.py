"""Surrogate-gradient modules: the hyper-parameter is an attribute, so a surrogate can be inspected and saved."""

from __future__ import annotations

import torch
from torch import nn

from spikeformer.functional.surrogate import ATanSpike, FastSigmoidSpike, SigmoidSpike

__all__ = ["Surrogate", "Sigmoid", "ATan", "FastSigmoid", "SURROGATE_MODULES", "make_surrogate"]


class Surrogate(nn.Module):
    """Heaviside forward, smooth derivative backward. ``alpha`` sets the sharpness of the surrogate."""

    name = "base"
    default_alpha = 1.0
    function: type[torch.autograd.Function] = SigmoidSpike

    def __init__(self, alpha: float | None = None) -> None:
        super().__init__()
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        if self.alpha <= 0:
            raise ValueError(f"surrogate alpha must be > 0, got {self.alpha}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Surrogate):
    """``d/dx sigmoid(alpha x)``; alpha = 4 is the Spikformer default (Zhou et al., ICLR 2023)."""

    name = "sigmoid"
    default_alpha = 4.0
    function = SigmoidSpike


class ATan(Surrogate):
    """``d/dx [arctan(pi/2 alpha x) / pi + 1/2]``; alpha = 2 as in Fang et al., ICCV 2021."""

    name = "atan"
    default_alpha = 2.0
    function = ATanSpike


class FastSigmoid(Surrogate):
    """SuperSpike ``d/dx [x / (1 + alpha |x|)]`` (Zenke & Ganguli, Neural Computation 2018); alpha = 10 here."""

    name = "fast_sigmoid"
    default_alpha = 10.0
    function = FastSigmoidSpike


SURROGATE_MODULES: dict[str, type[Surrogate]] = {c.name: c for c in (Sigmoid, ATan, FastSigmoid)}


def make_surrogate(name: str, alpha: float | None = None) -> Surrogate:
    """Build a surrogate module by name (``sigmoid``, ``atan``, ``fast_sigmoid``)."""
    try:
        return SURROGATE_MODULES[name](alpha)
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; accepted: {sorted(SURROGATE_MODULES)}") from None

"""Spike encoders: turn a static input ``[B, ...]`` into a time-first sequence ``[T, B, ...]``.

* ``direct``: the same analogue input at every step (the first spiking layer does the encoding);
* ``poisson``: rate coding, an independent Bernoulli(x) spike per element and step;
* ``latency``: time-to-first-spike coding, at most one spike per element, brighter inputs fire earlier.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ENCODERS", "SpikeEncoder", "direct_encode", "encode", "latency_encode", "poisson_encode"]


def _check_timesteps(timesteps: int) -> int:
    if isinstance(timesteps, bool):
        raise ValueError(f"timesteps must be an integer >= 1; received {timesteps!r}")
    try:
        steps = operator.index(timesteps)
    except TypeError:
        raise ValueError(f"timesteps must be an integer >= 1; received {timesteps!r}") from None
    if steps < 1:
        raise ValueError(f"timesteps must be an integer >= 1; received {steps}")
    return steps


def _check_input(x: Tensor, method: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{method} encoding needs a torch.Tensor; received {type(x).__name__}")
    if x.dim() < 1:
        raise ValueError(f"{method} encoding needs a batch [B, ...] of at least 1 dimension; received a scalar")


def _as_unit_float(x: Tensor, method: str) -> Tensor:
    """Return ``x`` as floating point, checking every value lies in [0, 1]."""
    _check_input(x, method)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):  # also false for NaN
            raise ValueError(
                f"{method} encoding needs values in [0, 1]; received min {lo}, max {hi} "
                "(scale uint8 pixels by 1/255 first)"
            )
    return x


def direct_encode(x: Tensor, timesteps: int) -> Tensor:
    """Repeat ``x`` at every time step.

    Args:
        x: Input ``[B, ...]`` of any dtype and value range.
        timesteps: Number of steps ``T >= 1``.

    Returns:
        ``[T, B, ...]`` with ``out[t] == x``. This is an expanded view (no copy, stride 0 along time):
        gradients flow back to ``x``; call ``.contiguous()`` before writing into it in place.
    """
    steps = _check_timesteps(timesteps)
    _check_input(x, "direct")
    return x.unsqueeze(0).expand(steps, *x.shape)


def poisson_encode(x: Tensor, timesteps: int, generator: torch.Generator | None = None) -> Tensor:
    """Rate-code ``x``: at each step every element spikes independently with probability ``x``.

    ``out[t, ...] = 1`` if ``u[t, ...] < x`` with ``u ~ Uniform[0, 1)``, else 0, so the expected firing rate
    over ``T`` steps is ``x`` (``x = 0`` never fires, ``x = 1`` always fires).

    Args:
        x: Intensities ``[B, ...]`` in [0, 1]; integer inputs are converted to float (so only 0/1 pass).
        timesteps: Number of steps ``T >= 1``.
        generator: Random generator on ``x``'s device, for reproducible spikes.

    Returns:
        Float tensor ``[T, B, ...]`` of 0/1 with ``x``'s floating dtype and device; not differentiable.

    Raises:
        ValueError: ``timesteps < 1`` or values outside [0, 1] (or NaN).
    """
    steps = _check_timesteps(timesteps)
    x = _as_unit_float(x, "poisson")
    noise = torch.rand((steps, *x.shape), generator=generator, dtype=x.dtype, device=x.device)
    return (noise < x.detach()).to(x.dtype)


def latency_encode(x: Tensor, timesteps: int, threshold: float = 0.01) -> Tensor:
    """Time-to-first-spike code: each element fires once, brighter elements earlier.

    An element with value ``x > threshold`` fires at step ``t = round((1 - x) * (T - 1))`` (``torch.round``,
    half to even), so ``x = 1`` fires at step 0 and ``x`` just above the threshold near step ``T - 1``.
    Elements with ``x <= threshold`` never fire.

    Args:
        x: Intensities ``[B, ...]`` in [0, 1]; integer inputs are converted to float.
        timesteps: Number of steps ``T >= 1``.
        threshold: Values at or below it emit no spike; in [0, 1).

    Returns:
        Float tensor ``[T, B, ...]`` of 0/1 with at most one 1 along time per element; not differentiable.

    Raises:
        ValueError: ``timesteps < 1``, ``threshold`` outside [0, 1), or values outside [0, 1] (or NaN).
    """
    steps = _check_timesteps(timesteps)
    if not isinstance(threshold, int | float) or not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be a number in [0, 1); received {threshold!r}")
    x = _as_unit_float(x, "latency").detach()
    when = torch.round((1.0 - x) * (steps - 1)).long().clamp_(0, steps - 1)
    fires = (x > threshold).to(x.dtype)
    out = torch.zeros((steps, *x.shape), dtype=x.dtype, device=x.device)
    return out.scatter_(0, when.unsqueeze(0), fires.unsqueeze(0))


#: Encoder name -> function ``(x, timesteps, **kw) -> [T, B, ...]``.
ENCODERS: dict[str, Callable[..., Tensor]] = {
    "direct": direct_encode,
    "poisson": poisson_encode,
    "latency": latency_encode,
}


def _check_method(method: str) -> Callable[..., Tensor]:
    if method not in ENCODERS:
        raise ValueError(f"unknown encoding method {method!r}; accepted: {', '.join(repr(m) for m in ENCODERS)}")
    return ENCODERS[method]


def encode(x: Tensor, timesteps: int, method: str = "direct", **kw: Any) -> Tensor:
    """Encode ``x`` ``[B, ...]`` into ``[T, B, ...]`` with the encoder named ``method`` (a key of :data:`ENCODERS`).

    Extra keyword arguments go to the encoder (``generator`` for poisson, ``threshold`` for latency).

    Raises:
        ValueError: Unknown method or invalid arguments (see the encoders).
    """
    return _check_method(method)(x, timesteps, **kw)


class SpikeEncoder(nn.Module):
    """Module form of :func:`encode`: ``SpikeEncoder("poisson", 4)(x)`` maps ``[B, ...]`` to ``[4, B, ...]``.

    Args:
        method: A key of :data:`ENCODERS`.
        timesteps: Number of steps ``T >= 1``.
        **kw: Fixed keyword arguments for the encoder (e.g. ``threshold``, ``generator``).
    """

    def __init__(self, method: str = "direct", timesteps: int = 4, **kw: Any) -> None:
        super().__init__()
        _check_method(method)
        self.method = method
        self.timesteps = _check_timesteps(timesteps)
        self.kwargs = dict(kw)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x`` ``[B, ...]`` into ``[T, B, ...]``."""
        return encode(x, self.timesteps, self.method, **self.kwargs)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, timesteps={self.timesteps}"

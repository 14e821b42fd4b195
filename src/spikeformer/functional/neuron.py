"""Pure step functions of the integrate-and-fire neuron family.

One step of a neuron with membrane potential ``v`` and input ``x`` (SpikingJelly's convention, Fang et al. 2021):

- charge, LIF with ``decay_input``: ``h = v + (x - (v - v_reset)) / tau``
- charge, LIF without ``decay_input``: ``h = v - (v - v_reset) / tau + x``
- charge, IF: ``h = v + x``
- PLIF: LIF with ``1 / tau = sigmoid(w)`` for a learnable ``w``
- fire: ``s = H(h - v_threshold)`` (Heaviside forward, surrogate gradient backward)
- reset, hard (``v_reset`` is a number): ``v' = h (1 - s) + v_reset s``
- reset, soft (``v_reset is None``, reset by subtraction): ``v' = h - v_threshold s``; the charge then uses
  0 as the resting potential.

With ``detach_reset`` the spike used in the reset is detached from the autograd graph (Spikformer does this).
Multi-step functions take time-first tensors ``[T, ...]`` and return ``(spikes [T, ...], v_T [...])``.
``spike`` is any callable mapping ``h - v_threshold`` to spikes, e.g. a ``spikeformer.nn.surrogate`` module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from spikeformer.functional.surrogate import SigmoidSpike

__all__ = ["lif_charge", "if_charge", "fire_and_reset", "lif_step", "if_step", "lif_multistep", "if_multistep"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def _sigmoid4(x: torch.Tensor) -> torch.Tensor:
    return SigmoidSpike.apply(x, 4.0)


def lif_charge(
    x: torch.Tensor, v: torch.Tensor, decay: float | torch.Tensor, v_rest: float = 0.0, decay_input: bool = True
) -> torch.Tensor:
    """LIF charge with ``decay = 1 / tau`` (a float, or a 0-d tensor ``sigmoid(w)`` for PLIF)."""
    if decay_input:
        return v + (x - (v - v_rest)) * decay
    return v - (v - v_rest) * decay + x


def if_charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """IF charge: ``h = v + x``."""
    return v + x


def fire_and_reset(
    h: torch.Tensor,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = True,
    spike: SpikeFn = _sigmoid4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fire on the charged potential ``h`` and reset; returns ``(spike, v)``."""
    s = spike(h - v_threshold)
    s_r = s.detach() if detach_reset else s
    if v_reset is None:
        return s, h - v_threshold * s_r
    return s, h * (1.0 - s_r) + v_reset * s_r


def lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = True,
    spike: SpikeFn = _sigmoid4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: ``(x, v) -> (spike, v')``."""
    h = lif_charge(x, v, 1.0 / tau, 0.0 if v_reset is None else v_reset, decay_input)
    return fire_and_reset(h, v_threshold, v_reset, detach_reset, spike)


def if_step(
    x: torch.Tensor,
    v: torch.Tensor,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = True,
    spike: SpikeFn = _sigmoid4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step: ``(x, v) -> (spike, v')``."""
    return fire_and_reset(if_charge(x, v), v_threshold, v_reset, detach_reset, spike)


def _rest(x_seq: torch.Tensor, v_reset: float | None) -> torch.Tensor:
    return torch.full_like(x_seq[0], 0.0 if v_reset is None else v_reset)


def lif_multistep(
    x_seq: torch.Tensor, v: torch.Tensor | None = None, tau: float = 2.0, v_reset: float | None = 0.0, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF over ``x_seq [T, ...]`` from ``v`` (rest when None); keyword arguments as ``lif_step``."""
    v = _rest(x_seq, v_reset) if v is None else v
    out = []
    for x in x_seq:
        s, v = lif_step(x, v, tau, v_reset=v_reset, **kwargs)
        out.append(s)
    return torch.stack(out), v


def if_multistep(
    x_seq: torch.Tensor, v: torch.Tensor | None = None, v_reset: float | None = 0.0, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """IF over ``x_seq [T, ...]`` from ``v`` (rest when None); keyword arguments as ``if_step``."""
    v = _rest(x_seq, v_reset) if v is None else v
    out = []
    for x in x_seq:
        s, v = if_step(x, v, v_reset=v_reset, **kwargs)
        out.append(s)
    return torch.stack(out), v

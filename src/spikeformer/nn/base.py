"""Stateful module base: named state tensors that can be reset and detached, and a step mode.

A module's state lives in the module (no global registry of instances): ``reset_states(model)`` walks the module
tree. State is created lazily from the first input, so one module serves any batch size after a reset.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["StatefulModule", "reset_states", "detach_states", "set_step_mode", "STEP_MODES"]

STEP_MODES = ("m", "s")


class StatefulModule(nn.Module):
    """Base class for modules that carry state across time steps.

    ``step_mode="m"`` (multi-step, default) consumes ``[T, B, ...]``; ``"s"`` (single-step) consumes ``[B, ...]``
    and keeps the state between calls until ``reset()``.
    """

    def __init__(self, step_mode: str = "m") -> None:
        super().__init__()
        self._state_names: dict[str, Any] = {}
        self.step_mode = step_mode

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        if mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES} ('m' multi-step, 's' single-step), got {mode!r}")
        self._step_mode = mode

    def register_state(self, name: str, initial: Any = None) -> None:
        """Declare a state attribute and the value ``reset()`` restores (``None``: created from the next input)."""
        self._state_names[name] = initial
        object.__setattr__(self, name, initial)

    def reset(self) -> None:
        """Restore every state to its initial value."""
        for name, initial in self._state_names.items():
            object.__setattr__(self, name, initial.clone() if isinstance(initial, torch.Tensor) else initial)

    def detach(self) -> None:
        """Cut the autograd history of every tensor state (truncated back-propagation through time)."""
        for name in self._state_names:
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                object.__setattr__(self, name, value.detach())

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"


def reset_states(model: nn.Module) -> None:
    """Reset the state of every ``StatefulModule`` in ``model`` (call between independent input sequences)."""
    for m in model.modules():
        if isinstance(m, StatefulModule):
            m.reset()


def detach_states(model: nn.Module) -> None:
    """Detach the state of every ``StatefulModule`` in ``model``."""
    for m in model.modules():
        if isinstance(m, StatefulModule):
            m.detach()


def set_step_mode(model: nn.Module, mode: str) -> None:
    """Set the step mode of every ``StatefulModule`` in ``model``."""
    for m in model.modules():
        if isinstance(m, StatefulModule):
            m.step_mode = mode

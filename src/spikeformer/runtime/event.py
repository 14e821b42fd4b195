"""Event-driven (sparse) layers for CPU inference: the work of a spike-fed layer scales with its firing rate.

A spiking layer's input is mostly zeros (spikes, or small sums of spikes on residual paths). ``EventLinear`` and
``EventConv2d`` replace ``nn.Linear`` and 3x3/stride-1/padding-1 ``nn.Conv2d`` in the ``Runner``'s copy of a model.
Each call measures the input's density (non-zero fraction) and takes

- the event path (``spikeformer.kernels.cpu``: only non-zero inputs touch the weights) below the layer's
  crossover density, and
- the dense path (the ordinary oneDNN/MKL product) above it.

The crossover is measured, not guessed: on its first call each layer times both paths on its real input and sets
``crossover = density * t_dense / t_event`` (the event path's time is proportional to density; the dense one's is
not), refined on the next calls while both paths are still being sampled (``calibration_calls``). It is measured
separately for each range of input sizes (rows in powers of 4): the dense product gains more from a large batch. A
layer whose calibration inputs were all more than twice as dense as its crossover stops checking (``active = False``)
for that range. A dense
input (an image into the first layer) always takes the dense path. Results equal the dense path's up to float32
summation order (tests/runtime/test_event.py bounds the difference).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.functional.linear import linear
from spikeformer.kernels import cpu as kernels

__all__ = ["EventLinear", "EventConv2d", "to_event_driven", "event_layers"]

MAX_CROSSOVER = 0.9  # above this density the event path never wins on any CPU we measured: skip the timing


class _Calibration:
    """The measured crossover of one layer for one range of input sizes."""

    __slots__ = ("samples", "densities", "crossover", "active")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.densities: list[float] = []
        self.crossover: float | None = None
        self.active = True


class _EventLayer(nn.Module):
    """Shared dispatch: density -> (event | dense), with the crossover measured on the first calls of each range of
    input sizes (powers of 4 in the number of rows: a dense product gains more from a large batch than the event path,
    so a crossover measured at batch 1 is wrong at batch 32)."""

    calibration_calls = 3

    def __init__(self) -> None:
        super().__init__()
        self._calibrations: dict[int, _Calibration] = {}
        self._current = _Calibration()  # that of the latest call: what ``crossover``, ``active`` show
        self._pinned = False  # set by hand: one state for every input size, no more measuring
        self.calls = {"event": 0, "dense": 0}

    # ``crossover`` (0 disables the event path), ``active`` (False: no density checks) and the calibration samples
    # read the state of the latest call's size range; setting any of them by hand pins it for every size.
    def _pin(self, field: str, value) -> None:
        setattr(self._current, field, value)
        self._pinned = True

    crossover = property(lambda self: self._current.crossover, lambda self, v: self._pin("crossover", v))
    active = property(lambda self: self._current.active, lambda self, v: self._pin("active", v))
    _samples = property(lambda self: self._current.samples, lambda self, v: self._pin("samples", v))

    def _rows(self, x: torch.Tensor) -> int:
        raise NotImplementedError

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _event(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._pinned:
            size = (max(1, self._rows(x)).bit_length() + 1) // 2
            self._current = self._calibrations.setdefault(size, _Calibration())
        cal = self._current
        if not cal.active:
            return self._dense(x)
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled() or kernels.get() is None:
            return self._dense(x)
        density = float(torch.count_nonzero(x)) / max(1, x.numel())
        if len(cal.samples) < self.calibration_calls:
            return self._calibrate(cal, x, density)
        if density < cal.crossover:
            self.calls["event"] += 1
            return self._event(x)
        self.calls["dense"] += 1
        return self._dense(x)

    def _calibrate(self, cal: _Calibration, x: torch.Tensor, density: float) -> torch.Tensor:
        self.calls["dense"] += 1
        if density > MAX_CROSSOVER:  # dense input: no need to time the event path
            dense, sample = self._dense(x), 0.0
        else:
            t0 = time.perf_counter()
            dense = self._dense(x)
            t1 = time.perf_counter()
            self._event(x)
            t2 = time.perf_counter()
            # event time ~ density: the density at which both paths take as long, from this sample
            sample = density * (t1 - t0) / max(t2 - t1, 1e-9) if density > 0 else MAX_CROSSOVER
        cal.samples.append(sample)
        cal.densities.append(density)
        cal.crossover = min(MAX_CROSSOVER, sorted(cal.samples)[len(cal.samples) // 2])
        if len(cal.samples) == self.calibration_calls and cal.crossover < 0.5 * min(cal.densities):
            cal.active = False  # inputs here are far denser than the crossover: stop paying for the check
        return dense


class EventLinear(_EventLayer):
    """``nn.Linear`` over ``[..., in_features]`` with the event path for sparse inputs."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.__dict__["dense_equivalent"] = linear  # for the energy profiler; not a submodule
        self.weight = linear.weight
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", linear.weight.detach().t().contiguous(), persistent=False)

    def _rows(self, x: torch.Tensor) -> int:
        return x.numel() // self.in_features

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

    def _event(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.detach() if self.bias is not None else torch.empty(0)
        out = kernels.get().event_linear(x.reshape(-1, self.in_features), self.weight_t, bias)
        return out.reshape(*x.shape[:-1], self.out_features)


class EventConv2d(_EventLayer):
    """A 3x3, stride-1, padding-1, ungrouped ``nn.Conv2d`` with the event path for sparse inputs ``[N, C, H, W]``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.__dict__["dense_equivalent"] = conv  # for the energy profiler; not a submodule
        if not supports_conv(conv):
            raise ValueError(f"EventConv2d needs a 3x3/stride 1/padding 1/ungrouped convolution, got {conv}")
        self.weight = conv.weight
        self.bias = conv.bias
        self.out_channels = conv.out_channels
        o, c = conv.weight.shape[:2]
        # [(dy, dx, c_in), c_out]: the row of one input event at one kernel offset
        self.register_buffer(
            "weight_t", conv.weight.detach().permute(2, 3, 1, 0).reshape(9 * c, o).contiguous(), persistent=False
        )

    def _rows(self, x: torch.Tensor) -> int:
        return x.shape[0]

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)

    def _event(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.detach() if self.bias is not None else torch.empty(0)
        return kernels.get().event_conv3x3(x, self.weight_t, bias)


def supports_conv(conv: nn.Conv2d) -> bool:
    return (
        conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


def to_event_driven(model: nn.Module) -> nn.Module:
    """Replace (in place) every ``nn.Linear`` and supported ``nn.Conv2d`` by its event twin; returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, EventLinear(child))
        elif type(child) is nn.Conv2d and supports_conv(child):
            setattr(model, name, EventConv2d(child))
        else:
            to_event_driven(child)
    return model


def event_layers(model: nn.Module) -> list[_EventLayer]:
    return [m for m in model.modules() if isinstance(m, _EventLayer)]

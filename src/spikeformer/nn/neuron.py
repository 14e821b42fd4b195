"""Spiking neuron modules over ``spikeformer.functional.neuron``.

Each module holds its hyper-parameters and its membrane state ``v``. Two ways to drive it:
- ``y = neuron(x)``: the state is kept inside the module (reset it with ``spikeformer.nn.reset_states(model)``);
- ``y, v = neuron(x, v)``: explicit state in and out (``v=None`` starts from rest); the module's own state is untouched.

In multi-step mode (``step_mode="m"``, the default) ``x`` is ``[T, B, ...]``; in single-step mode ``[B, ...]``.
Backends are named strings; ``"torch"`` is the plain-torch reference every fast path is tested against.

``LIF``, ``IF`` and ``PLIF`` are the neurons of directly trained models; ``QuantIF`` and ``STBIF`` those of networks
converted from an ANN (the spiking counterparts of ``spikeformer.nn.quant.QCFS``; ``STBIF`` keeps its state inside
the module only). ``NEURON_REGISTRY`` names every kind once; the lists each context accepts (``NEURONS`` for trained
models, ``CONVERTED_NEURONS`` for converted ones) are derived from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from spikeformer.functional.fused import SURROGATE_GRADS, add_channel_bias, fused_multistep
from spikeformer.functional.neuron import fire_and_reset, if_charge, lif_charge
from spikeformer.nn.base import StatefulModule
from spikeformer.nn.surrogate import Sigmoid, Surrogate

__all__ = [
    "BaseNeuron",
    "LIF",
    "IF",
    "PLIF",
    "QuantIF",
    "STBIF",
    "NeuronKind",
    "NEURON_REGISTRY",
    "NEURONS",
    "CONVERTED_NEURONS",
    "make_neuron",
    "NEURON_BACKENDS",
    "set_backend",
]

# name -> function(neuron, x_seq [T, ...], v [...]) -> (spikes [T, ...], v_T); the fused kernels register here too.
NEURON_BACKENDS: dict[str, Callable] = {}


def _torch_multistep(neuron: BaseNeuron, x_seq: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x_seq.dtype == torch.int32:  # accumulators of an int8 product
        x_seq = x_seq.float() * neuron.int32_scale
        x_seq = x_seq if neuron.int32_bias is None else x_seq + neuron.int32_bias
    x_seq = add_channel_bias(x_seq, neuron.input_bias)
    out = []
    for t in range(x_seq.shape[0]):
        s, v = neuron.single_step(x_seq[t], v)
        out.append(s)
    spikes = torch.stack(out)
    return (spikes.to(torch.int8), v) if neuron.int8_spikes and not torch.is_grad_enabled() else (spikes, v)


def _fused_multistep(neuron: BaseNeuron, x_seq: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One autograd node for all steps (``spikeformer.functional.fused``); PLIF's learnable tau uses the reference."""
    if isinstance(neuron, PLIF) or neuron.surrogate.name not in SURROGATE_GRADS:
        return _torch_multistep(neuron, x_seq, v)  # adds input_bias itself
    decay = 1.0 / neuron.tau if isinstance(neuron, LIF) else None
    return fused_multistep(
        x_seq,
        v,
        decay,
        getattr(neuron, "decay_input", True),
        neuron.v_threshold,
        neuron.v_reset,
        neuron.detach_reset,
        neuron.surrogate.name,
        neuron.surrogate.alpha,
        bias=neuron.input_bias,
        int8_spikes=neuron.int8_spikes,
        dequant=(neuron.int32_scale, neuron.int32_bias) if x_seq.dtype == torch.int32 else None,
    )


NEURON_BACKENDS["torch"] = _torch_multistep
NEURON_BACKENDS["fused"] = _fused_multistep


class BaseNeuron(StatefulModule):
    """Integrate, fire, reset. Subclasses define ``charge(x, v) -> h``.

    Args:
        v_threshold: firing threshold.
        v_reset: potential after a spike (hard reset); ``None`` means soft reset by subtracting ``v_threshold``.
        detach_reset: detach the spike from the graph in the reset (Spikformer: True).
        surrogate: surrogate-gradient module (default ``Sigmoid(alpha=4)``).
        step_mode: ``"m"`` multi-step ``[T, B, ...]`` or ``"s"`` single-step ``[B, ...]``.
        backend: name in ``NEURON_BACKENDS`` used in multi-step mode.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        detach_reset: bool = True,
        surrogate: Surrogate | None = None,
        step_mode: str = "m",
        backend: str = "torch",
    ) -> None:
        super().__init__(step_mode)
        if not v_threshold > (v_reset if v_reset is not None else 0.0):
            raise ValueError(f"v_threshold ({v_threshold}) must be above v_reset ({v_reset})")
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate = surrogate if surrogate is not None else Sigmoid()
        self.backend = backend
        # a per-channel bias added to the multi-step input (channel axis 2 of [T, B, C, H, W], else the last): set by
        # ``spikeformer.nn.fold.move_conv_bias_into_neurons`` so the CUDA kernel adds a conv's bias on the fly
        self.input_bias: torch.Tensor | None = None
        # inference only: emit int8 spikes (set by the int8 runtime for a neuron that only int8 products read)
        self.int8_spikes = False
        # int32 inputs (the raw accumulators of an int8 product, ``spikeformer.runtime.int8``) mean
        # ``x * int32_scale + int32_bias``, per channel (last axis); set by the int8 runtime with the product
        self.int32_scale: torch.Tensor | None = None
        self.int32_bias: torch.Tensor | None = None
        self.register_state("v", None)

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        if name not in NEURON_BACKENDS:
            raise ValueError(f"unknown neuron backend {name!r}; accepted: {sorted(NEURON_BACKENDS)}")
        self._backend = name

    @property
    def v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """Resting membrane potential shaped like one time step of ``x`` (a broadcast scalar: nothing is filled)."""
        shape = x.shape[1:] if self.step_mode == "m" else x.shape
        dtype = x.dtype if x.is_floating_point() else torch.float32  # int32 accumulators: a float membrane
        return torch.full((), self.v_rest, dtype=dtype, device=x.device).expand(shape)

    def single_step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: charge, fire, reset. Returns ``(spike, v)``."""
        return fire_and_reset(self.charge(x, v), self.v_threshold, self.v_reset, self.detach_reset, self.surrogate)

    def _run(self, x: torch.Tensor, v: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if v is None:
            v = self.initial_state(x)
        if self.step_mode == "s":
            return self.single_step(x, v)
        return NEURON_BACKENDS[self.backend](self, x, v)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = ...):  # type: ignore[assignment]
        """``forward(x) -> spikes`` with internal state, or ``forward(x, state) -> (spikes, state)``."""
        if state is ...:
            s, self.v = self._run(x, self.v)
            return s
        return self._run(x, state)

    def extra_repr(self) -> str:
        return (
            f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
            f"step_mode={self.step_mode!r}, backend={self.backend!r}"
        )


class LIF(BaseNeuron):
    """Leaky integrate-and-fire: ``h = v + (x - (v - v_reset)) / tau`` (or ``v - (v - v_reset)/tau + x``).

    Args:
        tau: membrane time constant in time steps (> 1). Spikformer uses 2.0.
        decay_input: whether the input is scaled by ``1/tau`` too.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1 (time steps), got {tau}")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return lif_charge(x, v, 1.0 / self.tau, self.v_rest, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()


class IF(BaseNeuron):
    """Integrate-and-fire without leak: ``h = v + x``."""

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return if_charge(x, v)


class PLIF(BaseNeuron):
    """Parametric LIF (Fang et al., ICCV 2021): LIF with a learnable ``1/tau = sigmoid(w)``, one ``w`` per layer.

    Args:
        init_tau: initial time constant (> 1); ``w = -log(init_tau - 1)``.
        decay_input: as for ``LIF``.
    """

    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if not init_tau > 1.0:
            raise ValueError(f"init_tau must be > 1 (time steps), got {init_tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))
        self.decay_input = bool(decay_input)

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return lif_charge(x, v, torch.sigmoid(self.w).to(x.dtype), self.v_rest, self.decay_input)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4f}, decay_input={self.decay_input}, " + super().extra_repr()


class QuantIF(IF):
    """Integrate-and-fire neuron of a converted network: threshold ``lambda`` (a buffer, saved with the weights),
    reset by subtraction, initial membrane ``lambda / 2`` (the QCFS shift; Bu et al., ICLR 2022).

    Emits binary spikes; the spike's value ``lambda`` is folded into the weights of the layer that reads it. After
    ``t`` steps of a constant input ``x`` it has emitted ``floor(t x / lambda + 1/2)`` spikes (clipped to ``[0, t]``),
    so its rate is QCFS with ``L = t`` levels.

    Args:
        threshold: ``lambda`` (> 0).
        surrogate: surrogate gradient for hybrid fine-tuning (default sigmoid, alpha 4).
        backend: multi-step backend (``torch`` or ``fused``).
    """

    def __init__(self, threshold: float = 1.0, surrogate: nn.Module | None = None, backend: str = "torch") -> None:
        super().__init__(v_threshold=1.0, v_reset=None, detach_reset=True, surrogate=surrogate, backend=backend)
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    @property
    def v_threshold(self) -> float:  # type: ignore[override]
        buf = self.__dict__.get("_buffers", {}).get("threshold")
        return float(buf) if buf is not None else self.__dict__["_init_threshold"]

    @v_threshold.setter
    def v_threshold(self, value: float) -> None:
        buf = self.__dict__.get("_buffers", {}).get("threshold")
        if buf is None:
            self.__dict__["_init_threshold"] = float(value)
        else:
            if not value > 0:
                raise ValueError(f"QuantIF threshold must be > 0, got {value}")
            buf.fill_(float(value))

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:] if self.step_mode == "m" else x.shape
        return torch.full(shape, 0.5 * self.v_threshold, dtype=x.dtype, device=x.device)


class STBIF(QuantIF):
    """Signed integrate-and-fire neuron with a spike tracer (ST-BIF, SpikeZIP-TF, You et al., ICML 2024).

    Threshold ``theta`` (the spike value, ``lambda / L`` of the QCFS it replaces), initial membrane ``theta / 2``,
    reset by subtraction, and a spike count ``n`` kept in ``[0, L]``. At each step, after adding the input:

    - ``v >= theta`` and ``n < L``: spike +1, ``v -= theta``, ``n += 1``;
    - ``v < 0`` and ``n > 0``: spike -1, ``v += theta``, ``n -= 1`` (undoes an earlier over-firing);
    - otherwise no spike.

    ``v = theta / 2 + X - theta n`` for the accumulated input ``X``, so the neuron is at rest exactly when
    ``n = clip(floor(X / theta + 1/2), 0, L)``, the QCFS level of ``X``, and it moves one level per step towards it:
    its cumulative output ``theta n`` equals ``QCFS(X)`` at most ``L`` steps after its input stops changing.
    Spikes are in ``{-1, 0, 1}``; their value ``theta`` is folded into the weights of the reading layer. Inference only
    (no surrogate gradient; ``backend`` is accepted and ignored).

    Args:
        threshold: ``theta`` (> 0).
        levels: ``L``, the largest spike count (the QCFS levels).
    """

    def __init__(
        self, threshold: float = 1.0, levels: int = 8, surrogate: nn.Module | None = None, backend: str = "torch"
    ) -> None:
        super().__init__(threshold, surrogate=surrogate, backend=backend)
        if levels < 1:
            raise ValueError(f"STBIF levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.register_state("count", None)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = ...):  # type: ignore[override]
        """``forward(x) -> spikes`` in ``{-1, 0, 1}``; the membrane and the count are kept inside the module."""
        if state is not ...:
            raise ValueError("STBIF keeps its state (membrane and spike count) inside the module; call neuron(x)")
        seq = x if self.step_mode == "m" else x.unsqueeze(0)
        theta = self.threshold.to(seq.dtype)
        v = (
            self.v
            if self.v is not None
            else torch.full(seq.shape[1:], 0.5 * float(theta), dtype=seq.dtype, device=seq.device)
        )
        n = self.count if self.count is not None else torch.zeros_like(v)
        out = torch.empty_like(seq)
        for t in range(seq.shape[0]):
            v = v + seq[t]
            s = ((v >= theta) & (n < self.levels)).to(seq.dtype) - ((v < 0) & (n > 0)).to(seq.dtype)
            v = v - s * theta
            n = n + s
            out[t] = s
        self.v, self.count = v, n
        return out if self.step_mode == "m" else out[0]

    def extra_repr(self) -> str:
        return f"threshold={self.v_threshold:.4g}, levels={self.levels}, step_mode={self.step_mode!r}"


@dataclass(frozen=True)
class NeuronKind:
    """One kind of neuron, by the name configurations use (``neuron="lif"``, ``neuron="st-bif"`` ...).

    A kind can be built in two contexts: a directly trained spiking model (``make_neuron``, the ``neuron`` field of
    the Spikformer-family configurations) and the spiking twin of a converted ReLU ViT (``ReLUViTConfig.neuron``,
    ``SpikeformerConverter(neuron=...)``), where it also fixes how values are coded in time.

    Attributes:
        name: the registry key.
        trained: the module a directly trained model builds, or ``None`` if the kind only exists in converted twins.
        converted: the module a converted twin builds, or ``None`` if conversion does not produce this kind.
        coding: the converted twin's coding: ``"rate"`` (input every step, outputs averaged) or ``"accumulation"``
            (input once, outputs summed); ``None`` when ``converted`` is.
    """

    name: str
    trained: type[BaseNeuron] | None = None
    converted: type[BaseNeuron] | None = None
    coding: str | None = None


NEURON_REGISTRY: dict[str, NeuronKind] = {
    kind.name: kind
    for kind in (
        NeuronKind("lif", trained=LIF),
        NeuronKind("if", trained=IF, converted=QuantIF, coding="rate"),
        NeuronKind("plif", trained=PLIF),
        NeuronKind("st-bif", converted=STBIF, coding="accumulation"),
    )
}
# The kinds a directly trained model accepts, name -> module (``make_neuron``).
NEURONS: dict[str, type[BaseNeuron]] = {n: k.trained for n, k in NEURON_REGISTRY.items() if k.trained is not None}
# The kinds a converted ReLU ViT accepts, in registry order: ("if", "st-bif").
CONVERTED_NEURONS: tuple[str, ...] = tuple(n for n, k in NEURON_REGISTRY.items() if k.converted is not None)


def make_neuron(kind: str = "lif", tau: float = 2.0, **kwargs) -> BaseNeuron:
    """Build a neuron by name (``lif``, ``plif``, ``if``); ``tau`` is the (initial) time constant, unused for IF."""
    if kind not in NEURONS:
        raise ValueError(f"unknown neuron {kind!r}; accepted: {sorted(NEURONS)}")
    if kind == "lif":
        return LIF(tau=tau, **kwargs)
    if kind == "plif":
        return PLIF(init_tau=tau, **kwargs)
    return IF(**kwargs)


def set_backend(model: nn.Module, name: str) -> list[BaseNeuron]:
    """Run every neuron of ``model`` on the multi-step backend ``name`` (in place); returns the neurons."""
    neurons = [m for m in model.modules() if isinstance(m, BaseNeuron)]
    for n in neurons:
        n.backend = name
    return neurons

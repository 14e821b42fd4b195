"""``SpikeformerConverter``: ANN -> SNN conversion with threshold balancing.

Two kinds of input model:

- a convertible ReLU ViT (``spikeformer.models.ReLUViT`` with ``block="relu"``): the result is its spiking twin
  (the same registry entry with ``spiking=True, timesteps=T``), so it saves and loads as a normal checkpoint;
- a plain CNN/MLP written as ``nn.Sequential`` of Conv2d / Linear / BatchNorm / ReLU (or QCFS) / pooling / Flatten /
  Dropout: the result is a ``SpikingSequential``.

What every conversion does:

- every ReLU or QCFS activation becomes an integrate-and-fire neuron (``QuantIF``) with threshold ``lambda``, reset by
  subtraction and initial membrane ``lambda / 2`` (Bu et al., ICLR 2022); its spikes are binary and their value
  ``lambda`` is folded into the weights of the layer that reads them;
- BatchNorm after a conv or linear is folded into its weights (``W' = W g / s``, ``b' = (b - mu) g / s + beta``);
- ``lambda`` comes from the method: ``qcfs`` uses the thresholds the ANN trained (no data needed); ``max`` the largest
  activation seen on calibration data (Diehl et al. 2015 "data-based normalisation"); ``percentile`` the p-th
  percentile of the positive activations (Rueckauer et al. 2017; 99.9 by default), averaged over calibration batches;
- products of two activations (attention ``Q K^T`` and ``S V``) use ``expectation_matmul`` (Huang et al. 2024);
- ``neuron="st-bif"`` (convertible ViTs): the accumulation-coded twin of SpikeZIP-TF (You et al., ICML 2024): signed
  ``STBIF`` neurons with threshold ``lambda / L`` and spike count in ``[0, L]``, input and biases once, outputs summed;
  its logits become exactly the ANN's once every neuron has settled (no rate-coding approximation);
- max-pooling of spikes passes, at every step, the spike of the input with the highest spike count so far
  (Rueckauer et al. 2017, "Conversion of continuous-valued deep networks to efficient event-driven networks").

Layers without a spiking equivalent (softmax, LayerNorm, GELU and other non-ReLU activations, unknown modules) are
refused with a ``ConversionError`` naming each one by its module path and saying why.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.models import build_architecture
from spikeformer.models.vit_relu import ConvNorm, ReLUViT
from spikeformer.nn.base import StatefulModule, reset_states
from spikeformer.nn.layers import LinearBN, SeqToANN
from spikeformer.nn.neuron import CONVERTED_NEURONS, BaseNeuron, QuantIF
from spikeformer.nn.quant import QCFS

__all__ = [
    "ConversionError",
    "GatedMaxPool2d",
    "LayerProblem",
    "METHODS",
    "NEURONS",
    "SpikeformerConverter",
    "SpikingSequential",
    "find_unconvertible",
    "parse_timesteps",
]

METHODS = ("qcfs", "max", "percentile")
NEURONS = CONVERTED_NEURONS  # the neuron kinds a converted twin accepts, from the registry in spikeformer.nn

_ACTIVATIONS = (nn.ReLU, QCFS)
_STATELESS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_SUPPORTED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool2d, *_ACTIVATIONS, *_STATELESS)
_SUPPORTED_NAMES = (
    "Conv2d, Linear, BatchNorm1d/2d, ReLU, QCFS, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout"
)

_WHY: list[tuple[type[nn.Module], str]] = [
    (
        nn.Softmax,
        "softmax divides by a sum of exponentials over the whole row; no integrate-and-fire neuron computes it (use "
        "ReLU attention scaled by 1/N, e.g. a ReLUViT with block='relu')",
    ),
    (
        nn.MultiheadAttention,
        "softmax attention inside nn.MultiheadAttention: softmax and the Q K^T product of two activations have no "
        "spiking equivalent here (use a ReLUViT with block='relu')",
    ),
    (
        nn.LayerNorm,
        "LayerNorm divides each token by its own standard deviation, a nonlinear function of the activations that "
        "cannot be folded into weights (use BatchNorm, which is affine at inference)",
    ),
    (
        nn.GroupNorm,
        "GroupNorm normalises by statistics of the activations themselves (nonlinear); use BatchNorm",
    ),
]
_NOT_RELU = (
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
)


class ConversionError(ValueError):
    """The model has layers the converter cannot turn into spikes; ``problems`` lists them."""

    def __init__(self, problems: list[LayerProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p.path} ({p.kind}): {p.reason}" for p in problems)
        super().__init__(
            f"cannot convert this model to spikes: {len(problems)} layer(s) have no spiking equivalent\n{lines}"
        )


@dataclass
class LayerProblem:
    """One layer the converter refuses: its module path, type and the reason."""

    path: str
    kind: str
    reason: str


def _reason(m: nn.Module) -> str | None:
    for cls, why in _WHY:
        if isinstance(m, cls):
            return why
    if isinstance(m, _NOT_RELU):
        return (
            f"{type(m).__name__} is not a clipped ReLU (it is negative or curved below zero); an integrate-and-fire "
            "neuron's firing rate is a clipped ReLU of its input (use ReLU or QCFS)"
        )
    if isinstance(m, _SUPPORTED) or isinstance(m, ConvNorm | LinearBN):
        return None
    return f"unknown module type {type(m).__name__}; the converter handles {_SUPPORTED_NAMES}"


def find_unconvertible(model: nn.Module) -> list[LayerProblem]:
    """Every layer of ``model`` without a spiking equivalent, by module path (empty: the model converts)."""
    problems: list[LayerProblem] = []
    neurons = [p for p, m in model.named_modules() if isinstance(m, BaseNeuron)]
    if neurons:
        return [
            LayerProblem(
                "<model>",
                type(model).__name__,
                f"already a spiking model (neurons at {', '.join(neurons[:3])}{', ...' if len(neurons) > 3 else ''}); "
                "convert takes an ANN",
            )
        ]
    if isinstance(model, ReLUViT):
        for path, m in model.named_modules():
            if path and not list(m.children()):
                why = _reason(m)
                if why:
                    problems.append(LayerProblem(path, type(m).__name__, why))
        return problems
    if not isinstance(model, nn.Sequential):
        return [
            LayerProblem(
                "<model>",
                type(model).__name__,
                "a module with its own forward(): the converter cannot see how its children are wired. Give an "
                f"nn.Sequential of {_SUPPORTED_NAMES}, or a convertible registry model (vit-*-relu)",
            )
        ]
    for path, m in _leaves(model):
        why = _reason(m)
        if why is None and isinstance(m, ConvNorm | LinearBN):
            why = "a time-folding spikeformer layer: give the plain torch layers (Conv2d/Linear + BatchNorm)"
        if why:
            problems.append(LayerProblem(path, type(m).__name__, why))
    return problems


def _leaves(seq: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, m in seq.named_children():
        path = f"{prefix}{name}"
        if isinstance(m, nn.Sequential):
            out.extend(_leaves(m, path + "."))
        else:
            out.append((path, m))
    return out


def _fold(layer: nn.Linear | nn.Conv2d, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` of ``bn(layer(x))`` with an eval-mode BatchNorm folded in (``bn`` None or Identity: no fold)."""
    w = layer.weight.detach().clone()
    b = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    if isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - bn.running_mean) * scale + bn.bias.detach()
    return w, b


class GatedMaxPool2d(StatefulModule):
    """Max-pooling of spike trains: at each step pass the spike of the input with the highest count so far.

    Rueckauer et al. 2017: pooling the spikes of one step overestimates the max of the rates; gating by the running
    spike count selects the unit whose rate is largest. ``[T, B, C, H, W] -> [T, B, C, H', W']``.
    """

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__("m")
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.register_state("count", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        count = self.count if self.count is not None else torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            count = count + x[t]
            # a tiny tie-break towards the current step's value keeps ties deterministic and spike-preferring
            _, idx = F.max_pool2d(count + 1e-6 * x[t], self.kernel_size, self.stride, self.padding, return_indices=True)
            out.append(x[t].flatten(2).gather(2, idx.flatten(2)).reshape(idx.shape))
        self.count = count
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _Affine(nn.Module):
    """``x * scale + shift`` per channel (axis 1 of ``[B, C, ...]``): a BatchNorm that follows no conv/linear."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)


class _Scale(nn.Module):
    """Multiply by a constant (the spike value of a network's last neuron when nothing follows it)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


class SpikingSequential(nn.Module):
    """A converted ``nn.Sequential``: images ``[B, ...]`` are repeated ``timesteps`` times (direct encoding), run
    through the multi-step layers and the output is averaged over time (``[B, classes]``)."""

    def __init__(self, layers: nn.Sequential, timesteps: int) -> None:
        super().__init__()
        self.layers = layers
        self.timesteps = int(timesteps)
        self.model_name = "spiking-sequential"

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError("expected a tensor [B, ...] (repeated T times) or an encoded sequence [T, B, ...]")
        x = x if x.is_floating_point() else x.float()
        return x.unsqueeze(0).expand(self.timesteps, *x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset_states(self)
        return self.layers(self.to_sequence(x)).mean(0)


class SpikeformerConverter:
    """Convert a trained ANN into a spiking network that runs ``timesteps`` steps.

    Args:
        timesteps: T, steps of the converted network (>= 1).
        method: how thresholds are set: ``qcfs`` (the ANN's trained QCFS thresholds), ``max`` or ``percentile``
            (from calibration data; see the module docstring).
        percentile: the percentile of ``method="percentile"`` (in (0, 100]).
        neuron: ``if`` (rate-coded ``QuantIF`` twin) or ``st-bif`` (accumulation-coded twin with signed ``STBIF``
            neurons, SpikeZIP-TF; convertible ViTs only).

    Example::

        conv = SpikeformerConverter(timesteps=32, method="qcfs")
        conv.calibrate(ann, train_images[:512])   # needed for max / percentile; records statistics for qcfs
        snn = conv.convert(ann)                    # [B, C, H, W] -> logits [B, classes]
    """

    def __init__(self, timesteps: int = 32, method: str = "qcfs", percentile: float = 99.9, neuron: str = "if") -> None:
        if not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"timesteps must be an int >= 1, got {timesteps!r}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; accepted: {', '.join(METHODS)}")
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        if neuron not in NEURONS:
            raise ValueError(f"unknown neuron {neuron!r}; accepted: {', '.join(NEURONS)}")
        self.timesteps = timesteps
        self.neuron = neuron
        self.method = method
        self.percentile = float(percentile)
        self.statistics: dict[str, dict[str, float]] = {}
        self.calibration_samples = 0

    # -- calibration ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, model: nn.Module, data: torch.Tensor | Iterable[Any], max_batches: int | None = None) -> None:
        """Record per-activation statistics (max and percentile of the positive pre-activations) on ``data``.

        Args:
            model: the ANN (put in eval mode for the run, restored afterwards).
            data: images ``[N, C, H, W]`` (split into batches of 256) or an iterable of batches (tensors or
                ``(images, labels)`` pairs), preprocessed as the model expects.
            max_batches: stop after that many batches.
        """
        problems = find_unconvertible(model)
        if problems:
            raise ConversionError(problems)
        acts = {p: m for p, m in model.named_modules() if isinstance(m, _ACTIVATIONS)}
        if not acts:
            raise ValueError("the model has no ReLU or QCFS activation to calibrate")
        sums: dict[str, dict[str, float]] = {p: {"max": 0.0, "percentile": 0.0, "batches": 0} for p in acts}
        q = self.percentile / 100.0

        def hook(path: str):
            def fn(_m: nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
                x = inputs[0].detach().float().flatten()
                pos = x[x > 0]
                s = sums[path]
                s["batches"] += 1
                if pos.numel():
                    s["max"] = max(s["max"], float(pos.max()))
                    if pos.numel() > 1_000_000:  # torch.quantile's input limit; a random subsample is plenty
                        pos = pos[torch.randint(pos.numel(), (1_000_000,), generator=torch.Generator().manual_seed(0))]
                    s["percentile"] += float(torch.quantile(pos, q))

            return fn

        batches = data.split(256) if isinstance(data, torch.Tensor) else data
        was_training = model.training
        model.eval()
        handles = [m.register_forward_hook(hook(p)) for p, m in acts.items()]
        seen = 0
        try:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, tuple | list) else batch
                model(x)
                seen += len(x)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        if seen == 0:
            raise ValueError("calibration data is empty: give images [N, C, H, W] with N >= 1")
        self.statistics = {
            p: {"max": s["max"], "percentile": s["percentile"] / max(1, s["batches"])} for p, s in sums.items()
        }
        self.calibration_samples = seen

    def thresholds(self, model: nn.Module) -> dict[str, float]:
        """``lambda`` of every activation of ``model`` under this converter's method (module path -> value)."""
        acts = {p: m for p, m in model.named_modules() if isinstance(m, _ACTIVATIONS)}
        if self.method == "qcfs":
            plain = [p for p, m in acts.items() if not isinstance(m, QCFS)]
            if plain:
                raise ValueError(
                    f"method 'qcfs' uses trained QCFS thresholds, but {', '.join(plain)} are plain ReLU; "
                    "use method 'max' or 'percentile' with calibrate(model, data)"
                )
            out = {p: float(m.threshold.detach().clamp(min=1e-3)) for p, m in acts.items()}
        else:
            missing = [p for p in acts if p not in self.statistics]
            if missing:
                raise ValueError(
                    f"method {self.method!r} needs calibration: call calibrate(model, data) on this model first "
                    f"(no statistics for {', '.join(missing[:5])})"
                )
            key = "max" if self.method == "max" else "percentile"
            out = {p: self.statistics[p][key] for p in acts}
        return {p: (v if v > 0 else 1.0) for p, v in out.items()}  # a layer that never fired: any threshold works

    # -- conversion -----------------------------------------------------------------------------------------------
    def convert(self, model: nn.Module) -> nn.Module:
        """The spiking network (eval mode); the ANN is not modified. Raises ``ConversionError`` naming every layer
        without a spiking equivalent."""
        problems = find_unconvertible(model)
        if problems:
            raise ConversionError(problems)
        if isinstance(model, ReLUViT):
            return self._convert_vit(model)
        if self.neuron != "if":
            raise ValueError(
                f"neuron {self.neuron!r} converts the registry's ReLU ViTs only; an nn.Sequential converts with 'if'"
            )
        return self._convert_sequential(model)

    def _convert_vit(self, model: ReLUViT) -> ReLUViT:
        lam = self.thresholds(model)
        if self.neuron == "st-bif":  # a spike is one QCFS level: lambda / L
            acts = dict(model.named_modules())
            lam = {p: v / acts[p].levels for p, v in lam.items()}
        cfg = {**model.config.to_dict(), "spiking": True, "timesteps": self.timesteps, "neuron": self.neuron}
        twin = build_architecture(type(model).__name__, cfg, name=getattr(model, "model_name", None))
        sources = model.spike_sources()
        state: dict[str, torch.Tensor] = {}
        for path, m in model.named_modules():
            if isinstance(m, LinearBN | ConvNorm):
                layer, attr = (m.linear, "linear") if isinstance(m, LinearBN) else (m.conv, "conv")
                w, b = _fold(layer, m.bn)
                state[f"{path}.{attr}.weight"] = w * lam.get(sources.get(path, ""), 1.0)
                state[f"{path}.{attr}.bias"] = b
            elif isinstance(m, QCFS):
                state[f"{path}.threshold"] = torch.tensor(lam[path])
        state["head.weight"] = model.head.weight.detach() * lam[sources["head"]]
        state["head.bias"] = model.head.bias.detach().clone()
        state["patch_embed.pos_embed"] = model.patch_embed.pos_embed.detach().clone()
        buffers = dict(model.named_buffers())
        for name, (a, b) in model.product_operands().items():
            state[name] = buffers[name] * lam[a] * lam[b]
        twin.load_state_dict(state, strict=True)
        return twin.eval()

    def _convert_sequential(self, model: nn.Sequential) -> SpikingSequential:
        lam = self.thresholds(model)
        leaves = _leaves(model)
        ops: list[nn.Module] = []
        pending: float | None = None  # spike value of the last neuron, not yet folded into a weight layer
        i = 0
        while i < len(leaves):
            path, m = leaves[i]
            if isinstance(m, nn.Conv2d | nn.Linear):
                bn = None
                if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], nn.BatchNorm1d | nn.BatchNorm2d):
                    bn = leaves[i + 1][1]
                    i += 1
                layer = copy.deepcopy(m)
                w, b = _fold(m, bn)
                with torch.no_grad():
                    layer.weight.copy_(w * (pending or 1.0))
                    layer.bias = nn.Parameter(b)
                pending = None
                ops.append(SeqToANN(layer))
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                scale = m.weight.detach() / torch.sqrt(m.running_var + m.eps)
                shift = m.bias.detach() - m.running_mean * scale
                ops.append(SeqToANN(_Affine(scale * (pending or 1.0), shift)))
                pending = None
            elif isinstance(m, _ACTIVATIONS):
                ops.append(QuantIF(lam[path]))
                pending = lam[path]
            elif isinstance(m, nn.MaxPool2d):
                ops.append(GatedMaxPool2d(m.kernel_size, m.stride, m.padding))  # max commutes with the scale
            elif isinstance(m, nn.Dropout | nn.Identity):
                pass
            else:  # AvgPool2d, AdaptiveAvgPool2d, Flatten: linear, the pending scale passes through
                ops.append(SeqToANN(copy.deepcopy(m)))
            i += 1
        if pending is not None:
            ops.append(SeqToANN(_Scale(pending)))
        return SpikingSequential(nn.Sequential(*ops), self.timesteps).eval()


def parse_timesteps(text: str) -> list[int]:
    """``"4,8,16"`` -> ``[4, 8, 16]`` (sorted, unique); raises ``ValueError`` naming what is accepted."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            t = int(part)
        except ValueError:
            raise ValueError(
                f"--timesteps expects comma-separated integers >= 1 (e.g. 4,8,16,32,64), got {part!r} in {text!r}"
            ) from None
        if t < 1 or t > 4096:
            raise ValueError(f"--timesteps values must be between 1 and 4096, got {t}")
        values.append(t)
    if not values:
        raise ValueError("--timesteps needs at least one value, e.g. 4,8,16,32,64")
    return sorted(set(values))

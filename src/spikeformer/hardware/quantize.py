"""Fixed-point compilation of an :class:`HwGraph`: integer weights, integer membranes, integer decays and thresholds.

Every value in the program is an integer tensor with a *scale*: ``real = integer / scale``. Spikes and spike counts
have scale 1; the image is quantized to ``input_bits`` with a power-of-two scale; the output of a conv/linear/scale
operation (a synaptic current) gets the scale of the neurons that read it, chosen so that every threshold is about
``2^threshold_bits`` membrane units. Currents summed into one stream (residual adds) share one scale.

Per operation (``e`` is the weight exponent, shared by the layer or, with ``exponent="channel"``, per output
channel; mantissas have ``weight_bits`` signed bits)::

    affine:  out = floor(sum_j mant[c, j] * in[j] * 2^e[c]) + bias[c]          (exact integers)
    LIF:     v <- trunc(v * (2^d - dv) / 2^d) + in ;  s = v > vth ;  v <- 0 where s   (d = decay_bits)
    IF:      the same with dv = 0
    OR-pool: s = max over the window (binary) ;  AND: s = a * b (binary)
    ssa:     P = Q (K^T V) per head (integer counts)

The membrane saturates at ``+-(2^(membrane_bits-1) - 1)``. For a LIF with time constant ``tau`` (input decays too):
``dv = round(2^d / tau)`` and the float neuron ``h = v + (x - v) / tau`` maps to membrane units ``K = tau * s_in``
(``s_in`` the input's scale), ``vth = thr * K`` rounded to a multiple of ``2^threshold_shift`` *below* it, so a
membrane exactly at the float threshold fires as the float model's ``h >= thr`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from spikeformer.hardware.graph import HwGraph
from spikeformer.hardware.targets import TargetSpec

__all__ = ["QuantConfig", "IntProgram", "quantize_graph", "QuantizationError"]

EXPONENT_MODES = ("layer", "channel")


class QuantizationError(ValueError):
    """A value that does not fit the target's number formats (names the layer and the limit)."""


@dataclass(frozen=True)
class QuantConfig:
    """Quantization choices.

    Args:
        weight_bits: signed mantissa bits of weights (None: the target's, 8 on both targets).
        exponent: ``layer`` (one shared exponent per layer, Loihi-style, the default) or ``channel`` (one per output
            channel: the layer is split into synapse groups by exponent).
        weight_splits: synapse groups per layer that together carry one weight: group ``k`` holds the 8-bit mantissa
            of what groups ``0..k-1`` left over, at a lower exponent (2: about 15-bit weights from 8-bit synapses at
            twice the synaptic memory). All groups of a layer feed the same neurons, whose inputs add.
        threshold_bits: thresholds are placed near ``2^threshold_bits`` membrane units (precision of the membrane).
        input_bits: signed bits of the quantized image (graded payload of the first layer).
        input_max_abs: the largest absolute value of a preprocessed input (sets the input scale).
        head_bits: signed mantissa bits of the host-side classifier weights.
    """

    weight_bits: int | None = None
    exponent: str = "layer"
    weight_splits: int = 2
    threshold_bits: int = 20
    input_bits: int = 16
    input_max_abs: float = 1.0
    head_bits: int = 16

    def __post_init__(self) -> None:
        if self.exponent not in EXPONENT_MODES:
            raise ValueError(f"exponent must be one of {EXPONENT_MODES}, got {self.exponent!r}")
        if self.weight_bits is not None and not 2 <= self.weight_bits <= 24:
            raise ValueError(f"weight_bits must be in 2..24, got {self.weight_bits}")
        if not 1 <= self.weight_splits <= 4:
            raise ValueError(f"weight_splits must be in 1..4, got {self.weight_splits}")
        if not self.input_max_abs > 0:
            raise ValueError(f"input_max_abs must be > 0, got {self.input_max_abs}")


@dataclass
class IntProgram:
    """The compiled integer network: the graph, the integer parameters of every node and every value's scale."""

    graph: HwGraph
    target: TargetSpec
    config: QuantConfig
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)  # largest |integer| a value can take
    notes: list[str] = field(default_factory=list)

    @property
    def timesteps(self) -> int:
        return self.graph.timesteps

    def tensors(self) -> dict[str, torch.Tensor]:
        """Integer tensors of the program (for ``safetensors``), keyed ``node/param``."""
        out = {}
        for name, p in self.params.items():
            for k, v in p.items():
                if isinstance(v, torch.Tensor):
                    out[f"{name}/{k}"] = v.contiguous()
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        """Scalar parameters per node (JSON-ready)."""
        out = {}
        for name, p in self.params.items():
            out[name] = {k: v for k, v in p.items() if not isinstance(v, torch.Tensor)}
            out[name]["scale"] = self.scale.get(name)
        return out


def _exp_for(max_abs: torch.Tensor, bits: int) -> torch.Tensor:
    """Smallest exponent ``e`` with ``round(max_abs / 2^e) <= 2^(bits-1) - 1`` (elementwise; 0 where max is 0)."""
    top = 2 ** (bits - 1) - 1
    safe = torch.where(max_abs > 0, max_abs, torch.ones_like(max_abs))
    e = torch.ceil(torch.log2(safe / top))
    e = torch.where(torch.round(safe / 2.0**e) > top, e + 1, e)
    return torch.where(max_abs > 0, e, torch.zeros_like(e)).to(torch.int64)


def _split_weights(w: torch.Tensor, bits: int, per_channel: bool, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``w ~= sum_k mant[k] * 2^e[k]``: mantissas ``[splits, out, ...]`` and exponents ``[splits, out]``; each group
    quantizes the remainder the previous groups left."""
    mants, exps, rest = [], [], w
    for _ in range(splits):
        m, e = _quantize_weights(rest, bits, per_channel)
        mants.append(m)
        exps.append(e)
        rest = rest - m.double() * (2.0 ** e.double()).reshape((-1,) + (1,) * (w.ndim - 1))
    return torch.stack(mants), torch.stack(exps)


def _quantize_weights(w: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``w ~= mant * 2^e``: int mantissas and exponents (one per output channel; all equal unless ``per_channel``)."""
    rows = w.reshape(w.shape[0], -1).abs().amax(1)
    e = _exp_for(rows if per_channel else rows.max().expand_as(rows), bits)
    top = 2 ** (bits - 1) - 1
    shape = (-1,) + (1,) * (w.ndim - 1)
    mant = torch.round(w / (2.0 ** e.double()).reshape(shape)).clamp(-top, top).to(torch.int64)
    return mant, e


def _quantize_bias(b: torch.Tensor, bits: int) -> tuple[torch.Tensor, int]:
    """``b ~= mant * 2^e`` with one exponent ``e >= 0``; returns the effective integer bias and ``e``."""
    e = max(0, int(_exp_for(b.abs().max().reshape(1), bits)[0]))
    return (torch.round(b / 2.0**e) * 2**e).to(torch.int64), e


def _groups(graph: HwGraph) -> dict[str, str]:
    """Union-find over values that must share a scale (through add, tokens, flatten, sum_tokens, maxpool)."""
    parent = {n: n for n in graph.nodes}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for node in graph:
        if node.op in ("add", "tokens", "flatten", "sum_tokens", "maxpool"):
            for i in node.inputs:
                parent[find(i)] = find(node.name)
    return {n: find(n) for n in graph.nodes}


def quantize_graph(graph: HwGraph, target: TargetSpec, config: QuantConfig | None = None) -> IntProgram:
    """Compile ``graph`` to integers for ``target``. Raises :class:`QuantizationError` naming layer and limit."""
    cfg = config or QuantConfig()
    bits = cfg.weight_bits or target.weight_bits
    prog = IntProgram(graph, target, cfg)
    group = _groups(graph)
    nodes = graph.nodes
    vmax_membrane = 2 ** (target.membrane_bits - 1) - 1
    saturating: list[str] = []

    # kinds: spikes / counts (scale 1, fixed) versus currents (scale chosen per group)
    current = {}
    for node in graph:
        if node.op in ("conv2d", "linear", "scale"):
            current[node.name] = True
        elif node.op in ("add", "tokens", "flatten", "sum_tokens", "maxpool", "mean_tokens"):
            kinds = {current.get(i, False) for i in node.inputs}
            if len(kinds) > 1:
                raise QuantizationError(
                    f"layer {node.name}: adds spikes to real-valued currents; accepted: sums of spikes or of currents"
                )
            current[node.name] = kinds.pop()
        else:
            current[node.name] = False

    # the scale of each current group: thresholds of the neurons reading it land near 2^threshold_bits
    target_units = 2.0**cfg.threshold_bits
    group_scale: dict[str, float] = {}
    for node in graph:
        if node.op not in ("lif", "if"):
            continue
        src = node.inputs[0]
        mult = 1.0
        if nodes[src].op == "mean_tokens":
            mult = float(nodes[nodes[src].inputs[0]].shape[0])
            src = nodes[src].inputs[0]
        if not current.get(src):
            continue
        tau = node.params["tau"] if node.op == "lif" and node.params["decay_input"] else 1.0
        s = target_units / (node.params["v_threshold"] * tau * mult)
        g = group[src]
        group_scale[g] = min(group_scale.get(g, math.inf), 2.0 ** math.floor(math.log2(s)))

    in_scale = 2.0 ** math.floor(math.log2((2 ** (cfg.input_bits - 1) - 1) / cfg.input_max_abs))
    for node in graph:
        n, p, op = node.name, {}, node.op
        for key in ("weight", "bias"):
            if isinstance(node.params.get(key), torch.Tensor) and not torch.isfinite(node.params[key]).all():
                raise QuantizationError(f"layer {n}: its {key} holds inf or NaN; accepted: finite values")
        ins = [prog.scale[i] for i in node.inputs]
        bnd = [prog.bound[i] for i in node.inputs]
        if op == "input":
            prog.scale[n], prog.bound[n] = in_scale, 2 ** (cfg.input_bits - 1) - 1
            p.update(input_bits=cfg.input_bits, input_scale=in_scale)
        elif op in ("conv2d", "linear", "scale"):
            s_out = group_scale.get(group[n], target_units)
            if op == "scale":
                w = torch.full((node.shape[-1], 1), node.params["factor"], dtype=torch.float64)
                b = torch.zeros(node.shape[-1], dtype=torch.float64)
            else:
                w, b = node.params["weight"], node.params["bias"]
            splits = 1 if op == "scale" else cfg.weight_splits
            mant, e = _split_weights(w * (s_out / ins[0]), bits, cfg.exponent == "channel", splits)
            bias, bias_exp = _quantize_bias(b * s_out, target.bias_bits if node.inputs[0] != "input" else 32)
            p.update(weight=mant, exp=e, bias=bias, bias_exp=bias_exp, weight_bits=bits, weight_splits=splits)
            if op == "scale":  # a scalar factor: one mantissa and exponent
                p.update(weight=mant[:, :1, :1].reshape(1, 1), exp=e[:, :1])
                # the processor clamps the non-negative counts it sends so the current fits the membrane: a count at
                # the clamp already drives the membrane far above threshold, so the neuron fires just the same
                w_eff = abs(int(mant.flatten()[0])) * 2 ** int(e.flatten()[0])
                p["input_clamp"] = vmax_membrane // max(w_eff, 1)
                bnd = [min(bnd[0], p["input_clamp"])]
            if op == "conv2d":
                p.update(stride=node.params["stride"], padding=node.params["padding"])
            rowsum = mant.reshape(splits, mant.shape[1], -1).abs().sum(2).double()  # [splits, out]
            acc = float((rowsum * 2.0 ** e.double()).sum(0).max()) * bnd[0]
            prog.scale[n], prog.bound[n] = s_out, math.floor(acc) + float(bias.abs().max())
            p["accumulator_bound"] = float(rowsum.max()) * bnd[0]
        elif op in ("tokens", "flatten", "maxpool"):
            prog.scale[n], prog.bound[n] = ins[0], bnd[0]
            if op == "maxpool":
                p.update(kernel=node.params["kernel"], stride=node.params["stride"], padding=node.params["padding"])
        elif op == "add":
            if len(set(ins)) != 1:
                raise QuantizationError(f"layer {n}: inputs with different scales {ins}")
            prog.scale[n], prog.bound[n] = ins[0], sum(bnd)
        elif op == "sum_tokens":
            prog.scale[n], prog.bound[n] = ins[0], bnd[0] * nodes[node.inputs[0]].shape[0]
        elif op == "mean_tokens":
            tokens = nodes[node.inputs[0]].shape[0]
            prog.scale[n], prog.bound[n] = ins[0] * tokens, bnd[0] * tokens  # the integer is the token sum
        elif op in ("lif", "if"):
            decay_input = op == "lif" and node.params["decay_input"]
            tau = node.params["tau"] if op == "lif" else math.inf
            k = ins[0] * (tau if decay_input else 1.0)
            dv = round(2**target.decay_bits / tau) if op == "lif" else 0
            if op == "lif" and abs(dv - 2**target.decay_bits / tau) > 1e-9:
                prog.notes.append(
                    f"{n}: tau={tau} gives dv={2**target.decay_bits / tau:.4f}; rounded to {dv} "
                    f"({target.decay_bits}-bit decay)"
                )
            g = 2**target.threshold_shift
            units = node.params["v_threshold"] * k
            vth = g * (math.ceil(units / g) - 1)
            if vth < 0 or vth > vmax_membrane:
                raise QuantizationError(
                    f"layer {n}: threshold {units:.0f} membrane units does not fit the {target.membrane_bits}-bit "
                    f"membrane of {target.name} (at most {vmax_membrane})"
                )
            if bnd[0] > vmax_membrane:
                saturating.append(n)
            p.update(dv=dv, decay_unity=2**target.decay_bits, vth=vth, v_max=vmax_membrane, membrane_units=k)
            prog.scale[n], prog.bound[n] = 1.0, 1.0
        elif op in ("orpool", "and"):
            if op == "orpool":
                p.update(kernel=node.params["kernel"], stride=node.params["stride"], padding=node.params["padding"])
            prog.scale[n], prog.bound[n] = 1.0, 1.0
        elif op == "ssa":
            tokens, width = node.shape[0], node.shape[1] // node.params["heads"]
            p.update(heads=node.params["heads"])
            prog.scale[n], prog.bound[n] = 1.0, float(tokens * width)
        elif op == "readout":
            w, b = node.params["weight"], node.params["bias"]
            mean_tokens = node.params["mean_tokens"]
            tokens = nodes[node.inputs[0]].shape[0] if mean_tokens else 1
            mant, e = _quantize_weights(w, cfg.head_bits, per_channel=False)  # host: one group
            denom = graph.timesteps * tokens * ins[0]  # the integer feature is a sum over time (and tokens)
            bias = torch.round(b * denom / 2.0 ** e.double()).to(torch.int64)
            p.update(weight=mant, exp=e, bias=bias, mean_tokens=mean_tokens, logit_scale=float(denom))
            prog.scale[n], prog.bound[n] = denom / 2.0 ** float(e[0]), 0.0
        else:
            raise QuantizationError(f"layer {n}: operation {op!r} has no integer implementation")
        prog.params[n] = p
    if saturating:
        prog.notes.append(
            f"{len(saturating)} neuron layer(s) could in the worst case receive more than the "
            f"{target.membrane_bits}-bit membrane holds ({', '.join(saturating[:3])}"
            f"{', ...' if len(saturating) > 3 else ''}); "
            f"the emulator saturates the membrane at +-{vmax_membrane}; Lava's bit-accurate Loihi model saturates the "
            "membrane too but wraps the synaptic current, so such an input would differ there (the report's "
            "'inputs_beyond_membrane_on_samples' says whether the sample images reach it)"
        )
    _check_core_formats(prog)
    return prog


def _check_core_formats(prog: IntProgram) -> None:
    """Every neuron input must stay within exact integer arithmetic (float64 carries integers below 2^53)."""
    for node in prog.graph:
        if node.op in ("lif", "if") and prog.bound[node.inputs[0]] >= 2**52:
            raise QuantizationError(
                f"layer {node.name}: its input can reach {prog.bound[node.inputs[0]]:.3g}, beyond exact arithmetic"
            )

"""Compiler: split a model into core / embedded-processor / host work, quantize it, place it on cores, report.

``compile_model(model, target)`` lowers the model (:func:`lower_model`), quantizes it (:func:`quantize_graph`),
partitions every neuron layer onto cores under the target's per-core limits (neurons, distinct input axons, synaptic
memory, fan-out), runs the integer program on sample inputs to measure spikes, and estimates traffic, energy and
latency per inference. Nothing is dropped: every graph node appears in the report with where it runs and why.

Synapses: a neuron layer receives synapses from every spike population its input expression reaches through
conv/linear/sum/mean/add operations (a residual sum of spike populations costs one synapse per population; graded
values from a processor cost one synapse per value). Conv weights are not shared between neurons on a core
(``conv_weight_sharing=False``, Loihi 1 behaviour), so a conv synapse costs ``weight_bits`` per neuron and tap.

Energy and latency (every figure labelled in the report):
- loihi2: per-op energy and step latency of Loihi 2 are not public. The estimate uses Loihi 1 figures (Davies et al.,
  IEEE Micro 2018: 23.6 pJ per synaptic op, 81/52 pJ per active/inactive neuron update, <= 3.5 ns per synaptic op,
  8.4 ns per neuron update) as labelled stand-ins, never as Loihi 2 measurements.
- spinnaker2: the assumed placeholders of ``spikeformer.energy.hardware.SpiNNaker2``; latency is not estimated (no
  published per-event timing).
- processor work (embedded CPU / host) is priced at the 45 nm float MAC energy (Horowitz, ISSCC 2014), an assumption.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from spikeformer.energy.hardware import (
    DAVIES_SOURCE,
    DAVIES_SYNOP_PJ,
    DAVIES_UPDATE_ACTIVE_PJ,
    DAVIES_UPDATE_INACTIVE_PJ,
    HOROWITZ_FP32_MAC_PJ,
    SpiNNaker2,
)
from spikeformer.hardware.emulator import run_program
from spikeformer.hardware.graph import NEURON_OPS, HwGraph, HwNode, lower_model
from spikeformer.hardware.quantize import IntProgram, QuantConfig, quantize_graph
from spikeformer.hardware.targets import TargetSpec, get_target

__all__ = ["CompileResult", "compile_model", "compile_graph", "placement_table", "input_max_abs"]

# Davies et al., IEEE Micro 2018, Table 1 (Loihi 1): synaptic op <= 3.5 ns, neuron update 8.4 ns (active).
DAVIES_SYNOP_NS = 3.5
DAVIES_UPDATE_NS = 8.4


_PROCESSOR_REASON = {
    "ssa": "product of two spike tensors (Q K^T V): no neuromorphic-core primitive (NIR has none either)",
    "maxpool": "max-pooling of real values: no neuromorphic-core primitive",
    "readout": "classifier on the time- and token-averaged features (real-valued output)",
    "input": "the preprocessed image, quantized to integers on the host",
    "encoder": "multiply-accumulates on the real-valued image; results enter the cores as graded spikes",
}
_CORE_REASON = {
    "lif": "LIF neurons (integer membrane, 12-bit decay)",
    "if": "IF neurons",
    "orpool": "max-pool of binary spikes = OR: sum-pool synapses into IF neurons with threshold 0.5",
    "and": "product of two binary spikes = AND: neurons with threshold 1.5 and no memory",
    "add": "residual sum, materialised once as relay neurons that forward their integer input as graded spikes",
}


@dataclass
class Projection:
    """Synapses from one source population into a neuron layer."""

    source: str
    fan_in: int  # synapses per target neuron
    via: str  # the operation next to the target: conv2d, linear, other
    conv: tuple[int, int, int] | None = None  # (in channels, kernel, stride) when via is conv2d


@dataclass
class LayerPlacement:
    name: str
    op: str
    where: str
    reason: str
    neurons: int = 0
    synapses: int = 0
    cores: int = 0
    neurons_per_core: int = 0
    inputs_per_core: int = 0
    memory_per_core_bytes: int = 0
    spikes_per_inference: float = 0.0
    synaptic_ops_per_inference: float = 0.0
    processor_ops_per_inference: float = 0.0
    sources: list[str] = field(default_factory=list)


@dataclass
class CompileResult:
    """Everything the report holds; ``to_dict()`` is the JSON report."""

    program: IntProgram
    layers: list[LayerPlacement]
    cores: list[dict[str, Any]]
    chips: int
    chips_requested: int | None
    violations: list[str]
    traffic: dict[str, Any]
    energy: dict[str, Any]
    latency: dict[str, Any]
    samples: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        t = self.program.target
        return {
            "ok": self.ok,
            "target": t.name,
            "model": self.program.graph.model_name,
            "timesteps": self.program.timesteps,
            "chips_requested": self.chips_requested,
            "chips_used": self.chips,
            "cores_used": len(self.cores),
            "cores_per_chip": t.cores_per_chip,
            "violations": self.violations,
            "summary": {
                where: [lp.name for lp in self.layers if lp.where == where] for where in ("cores", "embedded", "host")
            },
            "quantization": {**asdict(self.program.config), "notes": self.program.notes},
            "target_limits": {k: v for k, v in t.to_dict().items() if k != "sources"},
            "assumptions": t.assumptions(),
            "layers": [asdict(lp) for lp in self.layers],
            "cores": self.cores,
            "traffic": self.traffic,
            "energy": self.energy,
            "latency": self.latency,
            "measured_on_samples": self.samples,
        }


def _projections(graph: HwGraph, node: HwNode, where: dict[str, str]) -> list[Projection]:
    """Walk back from a core layer through synaptic operations to the populations it reads."""
    out: list[Projection] = []

    def walk(name: str, fan: int, via: str, conv=None) -> None:
        n = graph.nodes[name]
        if n.op in NEURON_OPS or where.get(name) in ("embedded", "host", "relay") or n.op == "input":
            out.append(Projection(name, fan, via or "other", conv))
        elif n.op == "conv2d":
            c, kh, kw = n.params["weight"].shape[1:]
            walk(n.inputs[0], fan * c * kh * kw, via or "conv2d", conv or (c, kh, n.params["stride"][0]))
        elif n.op == "linear":
            walk(n.inputs[0], fan * n.params["weight"].shape[1], via or "linear", conv)
        elif n.op in ("sum_tokens", "mean_tokens"):
            walk(n.inputs[0], fan * graph.nodes[n.inputs[0]].shape[0], via or "other", conv)
        else:  # add, tokens, flatten, scale: no new synapses per path
            for i in n.inputs:
                walk(i, fan, via, conv)

    if node.op == "orpool":
        k = node.params["kernel"]
        return [Projection(node.inputs[0], k[0] * k[1], "conv2d", (1, k[0], node.params["stride"][0]))]
    for i in node.inputs:
        walk(i, 1, "")
    return out


def _where(graph: HwGraph, target: TargetSpec) -> dict[str, str]:
    embedded = "embedded" if target.embedded_cpus_per_chip else "cores"  # SpiNNaker2: software on a PE
    out = {}
    for n in graph:
        if n.op in NEURON_OPS:
            out[n.name] = "cores"
        elif n.op == "add" and target.graded_spikes:
            out[n.name] = "relay"
        elif n.op in ("ssa", "maxpool"):
            out[n.name] = embedded
        elif n.op == "readout":
            out[n.name] = "host"
        elif n.op in ("conv2d", "linear") and n.inputs[0] == "input":
            out[n.name] = "host"
        elif n.op == "input":
            out[n.name] = "host"
        else:
            out[n.name] = "synapses"
    return out


def _tile_options(graph: HwGraph, node: HwNode, projs: list[Projection]):
    """Yield ``(neurons per core, inputs per core, cores)`` tilings of a neuron layer.

    Conv inputs of a tile of ``g`` channels x ``r`` rows x ``c`` columns are the receptive field of the tile (all
    input channels; one channel for OR-pooling); token-wise linear inputs of ``t`` tokens are ``t x in_features``;
    every other projection is counted per neuron (an upper bound)."""
    shape = node.shape
    if len(shape) == 3:
        c, h, w = shape
        for gc in (d for d in range(1, c + 1) if c % d == 0):
            for r in range(1, h + 1):
                for cc in sorted({w, *range(1, w + 1, max(1, w // 8))}):
                    inputs = 0
                    for p in projs:
                        if p.conv is None:
                            inputs += gc * r * cc * p.fan_in
                            continue
                        cin, k, st = p.conv
                        h_in, w_in = graph.nodes[p.source].shape[-2:]
                        rows_in, cols_in = min(h_in, (r - 1) * st + k), min(w_in, (cc - 1) * st + k)
                        inputs += (gc if node.op == "orpool" else cin) * rows_in * cols_in
                    yield gc * r * cc, inputs, math.ceil(c / gc) * math.ceil(h / r) * math.ceil(w / cc)
        return
    if len(shape) == 2:
        n, d = shape
        for t in range(1, n + 1):
            for f in (k for k in range(1, d + 1) if d % k == 0):
                inputs = sum(t * p.fan_in if p.via == "linear" else t * f * p.fan_in for p in projs)
                yield t * f, inputs, math.ceil(n / t) * (d // f)
        return
    size = node.size
    fan = sum(p.fan_in for p in projs)
    total_in = sum(graph.nodes[p.source].size for p in projs)
    for m in sorted({max(1, size // k) for k in range(1, size + 1)} | {size}):
        yield m, min(total_in, m * fan), math.ceil(size / m)


def _place(graph, node, projs, target, splits, bits) -> tuple[tuple[int, int, int, int], str | None]:
    """Best tiling ``(neurons/core, inputs/core, cores, bytes/core)`` and the violated limit, if any."""
    fan = sum(p.fan_in for p in projs)
    syn_bytes = fan * splits * bits / 8
    best, tightest = None, None
    for m, inputs, cores in _tile_options(graph, node, projs):
        mem = math.ceil(m * syn_bytes + m * target.neuron_state_bytes)
        checks = [
            (m <= target.neurons_per_core, f"neurons per core {m} > {target.neurons_per_core}"),
            (inputs <= target.fan_in_per_core, f"input axons per core {inputs} > {target.fan_in_per_core}"),
            (mem <= target.memory_per_core_bytes, f"memory per core {mem} B > {target.memory_per_core_bytes} B"),
        ]
        failed = [msg for ok, msg in checks if not ok]
        if not failed and (best is None or cores < best[2]):
            best = (m, inputs, cores, mem)
        if failed and m == 1:
            tightest = failed[0]
    if best is None:
        limit = tightest or "no tiling satisfies the per-core limits"
        return (0, 0, 0, 0), (
            f"layer {node.name}: even one neuron per core breaks a limit of {target.name}: {limit} "
            f"(each neuron has {fan * splits} synapses)"
        )
    return best, None


def compile_graph(
    graph: HwGraph,
    target: TargetSpec,
    config: QuantConfig | None = None,
    samples: torch.Tensor | None = None,
    chips: int | None = None,
) -> CompileResult:
    """Quantize and place ``graph``; ``samples`` (preprocessed inputs) measure spikes for traffic and energy."""
    prog = quantize_graph(graph, target, config)
    where = _where(graph, target)
    splits, bits = prog.config.weight_splits, prog.config.weight_bits or target.weight_bits
    spikes, n_samples, beyond = {}, 0, []
    if samples is not None and len(samples):
        res = run_program(prog, samples)
        n_samples = res.samples
        spikes = {k: v / n_samples for k, v in res.spikes.items()}
        limit = 2 ** (target.membrane_bits - 1) - 1
        beyond = [k for k, v in res.max_input.items() if v > limit]
    t_steps = graph.timesteps
    layers, cores, violations = [], [], []
    core_of: dict[str, int] = {}
    for node in graph:
        w = where[node.name]
        if node.op in NEURON_OPS or w == "relay":
            projs = _projections(graph, node, where)
            (m, inputs, n_cores, mem), err = _place(graph, node, projs, target, splits, bits)
            if err:
                violations.append(err)
            fan = sum(p.fan_in for p in projs) * (1 if node.op in ("orpool", "and", "add") else splits)
            lp = LayerPlacement(
                node.name,
                "relay" if w == "relay" else node.op,
                "cores",
                _CORE_REASON[node.op],
                neurons=node.size,
                synapses=node.size * fan,
                cores=n_cores,
                neurons_per_core=m,
                inputs_per_core=inputs,
                memory_per_core_bytes=mem,
                spikes_per_inference=spikes.get(node.name, 0.0),
                sources=[p.source for p in projs],
            )
            # synaptic ops: every event of a source drives (synapses of that projection / source size) synapses
            for p in projs:
                events = spikes.get(p.source)  # spikes, or non-zero graded values of a relay
                if events is None:  # graded values from a processor: one event per value and step
                    events = graph.nodes[p.source].size * t_steps
                lp.synaptic_ops_per_inference += events * node.size * p.fan_in / graph.nodes[p.source].size
            core_of[node.name] = len(cores)
            for i in range(n_cores):
                cores.append(
                    {
                        "core": len(cores),
                        "chip": len(cores) // target.cores_per_chip,
                        "layer": node.name,
                        "neurons": min(m, node.size - i * m) if n_cores * m >= node.size else m,
                        "memory_bytes": mem,
                        "input_axons": inputs,
                    }
                )
            layers.append(lp)
        elif w in ("embedded", "host") or (w == "cores" and node.op in ("ssa", "maxpool")):
            op = "encoder" if node.op in ("conv2d", "linear") else node.op
            lp = LayerPlacement(node.name, node.op, w, _PROCESSOR_REASON[op])
            if node.op == "ssa":
                n, d = node.shape
                lp.processor_ops_per_inference = 2.0 * n * d * (d // node.params["heads"]) * t_steps
            elif node.op == "maxpool":
                k = node.params["kernel"]
                lp.processor_ops_per_inference = float(node.size * k[0] * k[1] * t_steps)
            elif node.op in ("conv2d", "linear"):
                fan = math.prod(node.params["weight"].shape[1:])
                lp.processor_ops_per_inference = float(node.size * fan)  # the image repeats: once per inference
            elif node.op == "readout":
                src = graph.nodes[node.inputs[0]]
                lp.processor_ops_per_inference = float(src.size * t_steps + node.params["weight"].numel())
            if node.op == "ssa" and w == "cores":
                lp.where, lp.reason = "cores", lp.reason + "; runs as software on the processing element's ARM core"
            layers.append(lp)
    n_cores = len(cores)
    chips_used = max(1, math.ceil(n_cores / target.cores_per_chip))
    neurons = sum(lp.neurons for lp in layers)
    synapses = sum(lp.synapses for lp in layers)
    if target.neurons_per_chip and neurons > target.neurons_per_chip * (chips or chips_used):
        violations.append(f"{neurons} neurons > {target.neurons_per_chip} per chip x {chips or chips_used} chip(s)")
    if target.synapses_per_chip and synapses > target.synapses_per_chip * (chips or chips_used):
        violations.append(f"{synapses} synapses > {target.synapses_per_chip} per chip x {chips or chips_used} chip(s)")
    if chips is not None and n_cores > chips * target.cores_per_chip:
        biggest = max((lp for lp in layers if lp.cores), key=lambda lp: lp.cores)
        violations.append(
            f"the model needs {n_cores} cores ({chips_used} chips) but --chips {chips} gives "
            f"{chips * target.cores_per_chip} ({target.cores_per_chip} per chip); the largest layer is "
            f"{biggest.name} with {biggest.cores} cores"
        )
    core_layers = [lp for lp in layers if lp.where == "cores" and lp.op in (*NEURON_OPS, "relay")]
    sops = sum(lp.synaptic_ops_per_inference for lp in core_layers)
    spk = sum(lp.spikes_per_inference for lp in core_layers)
    updates = sum(lp.neurons for lp in core_layers) * t_steps
    proc_ops = {w: sum(lp.processor_ops_per_inference for lp in layers if lp.where == w) for w in ("embedded", "host")}
    proc_ops["cores"] = sum(lp.processor_ops_per_inference for lp in layers if lp.where == "cores")
    graded = sum(
        graph.nodes[lp.name].size * t_steps
        for lp in layers
        if lp.where != "cores" and lp.op in ("ssa", "maxpool", "conv2d", "linear")
    )
    traffic = {
        "spikes_per_inference": spk,
        "core_to_core_spike_messages_per_inference": sum(
            lp.spikes_per_inference * _destinations(lp, layers) for lp in core_layers
        ),
        "processor_to_core_values_per_inference": graded,
        "note": "spikes include the non-zero graded values relay neurons send; messages = spikes x destination cores "
        "reading the sender's neurons (upper bound: every core of a consumer layer counted); graded values from "
        "processors: one message per value and step",
    }
    energy, latency = _estimates(target, sops, spk, updates, proc_ops, layers, t_steps)
    if not n_samples:
        why = "not estimated: no sample inputs to measure spikes (the checkpoint carries no sample images)"
        energy = {"joules_per_inference": None, "lines": [], "assumed": True, "note": why}
        latency = {"seconds_per_inference": None, "assumed": True, "note": why}
        traffic["note"] = why
    traffic["inputs_beyond_membrane_on_samples"] = beyond
    return CompileResult(prog, layers, cores, chips_used, chips, violations, traffic, energy, latency, n_samples)


def _destinations(lp: LayerPlacement, layers: list[LayerPlacement]) -> int:
    return sum(other.cores for other in layers if lp.name in other.sources) or 1


def _estimates(target, sops, spikes, updates, proc_ops, layers, t_steps):
    proc_total = proc_ops["embedded"] + proc_ops["host"] + proc_ops["cores"]
    proc_line = {
        "component": "processor operations (embedded CPU / host)",
        "count": proc_total,
        "pj_per_op": HOROWITZ_FP32_MAC_PJ,
        "source": "assumed: 45 nm float MAC energy (Horowitz, ISSCC 2014); not a figure for this chip's processors",
        "assumed": True,
    }
    if target.name == "loihi2":
        lines = [
            {"component": "synaptic ops", "count": sops, "pj_per_op": DAVIES_SYNOP_PJ},
            {"component": "active neuron updates", "count": spikes, "pj_per_op": DAVIES_UPDATE_ACTIVE_PJ},
            {
                "component": "inactive neuron updates",
                "count": max(0.0, updates - spikes),
                "pj_per_op": DAVIES_UPDATE_INACTIVE_PJ,
            },
        ]
        for line in lines:
            line.update(source=f"Loihi 1 stand-in: {DAVIES_SOURCE}", assumed=True)
        note = (
            "Loihi 2 per-op energy is not public (Intel shares it with research members only): these are Loihi 1 "
            "figures (pre-silicon, 0.75 V) used as labelled stand-ins, not Loihi 2 measurements. Static power and "
            "spike routing are not charged."
        )
        per_core = {}
        for lp in layers:
            if lp.where == "cores" and lp.cores:
                per_core[lp.name] = (
                    lp.synaptic_ops_per_inference / t_steps / lp.cores * DAVIES_SYNOP_NS
                    + lp.neurons_per_core * DAVIES_UPDATE_NS
                )
        step_ns = max(per_core.values(), default=0.0)
        latency = {
            "seconds_per_inference": step_ns * t_steps * 1e-9,
            "cores_seconds_per_step": step_ns * 1e-9,
            "slowest_layer": max(per_core, key=per_core.get) if per_core else None,
            "assumed": True,
            "note": f"cores only: the slowest core per step (synaptic ops x {DAVIES_SYNOP_NS} ns + neurons x "
            f"{DAVIES_UPDATE_NS} ns, Loihi 1 stand-ins from {DAVIES_SOURCE}) times T; barrier synchronisation, "
            "I/O and the embedded-CPU / host work are not included (their speed on Loihi 2 is not public)",
        }
    else:
        hw = SpiNNaker2()
        lines = [
            {"component": "synaptic events", "count": sops, "pj_per_op": hw.e_sop_pj},
            {"component": "neuron updates", "count": updates, "pj_per_op": hw.e_update_pj},
        ]
        for line in lines:
            line.update(source="assumed: placeholders from Horowitz, ISSCC 2014", assumed=True)
        note = hw.assumption
        latency = {
            "seconds_per_inference": None,
            "assumed": True,
            "note": "not estimated: no published per-event timing for SpiNNaker2",
        }
    lines.append(proc_line)
    for line in lines:
        line["joules"] = line["count"] * line["pj_per_op"] * 1e-12
    energy = {"joules_per_inference": sum(x["joules"] for x in lines), "lines": lines, "assumed": True, "note": note}
    return energy, latency


def compile_model(
    model: nn.Module,
    target: str | TargetSpec = "loihi2",
    config: QuantConfig | None = None,
    samples: torch.Tensor | None = None,
    chips: int | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> CompileResult:
    """Lower, quantize and place ``model`` on ``target`` (a name or a :class:`TargetSpec`)."""
    spec = get_target(target) if isinstance(target, str) else target
    return compile_graph(lower_model(model, input_shape), spec, config, samples, chips)


def placement_table(result: CompileResult) -> list[tuple[str, ...]]:
    """Rows for a readable table: layer, op, where, neurons, cores, memory/core, spikes, why."""
    rows = []
    for lp in result.layers:
        rows.append(
            (
                lp.name,
                lp.op,
                lp.where,
                str(lp.neurons or "-"),
                str(lp.cores or "-"),
                f"{lp.memory_per_core_bytes / 1024:.1f} KB" if lp.cores else "-",
                f"{lp.spikes_per_inference:.0f}"
                if lp.where == "cores" and lp.cores
                else f"{lp.processor_ops_per_inference:.3g} ops",
                lp.reason,
            )
        )
    return rows


def input_max_abs(preprocess) -> float:
    """The largest absolute value a preprocessed uint8 image can take (``(p * scale - mean) / std``)."""
    hi = 255.0 * preprocess.scale if preprocess.scale != 1.0 else 1.0
    return max(max(abs(-m / s), abs((hi - m) / s)) for m, s in zip(preprocess.mean, preprocess.std, strict=False))


def quant_config_for(manifest, weight_bits: int | None, exponent: str, weight_splits: int) -> QuantConfig:
    """The quantization config for a checkpoint (input range from its preprocessing)."""
    return QuantConfig(
        weight_bits=weight_bits,
        exponent=exponent,
        weight_splits=weight_splits,
        input_max_abs=input_max_abs(manifest.preprocess),
    )

"""Emulators: run a compiled :class:`IntProgram` bit-exactly, or an :class:`HwGraph` in floating point.

``run_program`` executes the integer description of ``spikeformer.hardware.quantize`` on batches of inputs: integer
values are carried in float tensors (exact: every sum is checked at compile time to stay below 2^24 where float32 is
used and below 2^53 otherwise) and membranes in int64, with the target's truncating decay, saturation, strict
threshold and reset to 0. Stateless operations fold time into the batch (``[T, B, ...] -> [T*B, ...]``); neurons
step through time. ``run_graph`` is the floating-point reference of the same graph (the lowering check: it must
reproduce the torch model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from spikeformer.hardware.graph import NEURON_OPS, HwGraph
from spikeformer.hardware.quantize import IntProgram

__all__ = ["EmulatorResult", "run_program", "run_graph", "evaluate_emulated", "BACKENDS"]

BACKENDS = ("loihi2-emu", "spinnaker2-emu")
_EXACT_F32 = 2**24


@dataclass
class EmulatorResult:
    """Logits ``[B, classes]`` (float64), spike counts per neuron node, and recorded values ``[T, B, ...]``."""

    logits: torch.Tensor
    spikes: dict[str, float] = field(default_factory=dict)
    neurons: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, torch.Tensor] = field(default_factory=dict)
    max_input: dict[str, float] = field(default_factory=dict)  # largest |input| a neuron layer received
    samples: int = 0


def _fold(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


def _unfold(x: torch.Tensor, t: int) -> torch.Tensor:
    return x.reshape(t, x.shape[0] // t, *x.shape[1:])


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    t, b, n, d = x.shape
    return x.reshape(t, b, n, h, d // h).transpose(2, 3)  # [T, B, N, D] -> [T, B, H, N, D/H]


def _ssa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    q, k, v = (_heads(a.float(), heads) for a in (q, k, v))  # counts stay exact in float32 (< 2^24)
    y = q @ (k.transpose(-2, -1) @ v)  # [T, B, H, N, d]
    t, b, h, n, d = y.shape
    return y.transpose(2, 3).reshape(t, b, n, h * d).double()


def _pool(x: torch.Tensor, p: dict) -> torch.Tensor:
    t = x.shape[0]
    return _unfold(F.max_pool2d(_fold(x), p["kernel"], p["stride"], p["padding"]), t)


def _last_use(graph: HwGraph) -> dict[str, int]:
    last = {}
    for i, node in enumerate(graph):
        for src in node.inputs:
            last[src] = i
    return last


def _sequence(graph: HwGraph, x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` (repeated T times) or ``[T, B, ...]`` -> ``[T, B, ...]`` float64."""
    shape = graph.nodes["input"].shape
    if tuple(x.shape[-len(shape) :]) != tuple(shape) or x.ndim not in (len(shape) + 1, len(shape) + 2):
        raise ValueError(f"expected inputs [B, {', '.join(map(str, shape))}] or [T, B, ...]; got {list(x.shape)}")
    x = x.double()
    return x.unsqueeze(0).expand(graph.timesteps, *x.shape) if x.ndim == len(shape) + 1 else x


def run_program(
    prog: IntProgram,
    x: torch.Tensor,
    batch_size: int = 250,
    record: tuple[str, ...] = (),
    progress: Callable[[int], None] | None = None,
) -> EmulatorResult:
    """Run the integer program on preprocessed inputs ``x`` (``[B, C, H, W]`` or ``[T, B, ...]``)."""
    seq = _sequence(prog.graph, x)
    batches = []
    result = EmulatorResult(torch.empty(0))
    for start in range(0, seq.shape[1], batch_size):
        part = seq[:, start : start + batch_size]
        batches.append(_run_int_batch(prog, part, record, result))
        if progress is not None:
            progress(part.shape[1])
    result.logits = torch.cat(batches) if batches else torch.empty(0)
    result.samples = seq.shape[1]
    for name, v in list(result.recorded.items()):
        if isinstance(v, list):
            result.recorded[name] = torch.cat(v, dim=1)
    return result


def _affine(prog: IntProgram, name: str, op: str, x: torch.Tensor) -> torch.Tensor:
    """``sum_k floor(acc_k * 2^e_k) + bias`` over the synapse groups ``k`` of a layer (exact integers)."""
    p = prog.params[name]
    dtype = torch.float32 if p["accumulator_bound"] < _EXACT_F32 else torch.float64
    out = p["bias"].double().reshape(-1, 1, 1) if op == "conv2d" else p["bias"].double()
    for w, e in zip(p["weight"], p["exp"], strict=True):
        if op == "conv2d":
            acc = _unfold(F.conv2d(_fold(x).to(dtype), w.to(dtype), None, p["stride"], p["padding"]), x.shape[0])
            scale = (2.0 ** e.double()).reshape(-1, 1, 1)
        elif op == "linear":
            acc, scale = x.to(dtype) @ w.to(dtype).T, 2.0 ** e.double()
        else:  # scale: one factor on counts the processor clamped
            acc, scale = x.clamp(-p["input_clamp"], p["input_clamp"]) * float(w[0]), 2.0 ** e.double()
        out = out + torch.floor(acc.double() * scale)
    return out


def _int_neuron(p: dict, x: torch.Tensor) -> torch.Tensor:
    """Integer LIF/IF over ``x [T, B, ...]`` (integers): truncating decay, saturation, ``v > vth``, reset to 0."""
    xi = x.round().to(torch.int64)
    v = torch.zeros_like(xi[0])
    keep = p["decay_unity"] - p["dv"]
    shift = int(p["decay_unity"]).bit_length() - 1
    out = torch.empty(x.shape, dtype=torch.float64)
    for t in range(x.shape[0]):
        prod = v * keep
        v = torch.sign(prod) * (prod.abs() >> shift) + xi[t]
        v = v.clamp(-p["v_max"], p["v_max"])
        s = v > p["vth"]
        v = torch.where(s, torch.zeros_like(v), v)
        out[t] = s
    return out


def _run_int_batch(prog: IntProgram, seq: torch.Tensor, record, result: EmulatorResult) -> torch.Tensor:
    graph, vals = prog.graph, {}
    last = _last_use(graph)
    for i, node in enumerate(graph):
        op, p = node.op, prog.params[node.name]
        ins = [vals[s] for s in node.inputs]
        if op == "input":
            top = 2 ** (p["input_bits"] - 1) - 1
            y = torch.round(seq * p["input_scale"]).clamp(-top, top)
        elif op in ("conv2d", "linear", "scale"):
            y = _affine(prog, node.name, op, ins[0])
        elif op == "add":
            y = ins[0]
            for other in ins[1:]:
                y = y + other
        elif op == "tokens":
            y = ins[0].flatten(3).transpose(2, 3)
        elif op == "flatten":
            y = ins[0].flatten(2)
        elif op in ("sum_tokens", "mean_tokens"):
            y = ins[0].sum(2, keepdim=op == "sum_tokens")
        elif op in ("maxpool", "orpool"):
            y = _pool(ins[0], p)
        elif op == "and":
            y = ins[0] * ins[1]
        elif op in ("lif", "if"):
            y = _int_neuron(p, ins[0])
            peak = float(ins[0].abs().max()) if ins[0].numel() else 0.0
            result.max_input[node.name] = max(result.max_input.get(node.name, 0.0), peak)
        elif op == "ssa":
            y = _ssa(*ins, p["heads"])
        elif op == "readout":
            feats = ins[0].sum(0)  # [B, N, D] or [B, D]: sum over time
            if p["mean_tokens"]:
                feats = feats.sum(1)
            logits = feats @ p["weight"].double().T + p["bias"].double()
            y = logits * (2.0 ** float(p["exp"][0])) / p["logit_scale"]
        else:  # pragma: no cover - quantize_graph rejects unknown ops first
            raise ValueError(f"no emulation for {op!r}")
        if op in NEURON_OPS or op == "add":  # spikes, or the non-zero graded values a relay sends
            result.spikes[node.name] = result.spikes.get(node.name, 0.0) + float((y != 0).sum())
            result.neurons[node.name] = node.size
        if node.name in record:
            result.recorded.setdefault(node.name, []).append(y.clone())
        vals[node.name] = y
        for src in node.inputs:
            if last.get(src) == i:
                del vals[src]
    return vals[graph.output]


def _float_neuron(node, x: torch.Tensor) -> torch.Tensor:
    p = node.params
    v = torch.zeros_like(x[0])
    out = torch.empty_like(x)
    for t in range(x.shape[0]):
        if node.op == "lif":
            h = v + (x[t] - v) / p["tau"] if p["decay_input"] else v - v / p["tau"] + x[t]
        else:
            h = v + x[t]
        s = (h >= p["v_threshold"]).to(x.dtype)
        v = h * (1.0 - s)
        out[t] = s
    return out


def run_graph(graph: HwGraph, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Floating-point reference of ``graph`` on preprocessed inputs; returns the readout logits ``[B, classes]``
    (or the last node's value ``[T, B, ...]`` when the graph has no readout)."""
    seq = _sequence(graph, x).to(dtype)
    vals = {}
    for node in graph:
        op, p = node.op, node.params
        ins = [vals[s] for s in node.inputs]
        if op == "input":
            y = seq
        elif op == "conv2d":
            y = _unfold(
                F.conv2d(_fold(ins[0]), p["weight"].to(dtype), p["bias"].to(dtype), p["stride"], p["padding"]),
                seq.shape[0],
            )
        elif op == "linear":
            y = ins[0] @ p["weight"].to(dtype).T + p["bias"].to(dtype)
        elif op == "scale":
            y = ins[0] * p["factor"]
        elif op == "add":
            y = sum(ins[1:], ins[0])
        elif op == "tokens":
            y = ins[0].flatten(3).transpose(2, 3)
        elif op == "flatten":
            y = ins[0].flatten(2)
        elif op == "sum_tokens":
            y = ins[0].sum(2, keepdim=True)
        elif op == "mean_tokens":
            y = ins[0].mean(2)
        elif op in ("maxpool", "orpool"):
            y = _pool(ins[0], p)
        elif op == "and":
            y = ins[0] * ins[1]
        elif op in ("lif", "if"):
            y = _float_neuron(node, ins[0])
        elif op == "ssa":
            y = _ssa(*ins, p["heads"]).to(dtype)
        elif op == "readout":
            feats = ins[0].mean(2) if p["mean_tokens"] else ins[0]
            y = (feats @ p["weight"].to(dtype).T + p["bias"].to(dtype)).mean(0)
        else:  # pragma: no cover
            raise ValueError(f"no float reference for {op!r}")
        vals[node.name] = y
    return vals[graph.output]


def evaluate_emulated(
    prog: IntProgram,
    model: torch.nn.Module,
    dataset,
    preprocess,
    batch_size: int = 250,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Top-1 of the integer program and of the float model on ``dataset``, and how often their predictions agree."""
    from spikeformer.data import iterate_batches

    k = len(dataset.classes)
    confusion = torch.zeros(k, k, dtype=torch.long)
    agree = correct_float = n = 0
    with torch.inference_mode():
        for x, y in iterate_batches(dataset, batch_size, preprocess=preprocess):
            emu = run_program(prog, x, batch_size=batch_size).logits.argmax(1)
            ref = model(x).argmax(1)
            agree += int((emu == ref).sum())
            correct_float += int((ref == y).sum())
            confusion += torch.bincount(y * k + emu, minlength=k * k).reshape(k, k)
            n += len(y)
            if progress is not None:
                progress(len(y))
    correct = confusion.diag()
    return {
        "top1": float(correct.sum()) / max(n, 1),
        "float_top1": correct_float / max(n, 1),
        "agreement": agree / max(n, 1),
        "num_samples": n,
        "per_class": {
            name: float(correct[i] / confusion[i].sum()) if confusion[i].sum() else float("nan")
            for i, name in enumerate(dataset.classes)
        },
        "confusion": confusion.tolist(),
    }

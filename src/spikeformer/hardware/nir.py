"""NIR exchange (Neuromorphic Intermediate Representation, neuromorphs/NIR) for the spike-driven parts of a model.

Export maps (BatchNorm folded into the weights first):

- ``Conv2d`` -> ``nir.Conv2d``; ``Linear`` -> ``nir.Affine``; ``Flatten`` -> ``nir.Flatten`` (dims without batch);
- ``LIF`` -> ``nir.LIF``; ``IF`` -> ``nir.IF``;
- max-pooling of spikes -> ``nir.SumPool2d`` + ``nir.IF`` with threshold 0.5 (OR of binary spikes, exact).

LIF parameters. NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``; a simulator with step ``dt`` (forward Euler) gives
``v <- v + (dt / tau) (v_leak - v + r I)``. Ours is ``v <- v + (x - v) / tau_steps`` (input decays) or
``v <- v - v / tau_steps + x``. So ``tau = tau_steps * dt``, ``v_leak = 0`` and ``r = 1`` (or ``r = tau_steps``
without input decay). ``dt`` is not part of a NIR graph; we export with ``dt = 1e-4`` s (the step snnTorch's and
Norse's importers assume) and record it in ``graph.metadata["dt"]``.
Thresholds: NIR fires on ``v > v_threshold``, we fire on ``v >= v_threshold``. In float32 these agree exactly when the
exported threshold is the next float32 below ours (``nextafter(thr, -inf)``); import applies the inverse.
Reset: hard reset to 0 in both.

NIR has no primitive for a product of two activations, LayerNorm or softmax: Spikformer's ``Q K^T V`` (and the
classifier readout) cannot be exported. ``to_nir`` then raises :class:`UnsupportedLayerError` naming the layer;
``spikeformer compile`` places such layers on the embedded CPU or the host and says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeformer.hardware.graph import PROCESSOR_OPS, UnsupportedLayerError, lower_model
from spikeformer.nn.layers import SeqToANN
from spikeformer.nn.neuron import IF, LIF

__all__ = ["to_nir", "from_nir", "DEFAULT_DT"]

DEFAULT_DT = 1e-4


def _below(thr: float) -> float:
    return float(np.nextafter(np.float32(thr), np.float32(-np.inf)))


def _above(thr: float) -> float:
    return float(np.nextafter(np.float32(thr), np.float32(np.inf)))


def _full(shape, value) -> np.ndarray:
    return np.full(tuple(shape), value, dtype=np.float32)


def to_nir(model: nn.Module, sample: torch.Tensor, dt: float = DEFAULT_DT):
    """Export the spiking network ``model`` to a ``nir.NIRGraph``.

    Args:
        model: an ``nn.Sequential`` spiking network over ``[T, B, ...]`` (Conv2d, Linear, ConvBN2d, LinearBN,
            LIF/PLIF/IF, MaxPool2d on spikes, Flatten), or a registered model (raises for its processor parts).
        sample: one input ``[T, B, ...]`` or ``[B, ...]``; gives the per-step input shape.
        dt: the simulation step NIR time constants are expressed in (seconds).

    Raises:
        UnsupportedLayerError: a layer without a NIR primitive, named.
    """
    import nir

    if isinstance(model, nn.Sequential) and sample.ndim < 3:
        raise ValueError(f"sample must be [T, B, ...] for a Sequential network, got shape {list(sample.shape)}")
    graph = lower_model(model, input_shape=tuple(sample.shape[2:]) if isinstance(model, nn.Sequential) else None)
    processor = [n for n in graph if n.op in PROCESSOR_OPS]
    if processor:
        raise UnsupportedLayerError(
            f"layer {processor[0].name} ({processor[0].op}) has no NIR primitive (NIR has none for products of two "
            "activations, max-pooling of real values or the readout); all such layers: "
            f"{', '.join(n.name for n in processor)}. `spikeformer compile` places them on the embedded CPU or host"
        )
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    alias: dict[str, str] = {}  # our node -> the NIR node that emits its value
    for n in graph:
        p = n.params
        src = [alias[i] for i in n.inputs]
        if n.op == "input":
            nodes["input"] = nir.Input(input_type={"input": np.array(n.shape)})
        elif n.op == "conv2d":
            in_shape = graph.nodes[n.inputs[0]].shape
            nodes[n.name] = nir.Conv2d(
                input_shape=tuple(in_shape[1:]),
                weight=p["weight"].float().numpy(),
                stride=p["stride"],
                padding=p["padding"],
                dilation=1,
                groups=1,
                bias=p["bias"].float().numpy(),
            )
        elif n.op == "linear":
            if len(n.shape) != 1:
                raise UnsupportedLayerError(f"layer {n.name}: a token-wise Linear over {list(n.shape)} (export flat)")
            nodes[n.name] = nir.Affine(weight=p["weight"].float().numpy(), bias=p["bias"].float().numpy())
        elif n.op == "lif":
            r = 1.0 if p["decay_input"] else p["tau"]
            nodes[n.name] = nir.LIF(
                tau=_full(n.shape, p["tau"] * dt),
                r=_full(n.shape, r),
                v_leak=_full(n.shape, 0.0),
                v_threshold=_full(n.shape, _below(p["v_threshold"])),
                v_reset=_full(n.shape, 0.0),
            )
        elif n.op == "if":
            nodes[n.name] = nir.IF(
                r=_full(n.shape, 1.0), v_threshold=_full(n.shape, _below(p["v_threshold"])), v_reset=_full(n.shape, 0.0)
            )
        elif n.op == "orpool":
            nodes[f"{n.name}.sum"] = nir.SumPool2d(
                kernel_size=np.array(p["kernel"]), stride=np.array(p["stride"]), padding=np.array(p["padding"])
            )
            nodes[n.name] = nir.IF(r=_full(n.shape, 1.0), v_threshold=_full(n.shape, 0.5), v_reset=_full(n.shape, 0.0))
            edges += [(s, f"{n.name}.sum") for s in src]
            edges.append((f"{n.name}.sum", n.name))
            alias[n.name] = n.name
            continue
        elif n.op == "flatten":
            nodes[n.name] = nir.Flatten(input_type={"input": np.array(graph.nodes[n.inputs[0]].shape)}, start_dim=0)
        else:
            raise UnsupportedLayerError(
                f"layer {n.name} ({n.op}) has no NIR primitive (NIR has none for products of two activations, "
                "LayerNorm, softmax or the readout); `spikeformer compile` places it on the embedded CPU or host"
            )
        edges += [(s, n.name) for s in src]
        alias[n.name] = n.name
    nodes["output"] = nir.Output(output_type={"output": np.array(graph.nodes[graph.output].shape)})
    edges.append((alias[graph.output], "output"))
    return nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={"dt": dt, "exporter": "spikeformer", "threshold": "exported as nextafter(thr, -inf) in float32"},
    )


def _uniform(arr, what: str, name: str) -> float:
    a = np.asarray(arr, dtype=np.float64).ravel()
    if a.size and not np.all(a == a[0]):
        raise UnsupportedLayerError(f"node {name}: per-neuron {what} values; accepted: one value per layer")
    return float(a[0]) if a.size else 0.0


def from_nir(graph, dt: float | None = None) -> nn.Sequential:
    """Import a chain-shaped ``nir.NIRGraph`` as an ``nn.Sequential`` over ``[T, B, ...]``.

    ``dt`` defaults to ``graph.metadata["dt"]`` or 1e-4 s. Accepted nodes: Input, Output, Conv2d, Affine, Linear,
    Flatten, SumPool2d, AvgPool2d, LIF, IF, CubaLIF with ``tau_syn <= dt`` (no synaptic memory).
    """
    import nir

    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = float(dt or np.asarray(meta.get("dt", DEFAULT_DT)))
    order = _chain(graph)
    layers: list[nn.Module] = []
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input | nir.Output):
            continue
        if isinstance(node, nir.Conv2d):
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            if isinstance(node.padding, str):
                raise UnsupportedLayerError(f"node {name}: padding {node.padding!r}; accepted: integers")
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), tuple(node.stride), tuple(node.padding),
                             tuple(node.dilation), int(node.groups))  # fmt: skip
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32))
            layers.append(SeqToANN(conv))
        elif isinstance(node, nir.Affine | nir.Linear):
            w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
            lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
            lin.weight.data.copy_(w)
            if isinstance(node, nir.Affine):
                lin.bias.data.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32))
            layers.append(lin)  # Linear acts on the last axis of [T, B, F]
        elif isinstance(node, nir.Flatten):
            layers.append(SeqToANN(nn.Flatten(1 + int(node.start_dim), -1 if node.end_dim == -1 else 1 + node.end_dim)))
        elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            k, s, pd = (
                tuple(int(v) for v in np.asarray(a).ravel()) for a in (node.kernel_size, node.stride, node.padding)
            )
            divisor = 1 if isinstance(node, nir.SumPool2d) else None
            layers.append(SeqToANN(nn.AvgPool2d(k, s, pd, count_include_pad=True, divisor_override=divisor)))
        elif isinstance(node, nir.LIF | nir.CubaLIF):
            tau = _uniform(node.tau if isinstance(node, nir.LIF) else node.tau_mem, "tau", name)
            if isinstance(node, nir.CubaLIF) and _uniform(node.tau_syn, "tau_syn", name) > dt:
                raise UnsupportedLayerError(f"node {name}: CubaLIF with tau_syn > dt (synaptic memory) has no mapping")
            if _uniform(node.v_leak, "v_leak", name) != 0.0 or _uniform(node.v_reset, "v_reset", name) != 0.0:
                raise UnsupportedLayerError(f"node {name}: v_leak and v_reset must be 0 (hard reset to rest)")
            steps, r = tau / dt, _uniform(node.r, "r", name)
            if abs(steps - round(steps, 4)) < 1e-6 * steps:  # float32 storage of tau: 3.9999999 -> 4
                steps = round(steps, 4)
            thr = _above(_uniform(node.v_threshold, "v_threshold", name))
            if math.isclose(r, 1.0):
                layers.append(LIF(tau=steps, decay_input=True, v_threshold=thr))
            elif math.isclose(r, steps, rel_tol=1e-6):
                layers.append(LIF(tau=steps, decay_input=False, v_threshold=thr))
            else:
                raise UnsupportedLayerError(f"node {name}: r={r} with tau/dt={steps}; accepted: r = 1 or r = tau/dt")
        elif isinstance(node, nir.IF):
            if not math.isclose(_uniform(node.r, "r", name), 1.0) or _uniform(node.v_reset, "v_reset", name) != 0.0:
                raise UnsupportedLayerError(f"node {name}: IF with r != 1 or v_reset != 0")
            layers.append(IF(v_threshold=_above(_uniform(node.v_threshold, "v_threshold", name))))
        else:
            raise UnsupportedLayerError(f"node {name}: NIR {type(node).__name__} has no spikeformer module")
    return nn.Sequential(*layers).eval()


def _chain(graph) -> list[str]:
    """Node names from the input to the output of a graph in which every node has one successor."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    starts = [n for n in graph.nodes if type(graph.nodes[n]).__name__ == "Input"]
    if len(starts) != 1:
        raise UnsupportedLayerError(f"from_nir needs exactly one Input node, found {len(starts)}")
    order, cur = [], starts[0]
    while True:
        order.append(cur)
        nxt = succ.get(cur, [])
        if not nxt:
            return order
        if len(nxt) > 1:
            raise UnsupportedLayerError(f"node {cur} branches to {nxt}; from_nir accepts chains only")
        cur = nxt[0]

"""Lowering a model to a flat dataflow graph of hardware operations (the compiler's input).

Every node computes one value per sample and time step; ``shape`` is that value's shape without ``[T, B]``.
BatchNorm is folded into the conv/linear weights first (``spikeformer.nn.fold_batchnorm``). Operations:

- ``input``: the preprocessed image (real-valued, the same at every step: direct encoding).
- affine: ``conv2d`` (weight, bias, stride, padding), ``linear`` (weight ``[out, in]``, bias; over the last axis),
  ``scale`` (a scalar factor).
- structural (no arithmetic): ``tokens`` (``[C, H, W] -> [H*W, C]``), ``flatten``, ``add`` (element-wise sum),
  ``sum_tokens`` (``[N, D] -> [1, D]``), ``mean_tokens`` (``[N, D] -> [D]``).
- neurons (map to neuromorphic cores): ``lif`` (tau, v_threshold, decay_input; hard reset to 0), ``if``,
  ``orpool`` (max-pooling of binary spikes = OR: a sum-pool followed by an IF neuron with threshold 0.5),
  ``and`` (product of two binary spike tensors = AND: a neuron with threshold 1.5 and no memory).
- processor operations (no neuromorphic primitive; the chip's embedded CPU or the host): ``maxpool`` (max-pooling of
  real values), ``ssa`` (Spikformer's ``Q K^T V`` on spikes: a product of two activations), ``readout`` (the
  classifier: mean over tokens, Linear, mean over time).

The lowering is explicit per family (Spikformer, Spike-driven Transformer) and per module type for plain
``nn.Sequential`` spiking networks; any module it does not know is reported by name, never skipped.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spikeformer.nn.fold import fold_batchnorm
from spikeformer.nn.layers import ConvBN2d, LinearBN, SeqToANN
from spikeformer.nn.neuron import IF, LIF, PLIF, BaseNeuron

__all__ = ["HwNode", "HwGraph", "UnsupportedLayerError", "lower_model", "NEURON_OPS", "PROCESSOR_OPS", "AFFINE_OPS"]

AFFINE_OPS = ("conv2d", "linear", "scale")
STRUCTURAL_OPS = ("tokens", "flatten", "add", "sum_tokens", "mean_tokens")
NEURON_OPS = ("lif", "if", "orpool", "and")
PROCESSOR_OPS = ("maxpool", "ssa", "readout")


class UnsupportedLayerError(ValueError):
    """A layer that neither maps to neuromorphic cores nor to a known processor operation."""


@dataclass
class HwNode:
    """One operation. ``inputs`` name earlier nodes; ``module`` is the torch module path it comes from."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    module: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class HwGraph:
    """Nodes in topological order; ``output`` is the readout (or last) node."""

    nodes: dict[str, HwNode]
    output: str
    timesteps: int
    model_name: str = ""

    def consumers(self, name: str) -> list[HwNode]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def __iter__(self):
        return iter(self.nodes.values())


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, HwNode] = {}

    def add(self, name: str, op: str, inputs: list[str], shape, module: str = "", **params) -> str:
        if name in self.nodes:
            raise ValueError(f"duplicate node {name!r}")
        self.nodes[name] = HwNode(name, op, list(inputs), tuple(int(s) for s in shape), params, module or name)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        return self.nodes[name].shape

    # --- layers -----------------------------------------------------------------------------------------------
    def conv(self, name: str, src: str, conv: nn.Conv2d) -> str:
        c, h, w = self.shape(src)
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise UnsupportedLayerError(
                f"layer {name}: Conv2d with groups={conv.groups}, dilation={conv.dilation}, padding={conv.padding!r}, "
                f"padding_mode={conv.padding_mode!r}; accepted: groups 1, dilation 1, integer zero padding"
            )
        if c != conv.in_channels:
            raise UnsupportedLayerError(f"layer {name}: expects {conv.in_channels} channels, gets {c}")
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        bias = (
            conv.bias.detach().double()
            if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64)
        )
        return self.add(
            name,
            "conv2d",
            [src],
            (conv.out_channels, ho, wo),
            weight=conv.weight.detach().double(),
            bias=bias,
            stride=(sh, sw),
            padding=(ph, pw),
        )

    def linear(self, name: str, src: str, lin: nn.Linear) -> str:
        shape = self.shape(src)
        if shape[-1] != lin.in_features:
            raise UnsupportedLayerError(f"layer {name}: expects {lin.in_features} features, gets shape {list(shape)}")
        bias = (
            lin.bias.detach().double() if lin.bias is not None else torch.zeros(lin.out_features, dtype=torch.float64)
        )
        return self.add(
            name, "linear", [src], (*shape[:-1], lin.out_features), weight=lin.weight.detach().double(), bias=bias
        )

    def neuron(self, name: str, src: str, neuron: nn.Module) -> str:
        if not isinstance(neuron, BaseNeuron):
            raise UnsupportedLayerError(f"layer {name}: {type(neuron).__name__} is not a spiking neuron")
        if neuron.v_reset is None or neuron.v_reset != 0.0:
            raise UnsupportedLayerError(
                f"layer {name}: v_reset={neuron.v_reset} (soft or non-zero reset); accepted: hard reset to 0"
            )
        if isinstance(neuron, LIF | PLIF):
            return self.add(
                name,
                "lif",
                [src],
                self.shape(src),
                tau=float(neuron.tau),
                v_threshold=float(neuron.v_threshold),
                decay_input=bool(neuron.decay_input),
            )
        if isinstance(neuron, IF):
            return self.add(name, "if", [src], self.shape(src), v_threshold=float(neuron.v_threshold))
        raise UnsupportedLayerError(f"layer {name}: neuron type {type(neuron).__name__}; accepted: LIF, PLIF, IF")

    def pool(self, name: str, src: str, pool: nn.Module, spikes: bool) -> str:
        if isinstance(pool, SeqToANN):
            pool = pool[0]
        if not isinstance(pool, nn.MaxPool2d) or pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
            raise UnsupportedLayerError(f"layer {name}: {pool!r}; accepted: MaxPool2d (dilation 1, floor mode)")
        k, s, p = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding))
        c, h, w = self.shape(src)
        shape = (c, (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1)
        return self.add(name, "orpool" if spikes else "maxpool", [src], shape, kernel=k, stride=s, padding=p)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _is_spike(b: _Builder, name: str) -> bool:
    """Whether a node's value is binary spikes."""
    return b.nodes[name].op in NEURON_OPS


def _lower_spikformer(model: nn.Module, b: _Builder) -> str:
    from spikeformer.models.spikformer import SpikingMLP, SpikingSelfAttention

    sps = model.patch_embed
    x = b.add("input", "input", [], model.input_shape)
    for i, (stage, neuron, pool) in enumerate(zip(sps.stages, sps.neurons, sps.pools, strict=True)):
        x = b.conv(f"patch_embed.stages.{i}.conv", x, stage.conv)
        if not isinstance(stage.pool, nn.Identity):
            x = b.pool(f"patch_embed.stages.{i}.pool", x, stage.pool, spikes=False)
        x = b.neuron(f"patch_embed.neurons.{i}", x, neuron)
        if not isinstance(pool, nn.Identity):
            x = b.pool(f"patch_embed.pools.{i}", x, pool, spikes=True)
    r = b.conv("patch_embed.rpe.conv", x, sps.rpe.conv)
    r = b.neuron("patch_embed.rpe_neuron", r, sps.rpe_neuron)
    x = b.add("patch_embed.add", "add", [x, r], b.shape(x))
    ch, h, w = b.shape(x)
    x = b.add("patch_embed.tokens", "tokens", [x], (h * w, ch))
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        attn, mlp = block.attn, block.mlp
        if not isinstance(attn, SpikingSelfAttention) or not isinstance(mlp, SpikingMLP):
            raise UnsupportedLayerError(f"layer {p}: unexpected block parts {type(attn).__name__}/{type(mlp).__name__}")
        qkv = []
        for part in ("q", "k", "v"):
            y = b.linear(f"{p}.attn.{part}", x, getattr(attn, part).linear)
            qkv.append(b.neuron(f"{p}.attn.{part}_neuron", y, getattr(attn, f"{part}_neuron")))
        a = b.add(f"{p}.attn.qkv_product", "ssa", qkv, b.shape(x), heads=attn.num_heads)
        a = b.add(f"{p}.attn.scale", "scale", [a], b.shape(a), factor=float(attn.scale))
        a = b.neuron(f"{p}.attn.attn_neuron", a, attn.attn_neuron)
        a = b.linear(f"{p}.attn.proj", a, attn.proj.linear)
        a = b.neuron(f"{p}.attn.proj_neuron", a, attn.proj_neuron)
        x = b.add(f"{p}.attn.residual", "add", [x, a], b.shape(x))
        m = b.linear(f"{p}.mlp.fc1", x, mlp.fc1.linear)
        m = b.neuron(f"{p}.mlp.fc1_neuron", m, mlp.fc1_neuron)
        m = b.linear(f"{p}.mlp.fc2", m, mlp.fc2.linear)
        m = b.neuron(f"{p}.mlp.fc2_neuron", m, mlp.fc2_neuron)
        x = b.add(f"{p}.mlp.residual", "add", [x, m], b.shape(x))
    return _readout(b, x, model.head, mean_tokens=True)


def _lower_spike_driven(model: nn.Module, b: _Builder) -> str:
    sps = model.patch_embed
    x = b.add("input", "input", [], model.input_shape)
    for i, (stage, neuron, pool) in enumerate(zip(sps.stages, sps.neurons, sps.pools, strict=True)):
        x = b.conv(f"patch_embed.stages.{i}.conv", x, stage.conv)
        if not isinstance(stage.pool, nn.Identity):
            x = b.pool(f"patch_embed.stages.{i}.pool", x, stage.pool, spikes=_is_spike(b, x))
        if not isinstance(neuron, nn.Identity):
            x = b.neuron(f"patch_embed.neurons.{i}", x, neuron)
        if not isinstance(pool, nn.Identity):
            x = b.pool(f"patch_embed.pools.{i}", x, pool, spikes=_is_spike(b, x))
    r = b.neuron("patch_embed.rpe_neuron", x, sps.rpe_neuron)
    r = b.conv("patch_embed.rpe.conv", r, sps.rpe.conv)
    x = b.add("patch_embed.add", "add", [x, r], b.shape(x))  # membrane shortcut: real-valued stream
    ch, h, w = b.shape(x)
    x = b.add("patch_embed.tokens", "tokens", [x], (h * w, ch))
    n, d = b.shape(x)
    for i, block in enumerate(model.blocks):
        p, attn, mlp = f"blocks.{i}", block.attn, block.mlp
        s = b.neuron(f"{p}.attn.shortcut_neuron", x, attn.shortcut_neuron)
        q, k, v = (
            b.neuron(f"{p}.attn.{part}_neuron", b.linear(f"{p}.attn.{part}", s, getattr(attn, part).linear),
                     getattr(attn, f"{part}_neuron"))
            for part in ("q", "k", "v")
        )  # fmt: skip
        kv = b.add(f"{p}.attn.k_and_v", "and", [k, v], (n, d))  # K * V on spikes: AND
        kv = b.add(f"{p}.attn.kv_sum", "sum_tokens", [kv], (1, d))  # sum over tokens: synapses of weight 1
        kv = b.neuron(f"{p}.attn.kv_neuron", kv, attn.kv_neuron)
        a = b.add(f"{p}.attn.q_and_kv", "and", [q, kv], (n, d))  # Q * kv broadcast over tokens: AND
        a = b.linear(f"{p}.attn.proj", a, attn.proj.linear)
        x = b.add(f"{p}.attn.residual", "add", [x, a], (n, d))
        m = b.neuron(f"{p}.mlp.fc1_neuron", x, mlp.fc1_neuron)
        m = b.linear(f"{p}.mlp.fc1", m, mlp.fc1.linear)
        m = b.neuron(f"{p}.mlp.fc2_neuron", m, mlp.fc2_neuron)
        m = b.linear(f"{p}.mlp.fc2", m, mlp.fc2.linear)
        x = b.add(f"{p}.mlp.residual", "add", [x, m], (n, d))
    x = b.add("mean_tokens", "mean_tokens", [x], (d,))
    x = b.neuron("head_neuron", x, model.head_neuron)
    return _readout(b, x, model.head, mean_tokens=False)


def _readout(b: _Builder, x: str, head: nn.Linear, mean_tokens: bool) -> str:
    if not isinstance(head, nn.Linear):
        raise UnsupportedLayerError(f"layer head: {type(head).__name__}; accepted: Linear")
    bias = head.bias.detach().double() if head.bias is not None else torch.zeros(head.out_features, dtype=torch.float64)
    return b.add(
        "head",
        "readout",
        [x],
        (head.out_features,),
        weight=head.weight.detach().double(),
        bias=bias,
        mean_tokens=mean_tokens,
    )


def _lower_sequential(model: nn.Sequential, input_shape: tuple[int, ...], b: _Builder) -> str:
    x = b.add("input", "input", [], input_shape)
    for name, mod in _flatten_sequential(model):
        inner = mod[0] if isinstance(mod, SeqToANN) and len(mod) == 1 else mod
        if isinstance(inner, SeqToANN):
            raise UnsupportedLayerError(f"layer {name}: SeqToANN with {len(inner)} modules; wrap one module each")
        if isinstance(inner, ConvBN2d):
            x = b.conv(f"{name}.conv", x, inner.conv)
            if not isinstance(inner.pool, nn.Identity):
                x = b.pool(f"{name}.pool", x, inner.pool, spikes=False)
        elif isinstance(inner, LinearBN):
            x = b.linear(f"{name}.linear", x, inner.linear)
        elif isinstance(inner, nn.Conv2d):
            x = b.conv(name, x, inner)
        elif isinstance(inner, nn.Linear):
            x = b.linear(name, x, inner)
        elif isinstance(inner, BaseNeuron):
            x = b.neuron(name, x, inner)
        elif isinstance(inner, nn.MaxPool2d):
            x = b.pool(name, x, inner, spikes=_is_spike(b, x))
        elif isinstance(inner, nn.Flatten):
            if inner.start_dim not in (1, -len(b.shape(x)) - 1) or inner.end_dim != -1:
                raise UnsupportedLayerError(f"layer {name}: Flatten({inner.start_dim}, {inner.end_dim}); accepted: "
                                            "Flatten(1, -1) over [T*B, ...] (everything but the batch)")  # fmt: skip
            x = b.add(name, "flatten", [x], (math.prod(b.shape(x)),))
        elif isinstance(inner, nn.Identity | nn.Dropout):
            continue
        else:
            raise UnsupportedLayerError(
                f"layer {name}: {type(inner).__name__} has no neuromorphic mapping; accepted in a Sequential: Conv2d, "
                "Linear, ConvBN2d, LinearBN, LIF, PLIF, IF, MaxPool2d, Flatten (wrapped in SeqToANN or not)"
            )
    return x


def _flatten_sequential(model: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_children():
        full = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            out.extend(_flatten_sequential(m, full + "."))
        else:
            out.append((full, m))
    return out


def lower_model(model: nn.Module, input_shape: tuple[int, ...] | None = None, timesteps: int | None = None) -> HwGraph:
    """Lower ``model`` (eval mode; BatchNorm is folded on a copy) to an :class:`HwGraph`.

    Args:
        model: a registered Spikformer / Spike-driven Transformer, or an ``nn.Sequential`` spiking network over
            ``[T, B, ...]`` built from Conv2d, Linear, ConvBN2d, LinearBN, LIF/PLIF/IF, MaxPool2d and Flatten.
        input_shape: per-step input shape ``(C, H, W)`` or ``(F,)``; required for a Sequential.
        timesteps: T; defaults to the model's config.

    Raises:
        UnsupportedLayerError: naming the first layer that has no mapping and what is accepted.
    """
    from spikeformer.models.spike_driven import SpikeDrivenTransformer
    from spikeformer.models.spikformer import Spikformer

    model = fold_batchnorm(copy.deepcopy(model).eval(), inplace=True)
    b = _Builder()
    if isinstance(model, Spikformer):
        out = _lower_spikformer(model, b)
    elif isinstance(model, SpikeDrivenTransformer):
        out = _lower_spike_driven(model, b)
    elif isinstance(model, nn.Sequential):
        if input_shape is None:
            raise ValueError("lower_model(nn.Sequential) needs input_shape, the per-step shape (C, H, W) or (F,)")
        out = _lower_sequential(model, tuple(input_shape), b)
    else:
        raise UnsupportedLayerError(
            f"model {type(model).__name__} has no lowering; accepted: Spikformer, SpikeDrivenTransformer, or an "
            "nn.Sequential of Conv2d/Linear/ConvBN2d/LinearBN/LIF/IF/MaxPool2d/Flatten"
        )
    t = timesteps or getattr(getattr(model, "config", None), "timesteps", None) or 1
    return HwGraph(b.nodes, out, int(t), getattr(model, "model_name", type(model).__name__))

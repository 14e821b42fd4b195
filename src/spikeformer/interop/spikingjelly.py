"""Import Spikformer weights from SpikingJelly 2.0 or the Spikformer authors' code.

Two key layouts are recognised:
- SpikingJelly 2.0 (``spikingjelly.activation_based.model.spikformer``): ``patch_embed.stages.{i}.conv_bn.block.*``,
  ``blocks.{j}.attn.qkv_conv_bn.*`` (Q, K, V stacked), ``mlp.fc1.*``; no linear biases; max-pooling before the
  neuron in the patch splitting.
- The authors' reference code (``patch_embed.proj_conv``, ``block.{j}.attn.q_conv`` ...): separate Q, K, V, biases
  on the projection and MLP, max-pooling after the neuron.
Conv1d (kernel 1) weights ``[out, in, 1]`` become Linear weights ``[out, in]``. Only tensors are read: pass a module,
a state dict, or a ``{"model": state_dict}`` dict that the caller loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from spikeformer.models.spikformer import Spikformer

__all__ = ["from_spikingjelly", "spikingjelly_state_dict_to_ours"]

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_DEFAULT_HEADS = {256: 8, 384: 12, 512: 8, 768: 12}


def _unwrap(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and whatever geometry a module can tell us."""
    hints: dict[str, Any] = {}
    if isinstance(obj, nn.Module):
        hints["num_heads"] = getattr(obj, "num_heads", None)
        hints["timesteps"] = getattr(obj, "T", None)
        pe = getattr(obj, "patch_embed", None)
        if pe is not None and hasattr(pe, "image_size"):
            hints["img_size"] = tuple(pe.image_size)
            hints["patch_size"] = getattr(pe, "patch_size", None)
        sd = obj.state_dict()
    elif isinstance(obj, Mapping):
        sd = obj
        for key in ("model", "state_dict", "model_state_dict"):
            if key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
                break
    else:
        raise ValueError(f"expected a SpikingJelly Spikformer module or a state dict, got {type(obj).__name__}")
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError("the state dict holds no tensors")
    return sd, {k: v for k, v in hints.items() if v is not None}


def _bn(out: dict, ours: str, sd: Mapping, theirs: str, rows: slice | None = None) -> None:
    for name in _BN:
        key = f"{theirs}.{name}"
        if key in sd:
            t = sd[key]
            out[f"{ours}.{name}"] = t if rows is None or t.ndim == 0 else t[rows]


def _linear(out: dict, ours: str, sd: Mapping, theirs: str, rows: slice | None = None) -> None:
    w = sd[f"{theirs}.weight"]
    w = w.squeeze(-1) if w.ndim == 3 else w
    out[f"{ours}.weight"] = w if rows is None else w[rows]
    if f"{theirs}.bias" in sd:
        b = sd[f"{theirs}.bias"]
        out[f"{ours}.bias"] = b if rows is None else b[rows]


def _layout(sd: Mapping[str, torch.Tensor]) -> str:
    if "patch_embed.stages.0.conv_bn.block.0.weight" in sd:
        return "spikingjelly"
    if "patch_embed.proj_conv.weight" in sd:
        return "reference"
    sample = ", ".join(list(sd)[:5])
    raise ValueError(
        "unrecognised Spikformer state dict: expected SpikingJelly 2.0 keys "
        "(patch_embed.stages.0.conv_bn.block.0.weight ...) or the reference code's "
        f"(patch_embed.proj_conv.weight ...); got keys such as {sample}"
    )


def spikingjelly_state_dict_to_ours(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map a SpikingJelly 2.0 / reference Spikformer state dict to ours; also returns the geometry it implies."""
    layout = _layout(sd)
    out: dict[str, torch.Tensor] = {}
    if layout == "spikingjelly":
        depth = len({m.group(1) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
        for i in range(4):
            _linear(out, f"patch_embed.stages.{i}.conv", sd, f"patch_embed.stages.{i}.conv_bn.block.0")
            _bn(out, f"patch_embed.stages.{i}.bn", sd, f"patch_embed.stages.{i}.conv_bn.block.1")
        _linear(out, "patch_embed.rpe.conv", sd, "patch_embed.positional_encoding.conv_bn.block.0")
        _bn(out, "patch_embed.rpe.bn", sd, "patch_embed.positional_encoding.conv_bn.block.1")
        dim = sd["head.weight"].shape[1]
        for j in range(depth):
            a, m = f"blocks.{j}.attn", f"blocks.{j}.mlp"
            for n, name in enumerate("qkv"):
                rows = slice(n * dim, (n + 1) * dim)
                _linear(out, f"{a}.{name}.linear", sd, f"{a}.qkv_conv_bn.0", rows)
                _bn(out, f"{a}.{name}.bn", sd, f"{a}.qkv_conv_bn.1", rows)
            for ours, theirs in (("proj", "proj_conv_bn"),):
                _linear(out, f"{a}.{ours}.linear", sd, f"{a}.{theirs}.0")
                _bn(out, f"{a}.{ours}.bn", sd, f"{a}.{theirs}.1")
            for fc in ("fc1", "fc2"):
                _linear(out, f"{m}.{fc}.linear", sd, f"{m}.{fc}.0")
                _bn(out, f"{m}.{fc}.bn", sd, f"{m}.{fc}.1")
        pool_position = "before_neuron"
        proj_bias = "blocks.0.attn.proj_conv_bn.0.bias" in sd
    else:
        depth = len({m.group(1) for k in sd if (m := re.match(r"block\.(\d+)\.", k))})
        for i, suffix in enumerate(("", "1", "2", "3")):
            _linear(out, f"patch_embed.stages.{i}.conv", sd, f"patch_embed.proj_conv{suffix}")
            _bn(out, f"patch_embed.stages.{i}.bn", sd, f"patch_embed.proj_bn{suffix}")
        _linear(out, "patch_embed.rpe.conv", sd, "patch_embed.rpe_conv")
        _bn(out, "patch_embed.rpe.bn", sd, "patch_embed.rpe_bn")
        for j in range(depth):
            a, m, src = f"blocks.{j}.attn", f"blocks.{j}.mlp", f"block.{j}"
            for name in ("q", "k", "v", "proj"):
                _linear(out, f"{a}.{name}.linear", sd, f"{src}.attn.{name}_conv")
                _bn(out, f"{a}.{name}.bn", sd, f"{src}.attn.{name}_bn")
            for fc in ("fc1", "fc2"):
                _linear(out, f"{m}.{fc}.linear", sd, f"{src}.mlp.{fc}_conv")
                _bn(out, f"{m}.{fc}.bn", sd, f"{src}.mlp.{fc}_bn")
        pool_position = "after_neuron"
        proj_bias = "block.0.attn.proj_conv.bias" in sd
    out["head.weight"] = sd["head.weight"]
    if "head.bias" in sd:
        out["head.bias"] = sd["head.bias"]
    dim = out["head.weight"].shape[1]
    hidden = out["blocks.0.mlp.fc1.linear.weight"].shape[0] if depth else 4 * dim
    geometry = dict(
        in_chans=out["patch_embed.stages.0.conv.weight"].shape[1],
        embed_dim=dim,
        depth=depth,
        num_classes=out["head.weight"].shape[0],
        mlp_ratio=hidden / dim,
        pool_position=pool_position,
        proj_bias=proj_bias,
    )
    return out, geometry


def from_spikingjelly(
    obj: nn.Module | Mapping[str, Any],
    img_size: int | tuple[int, int] | None = None,
    patch_size: int | None = None,
    num_heads: int | None = None,
    timesteps: int | None = None,
) -> Spikformer:
    """Build our ``Spikformer`` with the weights of a SpikingJelly 2.0 / reference Spikformer.

    Args:
        obj: the SpikingJelly module, or a state dict (optionally under ``"model"``/``"state_dict"``).
        img_size: input size; read from a module, else 32 (CIFAR checkpoints).
        patch_size: 4 (CIFAR: pooling in the last two stages) or 16 (ImageNet: every stage); read from a module,
            else 4 for 32x32 inputs and 16 otherwise.
        num_heads: attention heads (not stored in a state dict): read from a module, else 12 for D=384 and 768,
            8 for D=256 and 512.
        timesteps: T; read from a module, else 4.

    Returns:
        A ``Spikformer`` in eval mode whose logits equal the source's (mean over time of its per-step logits).
    """
    sd, hints = _unwrap(obj)
    ours, geometry = spikingjelly_state_dict_to_ours(sd)
    img = img_size or hints.get("img_size") or 32
    img = (img, img) if isinstance(img, int) else tuple(img)
    patch = patch_size or hints.get("patch_size") or (4 if img == (32, 32) else 16)
    if patch not in (4, 16):
        raise ValueError(f"patch_size must be 4 (CIFAR geometry) or 16 (ImageNet geometry), got {patch}")
    dim = geometry["embed_dim"]
    heads = num_heads or hints.get("num_heads") or _DEFAULT_HEADS.get(dim)
    if heads is None:
        raise ValueError(f"cannot infer num_heads for embed_dim {dim}; pass num_heads=")
    model = Spikformer(
        img_size=img,
        num_heads=heads,
        timesteps=timesteps or hints.get("timesteps") or 4,
        pool_stages=(False, False, True, True) if patch == 4 else (True, True, True, True),
        **geometry,
    )
    missing, unexpected = model.load_state_dict(ours, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit the inferred geometry: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.model_name = "spikformer-custom"
    return model.eval()

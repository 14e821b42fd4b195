"""Shared configuration and input handling of the spiking vision transformers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikeformer.nn.base import StatefulModule
from spikeformer.nn.neuron import NEURONS, BaseNeuron, make_neuron
from spikeformer.nn.surrogate import SURROGATE_MODULES, make_surrogate

__all__ = ["SpikingTransformerConfig", "SpikingVisionModel", "ResidualBlock"]

POOL_POSITIONS = ("after_neuron", "before_neuron")


def image_size(img_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``img_size`` as ``(height, width)``; a clear error for anything else."""
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"img_size must be a positive int or (height, width), got {img_size!r}")
    return size


def transformer_checks(c: Any) -> list[tuple[bool, str]]:
    """(condition, message) pairs every transformer config shares: timesteps, channels, classes, depth, widths."""
    return [
        (isinstance(c.timesteps, int) and c.timesteps >= 1, f"timesteps must be an int >= 1, got {c.timesteps!r}"),
        (c.in_chans >= 1, f"in_chans must be >= 1, got {c.in_chans}"),
        (c.num_classes >= 1, f"num_classes must be >= 1, got {c.num_classes}"),
        (c.depth >= 0, f"depth must be >= 0, got {c.depth}"),
        (c.embed_dim >= 8 and c.embed_dim % 8 == 0, f"embed_dim must be a multiple of 8, got {c.embed_dim}"),
        (
            c.num_heads >= 1 and c.embed_dim % c.num_heads == 0,
            f"embed_dim ({c.embed_dim}) must be divisible by num_heads ({c.num_heads})",
        ),
        (c.mlp_ratio > 0, f"mlp_ratio must be > 0, got {c.mlp_ratio}"),
    ]


@dataclass
class SpikingTransformerConfig:
    """Hyper-parameters of a spiking vision transformer (saved in checkpoint manifests).

    Args:
        img_size: input height and width (an int means square).
        in_chans: input channels.
        num_classes: classifier outputs.
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads (D must divide evenly).
        mlp_ratio: hidden width of the MLP as a multiple of D.
        proj_bias: bias on the attention output projection and both MLP linears, as in the papers' code (redundant
            before BatchNorm, kept for parameter-count parity; SpikingJelly 2.0 omits it).
        timesteps: T, the number of time steps an image is repeated for (direct encoding).
        pool_stages: which of the 4 patch-splitting conv stages end with MaxPool 3x3/2 (CIFAR: last two; ImageNet: all).
        pool_position: ``after_neuron`` (max-pool of spikes, the Spikformer paper) or ``before_neuron``
            (max-pool of the BatchNorm output, SpikingJelly 2.0's Spikformer).
        neuron: ``lif``, ``plif`` or ``if``.
        tau: membrane time constant (initial value for PLIF).
        v_threshold: firing threshold of every neuron but the attention one.
        attn_v_threshold: threshold of the neuron after the attention product (0.5 in both papers).
        attn_scale: scale of Q K^T V in Spikformer's SSA (0.125).
        surrogate, surrogate_alpha: surrogate gradient and its sharpness.
        backend: multi-step neuron backend.
    """

    img_size: int | tuple[int, int] = 224
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 384
    depth: int = 8
    num_heads: int = 12
    mlp_ratio: float = 4.0
    proj_bias: bool = True
    timesteps: int = 4
    pool_stages: tuple[bool, ...] = (True, True, True, True)
    pool_position: str = "after_neuron"
    neuron: str = "lif"
    tau: float = 2.0
    v_threshold: float = 1.0
    attn_v_threshold: float = 0.5
    attn_scale: float = 0.125
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    backend: str = "torch"

    def __post_init__(self) -> None:
        self.img_size = image_size(self.img_size)
        self.pool_stages = tuple(bool(p) for p in self.pool_stages)
        checks = [
            *transformer_checks(self),
            (len(self.pool_stages) == 4, f"pool_stages needs 4 flags (one per conv stage), got {self.pool_stages}"),
            (
                self.pool_position in POOL_POSITIONS,
                f"pool_position must be one of {POOL_POSITIONS}, got {self.pool_position!r}",
            ),
            (self.neuron in NEURONS, f"neuron must be one of {sorted(NEURONS)}, got {self.neuron!r}"),
            (
                self.surrogate in SURROGATE_MODULES,
                f"surrogate must be one of {sorted(SURROGATE_MODULES)}, got {self.surrogate!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def num_tokens(self) -> int:
        h, w = self.img_size
        for pooled in self.pool_stages:
            if pooled:
                h, w = (h + 1) // 2, (w + 1) // 2
        return h * w

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        d["pool_stages"] = list(self.pool_stages)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpikingTransformerConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; accepted: {sorted(cls.__dataclass_fields__)}")
        d = dict(d)
        if "img_size" in d and isinstance(d["img_size"], list):
            d["img_size"] = tuple(d["img_size"])
        return cls(**d)


class SpikingVisionModel(nn.Module):
    """Base of the families: input validation, direct encoding, state reset, time-averaged logits.

    Subclasses implement ``forward_features(x_seq [T, B, C, H, W]) -> [T, B, D]`` and set ``self.head``.
    """

    config_class = SpikingTransformerConfig

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.config = self.config_class(**kwargs)
        self.model_name = type(self).__name__.lower()

    def make_neuron(self, v_threshold: float | None = None) -> BaseNeuron:
        c = self.config
        return make_neuron(
            c.neuron,
            tau=c.tau,
            v_threshold=c.v_threshold if v_threshold is None else v_threshold,
            v_reset=0.0,
            detach_reset=True,
            surrogate=make_surrogate(c.surrogate, c.surrogate_alpha),
            backend=c.backend,
        )

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the model accepts."""
        return (self.config.in_chans, *self.config.img_size)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, C, H, W]`` (repeated T times: direct encoding) or ``[T, B, C, H, W]``; return the latter."""
        c, h, w = self.input_shape
        accepted = f"images [B, {c}, {h}, {w}] or an encoded sequence [T, B, {c}, {h}, {w}]"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor of {accepted}, got {type(x).__name__}")
        if x.ndim not in (4, 5):
            raise ValueError(f"expected {accepted}; got a tensor of rank {x.ndim} with shape {list(x.shape)}")
        if x.shape[-3] != c:
            raise ValueError(f"expected {c} input channel(s) ({accepted}); got {x.shape[-3]} in shape {list(x.shape)}")
        if tuple(x.shape[-2:]) != (h, w):
            raise ValueError(f"expected {h}x{w} images ({accepted}); got {x.shape[-2]}x{x.shape[-1]}")
        if x.ndim == 5 and x.shape[0] < 1:
            raise ValueError(f"an encoded sequence needs T >= 1 time steps; got shape {list(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        if x.ndim == 4:
            x = x.unsqueeze(0).expand(self.config.timesteps, *x.shape)
        return x

    def reset(self) -> None:
        """Reset every neuron's state."""
        for m in self.modules():
            if isinstance(m, StatefulModule):
                m.reset()

    def forward_features(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W] -> [T, B, D]``: patch embedding, the blocks, mean over tokens."""
        x = self.patch_embed(x_seq)
        for block in self.blocks:
            x = block(x)
        # [T, B, N, D] -> [T, B, D] (an int8 residual stream, spikeformer.runtime.int8: averaged in float32)
        return x.mean(2) if x.is_floating_point() else x.mean(2, dtype=torch.float32)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``[T, B, D] -> [T, B, classes]``."""
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` or sequences ``[T, B, C, H, W]`` -> logits ``[B, classes]`` (mean over time)."""
        x_seq = self.to_sequence(x)
        self.reset()
        return self.forward_head(self.forward_features(x_seq)).mean(0)


class ResidualBlock(nn.Module):
    """``x + attn(x)`` then ``x + mlp(x)`` on ``[T, B, N, D]`` (both families)."""

    def __init__(self, attn: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)

"""ReLU vision transformers built to convert to spikes, and a softmax/LayerNorm baseline of the same size.

A transformer converts to an equivalent spiking network only where each nonlinearity has a spiking counterpart. The
convertible block (``block="relu"``) therefore makes these choices (their cost in ANN accuracy is measured in
``docs/conversion.md``):

- Activations: QCFS, the quantization-clip-floor-shift activation of Bu et al. (ICLR 2022),
  ``y = lambda / L * clip(floor(x L / lambda + 1/2), 0, L)`` with a trained threshold ``lambda`` per layer and ``L``
  levels. An integrate-and-fire neuron with threshold ``lambda``, reset by subtraction and initial membrane
  ``lambda / 2`` emits on average exactly this function of its mean input (their Theorem 2), which is what removes
  most of the conversion error at low T.
- Normalisation: BatchNorm after each linear layer (an affine map at inference, folded into the weights). LayerNorm
  divides by per-token statistics: a nonlinear function with no spiking equivalent.
- Layout: an activation precedes every weight layer (the membrane-shortcut layout of the Spike-driven Transformer,
  Yao et al. NeurIPS 2023), so in the spiking twin every linear and conv (but the first) reads binary spikes and the
  residual stream carries real-valued sums: ``x + W_o a_o(...)``, ``x + W_2 a_h(W_1 a(x))``.
- Attention without softmax: ``S = a_s(Q K^T / sqrt(d))`` with ``Q, K, V = a(BN(W a(x)))`` (non-negative quantized
  activations), output ``S V / N``: ReLU attention normalised by the token count (Wortsman et al. 2023, "Replacing
  softmax with ReLU in Vision Transformers"), with QCFS in place of the ReLU.
- The two products of activations (``Q K^T`` and ``S V``) are computed with ``expectation_matmul``, which is the plain
  product for one time step (the ANN) and the Expectation Compensation of Huang et al. 2024 in the spiking twin.

Two spiking twins (``neuron``):

- ``"if"`` (rate coding): ``QuantIF`` neurons (threshold ``lambda``, binary spikes), the image repeated every step,
  outputs averaged over T; the twin approaches the ANN as T grows (the rate of an IF neuron is QCFS with ``L = T``).
- ``"st-bif"`` (accumulation coding, SpikeZIP-TF, You et al., ICML 2024): ``STBIF`` neurons with threshold
  ``lambda / L`` that emit +1 or -1 spikes and keep their spike count in ``[0, L]``; the image is given once (step 0),
  every bias and the position embedding are added once, the products use ``cumulative_matmul`` and the output is the
  *sum* over steps. Once the inputs of a neuron stop changing, its spike count is ``floor(X L / lambda + 1/2)``
  clipped to ``[0, L]`` for the accumulated input ``X``: exactly the ANN's QCFS level, so after enough steps the
  twin's logits equal the ANN's (up to float rounding at level boundaries).

``spiking=True`` builds the spiking twin of the same configuration: every QCFS becomes a ``QuantIF`` neuron, every
BatchNorm is gone (folded by ``spikeformer.convert``), and the input is repeated ``timesteps`` times (direct
encoding). Its weights come from ``spikeformer.convert.SpikeformerConverter``; a saved twin is rebuilt from its
manifest like any other model. The activation and the neurons are modules of ``spikeformer.nn`` (``quant.QCFS``,
``neuron.QuantIF``, ``neuron.STBIF``); the accepted ``neuron`` kinds come from ``spikeformer.nn.NEURON_REGISTRY``.

``block="softmax"`` is the standard pre-LayerNorm ViT block (LayerNorm, softmax attention, GELU MLP) of the same
width and depth, used only to measure what the convertible choices cost; it cannot be converted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikeformer._deprecation import moved_names
from spikeformer.functional.attention import merge_heads, split_heads
from spikeformer.models._base import ResidualBlock, SpikingVisionModel, image_size, transformer_checks
from spikeformer.models._registry import register_model
from spikeformer.nn import neuron as neurons
from spikeformer.nn import quant
from spikeformer.nn.layers import LinearBN
from spikeformer.nn.surrogate import SURROGATE_MODULES, make_surrogate

__all__ = [
    "NEURON_KINDS",
    "cumulative_matmul",
    "ReLUViT",
    "ReLUViTConfig",
    "BLOCKS",
    "expectation_matmul",
]

BLOCKS = ("relu", "softmax")
# The neurons of the spiking twin, from the one registry of neuron kinds: ("if", "st-bif").
NEURON_KINDS = neurons.CONVERTED_NEURONS

# Names that moved to ``spikeformer.nn`` (the activation and the neurons of converted networks), still importable
# from here for one release, with a DeprecationWarning.
_MOVED = {"QCFS": "spikeformer.nn.quant", "QuantIF": "spikeformer.nn.neuron", "STBIF": "spikeformer.nn.neuron"}


__getattr__ = moved_names(__name__, _MOVED)


def expectation_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of two time-first activations whose running average is the product of their running averages.

    The Expectation Compensation Module of Huang et al. 2024 ("Towards High-performance Spiking Transformers from ANN
    to SNN Conversion"): with ``A_bar_t``, ``B_bar_t`` the means of the first ``t`` steps,

        out_t = t A_bar_t B_bar_t - (t - 1) A_bar_{t-1} B_bar_{t-1},

    so ``sum_{i<=t} out_i = t A_bar_t B_bar_t``: the layer after the product integrates exactly the product of the
    mean inputs seen so far. With ``S^A_t, S^B_t`` the cumulative sums, ``t A_bar_t B_bar_t = S^A_t S^B_t / t``.
    For a single step (the ANN) it is the plain product ``a @ b``.

    Args:
        a: ``[T, ..., N, K]``.
        b: ``[T, ..., K, M]``.

    Returns:
        ``[T, ..., N, M]``.
    """
    # No branch on the shape (torch.fx can trace it): for one step t = 1 and the result is exactly ``a @ b``.
    t = torch.ones_like(a[..., :1, :1]).cumsum(0)  # [T, ..., 1, 1]: 1, 2, ..., T
    m = (_prefix_sum(a) @ _prefix_sum(b)) / t  # [T, ..., N, M]: t * A_bar_t @ B_bar_t
    if isinstance(m, torch.fx.Proxy) or (torch.is_grad_enabled() and m.requires_grad):
        return torch.cat([m[:1], m[1:] - m[:-1]])
    m[1:] -= m[:-1].clone()  # inference: the same difference without a concatenated copy
    return m


def cumulative_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of two time-first activations in accumulation coding: the sum of the output over the first ``t`` steps
    is the product of the sums of the inputs, ``out_t = S^A_t S^B_t - S^A_{t-1} S^B_{t-1}`` (``S`` the cumulative
    sums; SpikeZIP-TF's spiking matrix product). ``out_t = A_t S^B_t + S^A_{t-1} B_t``: every (signed) spike of ``A_t``
    adds a row of ``S^B_t``, every spike of ``B_t`` a column of ``S^A_{t-1}``. One step: the plain product.

    Args:
        a: ``[T, ..., N, K]``.
        b: ``[T, ..., K, M]``.

    Returns:
        ``[T, ..., N, M]``.
    """
    m = _prefix_sum(a) @ _prefix_sum(b)
    if torch.is_grad_enabled() and m.requires_grad:
        return torch.cat([m[:1], m[1:] - m[:-1]])
    m[1:] -= m[:-1].clone()
    return m


def _prefix_sum(x: torch.Tensor) -> torch.Tensor:
    """``x.cumsum(0)``; at inference a loop of in-place additions over T (faster than ``cumsum`` over the
    leading axis on the CPU, same float32 additions in the same order)."""
    if isinstance(x, torch.fx.Proxy) or (torch.is_grad_enabled() and x.requires_grad):
        return x.cumsum(0)
    out = torch.empty_like(x)
    out[0] = x[0]
    for i in range(1, x.shape[0]):
        torch.add(out[i - 1], x[i], out=out[i])
    return out


@dataclass
class ReLUViTConfig:
    """Hyper-parameters of a convertible ReLU ViT (saved in checkpoint manifests).

    Args:
        img_size: input height and width (an int means square); divisible by ``patch_size``.
        in_chans: input channels.
        num_classes: classifier outputs.
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads (D must divide evenly).
        mlp_ratio: hidden width of the MLP as a multiple of D.
        patch_size: side of the square patches (the patch projection is a conv with this kernel and stride).
        stem_channels: channels of a 3x3 conv stem before the patch projection (``None``: D/4; 0: no stem).
        block: ``relu`` (convertible: BatchNorm, QCFS, ReLU attention) or ``softmax`` (LayerNorm, softmax, GELU).
        levels: QCFS quantization steps L (Bu et al. use 4-16; the spiking twin needs T of the order of L).
        init_threshold: initial QCFS threshold lambda.
        spiking: build the spiking twin (``QuantIF`` neurons, no BatchNorm, ``timesteps`` steps).
        neuron: the twin's neurons and coding: ``if`` (rate coding, ``QuantIF``) or ``st-bif`` (accumulation coding,
            signed ``STBIF`` neurons; see the module docstring). Ignored by the ANN.
        timesteps: T of the spiking twin (1 for the ANN).
        surrogate, surrogate_alpha: surrogate gradient of the twin's neurons (hybrid fine-tuning).
        backend: multi-step neuron backend of the twin.
    """

    img_size: int | tuple[int, int] = 224
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    stem_channels: int | None = None
    block: str = "relu"
    levels: int = 8
    init_threshold: float = 4.0
    spiking: bool = False
    timesteps: int = 1
    surrogate: str = "sigmoid"
    surrogate_alpha: float = 4.0
    backend: str = "torch"
    neuron: str = "if"

    def __post_init__(self) -> None:
        size = self.img_size = image_size(self.img_size)
        if self.stem_channels is None:
            self.stem_channels = max(8, self.embed_dim // 4)
        checks = [
            *transformer_checks(self),
            (
                self.patch_size >= 1 and all(s % self.patch_size == 0 for s in size),
                f"img_size {list(size)} must be divisible by patch_size ({self.patch_size})",
            ),
            (self.stem_channels >= 0, f"stem_channels must be >= 0, got {self.stem_channels}"),
            (self.block in BLOCKS, f"block must be one of {BLOCKS}, got {self.block!r}"),
            (self.levels >= 1, f"levels must be >= 1, got {self.levels}"),
            (self.neuron in NEURON_KINDS, f"neuron must be one of {NEURON_KINDS}, got {self.neuron!r}"),
            (self.init_threshold > 0, f"init_threshold must be > 0, got {self.init_threshold}"),
            (
                self.spiking or self.timesteps == 1,
                f"an ANN (spiking=False) runs once: timesteps must be 1, got {self.timesteps}; set spiking=True for "
                "the spiking twin",
            ),
            (
                not (self.spiking and self.block != "relu"),
                f"block={self.block!r} has no spiking twin (LayerNorm, softmax and GELU do not convert); "
                "use block='relu'",
            ),
            (
                self.surrogate in SURROGATE_MODULES,
                f"surrogate must be one of {sorted(SURROGATE_MODULES)}, got {self.surrogate!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def cumulative(self) -> bool:
        """Accumulation coding (the ``st-bif`` twin): input once, biases once, outputs summed over the steps."""
        return bool(self.spiking and self.neuron == "st-bif")

    @property
    def num_tokens(self) -> int:
        h, w = self.img_size
        return (h // self.patch_size) * (w // self.patch_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReLUViTConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; accepted: {sorted(cls.__dataclass_fields__)}")
        d = dict(d)
        if isinstance(d.get("img_size"), list):
            d["img_size"] = tuple(d["img_size"])
        return cls(**d)


def _bias_once(y: torch.Tensor, bias: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """Remove ``bias`` from steps 1.. of ``y`` ``[T, ...]`` (accumulation coding adds a bias once, at step 0)."""
    if bias is None or y.shape[0] == 1:
        return y
    b = bias.reshape(shape)
    if torch.is_grad_enabled() and y.requires_grad:
        return torch.cat([y[:1], y[1:] - b])
    y[1:] -= b
    return y


class ConvNorm(nn.Module):
    """``Conv2d -> BatchNorm2d`` on ``[T, B, C, H, W]`` (the twin: a conv with bias, BatchNorm folded in; with
    ``once``, the accumulation-coded twin, the bias is added at step 0 only)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, padding: int, folded: bool = False, once: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=folded)
        self.bn: nn.Module = nn.Identity() if folded else nn.BatchNorm2d(cout)
        self.once = bool(once)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x.flatten(0, 1)))  # [T*B, C, H, W] -> [T*B, C', H', W']
        y = y.unflatten(0, (x.shape[0], -1))  # -> [T, B, C', H', W']
        return _bias_once(y, self.conv.bias, (-1, 1, 1)) if self.once else y


class _LinearOnce(LinearBN):
    """A folded ``LinearBN`` of the accumulation-coded twin: the bias is added at step 0 only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _bias_once(self.linear(x), self.linear.bias, (-1,))


def _linear_norm(cin: int, cout: int, folded: bool, once: bool = False) -> LinearBN:
    m = (_LinearOnce if once else LinearBN)(cin, cout, bias=folded)
    if folded:
        m.bn = nn.Identity()
    return m


class PatchEmbed(nn.Module):
    """``[T, B, C, H, W] -> [T, B, N, D]``: optional 3x3 conv stem, patch projection (conv k=s=patch), position
    embedding added."""

    def __init__(self, model: ReLUViT) -> None:
        super().__init__()
        c = model.config
        folded, once = c.spiking, c.cumulative
        self.once = once
        cin = c.in_chans
        if c.stem_channels:
            self.stem = ConvNorm(c.in_chans, c.stem_channels, 3, 1, 1, folded, once)
            self.stem_act = model.make_act()
            cin = c.stem_channels
        self.proj = ConvNorm(cin, c.embed_dim, c.patch_size, c.patch_size, 0, folded, once)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_tokens, c.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _read_image(self, conv: ConvNorm, x: torch.Tensor) -> torch.Tensor:
        """The image-reading conv; in accumulation coding an image given once (steps 1.. zero) is read once."""
        if self.once and x.shape[0] > 1 and not bool(x[1:].any()):
            y = conv(x[:1])
            return torch.cat([y, y.new_zeros((x.shape[0] - 1, *y.shape[1:]))])
        return conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "stem"):
            x = self.stem_act(self._read_image(self.stem, x))
            x = self.proj(x)  # [T, B, D, H/p, W/p]
        else:
            x = self._read_image(self.proj, x)
        x = x.flatten(3).transpose(2, 3)  # -> [T, B, N, D]
        if self.once and x.shape[0] > 1:  # the position embedding is a bias: added once
            return torch.cat([x[:1] + self.pos_embed, x[1:]])
        return x + self.pos_embed


class ReLUAttention(nn.Module):
    """``W_o a_o(a_s(Q K^T / sqrt(d)) V / N)`` with ``Q, K, V = a(BN(W a_in(x)))`` on ``[T, B, N, D]``.

    ``qk_scale`` and ``av_scale`` are buffers: ``1/sqrt(d)`` and ``1/N`` in the ANN; in the spiking twin they also
    carry the spike values (thresholds) of the two operands, folded in by the converter.
    """

    def __init__(self, model: ReLUViT) -> None:
        super().__init__()
        c = model.config
        d, folded, once = c.embed_dim, c.spiking, c.cumulative
        self.num_heads = c.num_heads
        self.cumulative = once
        self.act_in = model.make_act()
        self.q, self.k, self.v = (_linear_norm(d, d, folded, once) for _ in range(3))
        self.act_q, self.act_k, self.act_v = model.make_act(), model.make_act(), model.make_act()
        self.act_s = model.make_act()
        self.act_o = model.make_act()
        self.proj = _linear_norm(d, d, folded, once)
        self.register_buffer("qk_scale", torch.tensor((d // c.num_heads) ** -0.5))
        self.register_buffer("av_scale", torch.tensor(1.0 / c.num_tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act_in(x)
        q = split_heads(self.act_q(self.q(a)), self.num_heads)  # [T, B, H, N, d]
        k = split_heads(self.act_k(self.k(a)), self.num_heads)
        v = split_heads(self.act_v(self.v(a)), self.num_heads)
        product = cumulative_matmul if self.cumulative else expectation_matmul
        s = self.act_s(product(q, k.transpose(-2, -1)) * self.qk_scale)  # [T, B, H, N, N]
        o = merge_heads(product(s, v) * self.av_scale)  # [T, B, H, N, d] -> [T, B, N, D]
        return self.proj(self.act_o(o))


class ReLUMLP(nn.Module):
    """``BN(W_2 a_h(BN(W_1 a_in(x))))`` on ``[T, B, N, D]``."""

    def __init__(self, model: ReLUViT) -> None:
        super().__init__()
        c = model.config
        hidden = int(c.embed_dim * c.mlp_ratio)
        self.act_in = model.make_act()
        self.fc1 = _linear_norm(c.embed_dim, hidden, c.spiking, c.cumulative)
        self.act_h = model.make_act()
        self.fc2 = _linear_norm(hidden, c.embed_dim, c.spiking, c.cumulative)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_h(self.fc1(self.act_in(x))))


class SoftmaxAttention(nn.Module):
    """Baseline: ``W_o softmax(Q K^T / sqrt(d)) V`` with ``Q, K, V = W LayerNorm(x)`` (pre-norm ViT)."""

    def __init__(self, model: ReLUViT) -> None:
        super().__init__()
        c = model.config
        d = c.embed_dim
        self.num_heads = c.num_heads
        self.scale = (d // c.num_heads) ** -0.5
        self.norm = nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.norm(x)
        q, k, v = (split_heads(f(a), self.num_heads) for f in (self.q, self.k, self.v))
        s = self.softmax((q @ k.transpose(-2, -1)) * self.scale)
        return self.proj(merge_heads(s @ v))


class GELUMLP(nn.Module):
    """Baseline: ``W_2 GELU(W_1 LayerNorm(x))``."""

    def __init__(self, model: ReLUViT) -> None:
        super().__init__()
        c = model.config
        hidden = int(c.embed_dim * c.mlp_ratio)
        self.norm = nn.LayerNorm(c.embed_dim)
        self.fc1 = nn.Linear(c.embed_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class ReLUViT(SpikingVisionModel):
    """Convertible ReLU ViT (or its spiking twin, or the softmax baseline); see the module docstring.

    Keyword arguments: ``ReLUViTConfig`` fields. Input ``[B, C, H, W]`` (or ``[T, B, C, H, W]``), output logits
    ``[B, classes]``: the ANN runs once (a sequence is run step by step and its logits averaged); the twin runs
    ``timesteps`` steps and averages its logits over time.
    """

    config_class = ReLUViTConfig  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c = self.config
        relu = c.block == "relu"
        self.patch_embed = PatchEmbed(self)
        attn, mlp = (ReLUAttention, ReLUMLP) if relu else (SoftmaxAttention, GELUMLP)
        self.blocks = nn.ModuleList(ResidualBlock(attn(self), mlp(self)) for _ in range(c.depth))
        self.head_act = self.make_act() if relu else nn.LayerNorm(c.embed_dim)
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def make_act(self) -> nn.Module:
        """The activation of this configuration: QCFS (ANN), ``QuantIF`` (spiking twin) or GELU (baseline)."""
        c = self.config
        if c.block != "relu":
            return nn.GELU()
        if c.spiking and c.neuron == "st-bif":
            return neurons.STBIF(c.init_threshold, c.levels)
        if c.spiking:
            return neurons.QuantIF(
                c.init_threshold, surrogate=make_surrogate(c.surrogate, c.surrogate_alpha), backend=c.backend
            )
        return quant.QCFS(c.levels, c.init_threshold)

    @property
    def spiking(self) -> bool:
        return bool(self.config.spiking)

    def spike_sources(self) -> dict[str, str]:
        """Which activation feeds each weight layer (module paths): the converter folds the activation's spike value
        (its threshold) into that layer's weights. Layers fed by the image are absent."""
        plan: dict[str, str] = {}
        if self.config.stem_channels:
            plan["patch_embed.proj"] = "patch_embed.stem_act"
        for i in range(len(self.blocks)):
            p = f"blocks.{i}"
            for name in ("q", "k", "v"):
                plan[f"{p}.attn.{name}"] = f"{p}.attn.act_in"
            plan[f"{p}.attn.proj"] = f"{p}.attn.act_o"
            plan[f"{p}.mlp.fc1"] = f"{p}.mlp.act_in"
            plan[f"{p}.mlp.fc2"] = f"{p}.mlp.act_h"
        plan["head"] = "head_act"
        return plan

    def product_operands(self) -> dict[str, tuple[str, str]]:
        """The scale buffer of each activation product and the two activations it multiplies."""
        out: dict[str, tuple[str, str]] = {}
        for i in range(len(self.blocks)):
            p = f"blocks.{i}.attn"
            out[f"{p}.qk_scale"] = (f"{p}.act_q", f"{p}.act_k")
            out[f"{p}.av_scale"] = (f"{p}.act_s", f"{p}.act_v")
        return out

    def forward_features(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``[T, B, C, H, W] -> [T, B, N, D]``: the blocks' output tokens after the head activation."""
        x = self.patch_embed(x_seq)
        for block in self.blocks:
            x = block(x)
        return self.head_act(x)

    def to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """As the base class; the accumulation-coded twin (``neuron="st-bif"``) gives images ``[B, C, H, W]`` once:
        step 0 is the image, steps 1.. are zero."""
        seq = super().to_sequence(x)
        if self.config.cumulative and x.ndim == 4 and seq.shape[0] > 1:
            out = torch.zeros(seq.shape, dtype=seq.dtype, device=seq.device)
            out[0] = seq[0]
            return out
        return seq

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """``[T, B, N, D] -> [T, B, classes]``: the linear head on every token, then the mean over tokens."""
        out = self.head(feats)
        if self.config.cumulative:
            out = _bias_once(out, self.head.bias, (-1,))
        return out.mean(2)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every time step ``[T, B, classes]`` of the spiking twin (state reset first). The model run for
        ``t`` steps returns the mean (``neuron="if"``) or the sum (``"st-bif"``) of the first ``t`` of them: every
        layer is causal, nothing depends on T."""
        self.reset()
        return self.forward_head(self.forward_features(self.to_sequence(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = self.to_sequence(x)
        self.reset()
        if self.config.cumulative:
            return self.forward_head(self.forward_features(x_seq)).sum(0)
        if self.spiking or x_seq.shape[0] == 1:
            return self.forward_head(self.forward_features(x_seq)).mean(0)
        t = x_seq.shape[0]  # an ANN given a sequence: every step is an independent image, logits averaged
        logits = self.forward_head(self.forward_features(x_seq.flatten(0, 1).unsqueeze(0)))[0]
        return logits.reshape(t, -1, logits.shape[-1]).mean(0)


# Registry. ImageNet geometry: ViT-Tiny / ViT-Small widths and depths (Touvron et al., DeiT), patch 16, no stem
# (the patch projection reads the image, as in DeiT).
_IMAGENET = dict(img_size=224, in_chans=3, num_classes=1000, patch_size=16, stem_channels=0)
register_model("vit-tiny-relu", ReLUViT, **_IMAGENET, spiking=False, embed_dim=192, depth=12, num_heads=3)
register_model("vit-small-relu", ReLUViT, **_IMAGENET, spiking=False, embed_dim=384, depth=12, num_heads=6)
# Fashion-MNIST size: 28x28x1, 3x3 stem (24 channels), patch 4 (7x7 = 49 tokens), D = 96, 2 blocks, 4 heads.
_FMNIST = dict(img_size=28, in_chans=1, num_classes=10, patch_size=4, embed_dim=96, depth=2, num_heads=4, spiking=False)
register_model("vit-relu-fmnist", ReLUViT, **_FMNIST)
# The same size with LayerNorm, softmax attention and GELU: the baseline that measures what conversion costs.
register_model("vit-softmax-fmnist", ReLUViT, **_FMNIST, block="softmax")

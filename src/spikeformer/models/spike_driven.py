"""Spike-driven Transformer (Yao et al., "Spike-driven Transformer", NeurIPS 2023).

Differences from Spikformer:
- Membrane shortcuts: residuals carry real-valued membrane inputs; every conv/linear is preceded by a LIF, so each
  weight layer reads binary spikes (``x + f(LIF(x))``).
- SDSA, spike-driven self-attention: ``Q * LIF_0.5(sum_tokens(K * V))``: ``K * V`` and ``Q * (...)`` are masks of
  binary tensors and the token sum is an addition; no product of two real tensors, no softmax, no scale.
- SPS: the last conv stage feeds BN output (membrane) forward; position embedding ``x + BN(Conv(LIF(x)))``.
- Head: mean over tokens, LIF, Linear, mean over time.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeformer.functional.attention import merge_heads, spike_driven_kv
from spikeformer.models._base import ResidualBlock, SpikingVisionModel
from spikeformer.models._registry import register_model
from spikeformer.models.spikformer import _init_weights
from spikeformer.nn.fused import bn_neuron
from spikeformer.nn.layers import ConvBN2d, LinearBN, SeqToANN

__all__ = ["SpikeDrivenTransformer", "SpikeDrivenPatchSplitting", "SpikeDrivenSelfAttention", "SpikeDrivenMLP"]


class SpikeDrivenPatchSplitting(nn.Module):
    """``[T, B, C, H, W] -> [T, B, N, D]`` membrane tokens."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        dims = [c.embed_dim // 8, c.embed_dim // 4, c.embed_dim // 2, c.embed_dim]
        self.stages = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.pools = nn.ModuleList()
        for i, (cin, cout, pooled) in enumerate(zip([c.in_chans, *dims[:-1]], dims, c.pool_stages, strict=True)):
            last = i == 3
            self.stages.append(ConvBN2d(cin, cout, 3, pool=pooled and last))
            self.neurons.append(nn.Identity() if last else model.make_neuron())
            self.pools.append(SeqToANN(nn.MaxPool2d(3, 2, 1)) if pooled and not last else nn.Identity())
        self.rpe_neuron = model.make_neuron()
        self.rpe = ConvBN2d(c.embed_dim, c.embed_dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, neuron, pool in zip(self.stages, self.neurons, self.pools, strict=True):
            x = pool(neuron(stage(x)))
        x = x + self.rpe(self.rpe_neuron(x))  # membrane shortcut
        return x.flatten(3).transpose(2, 3)  # [T, B, D, H', W'] -> [T, B, N, D]


class SpikeDrivenSelfAttention(nn.Module):
    """SDSA on ``[T, B, N, D]`` membrane input; returns a membrane update (no output neuron)."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        d = c.embed_dim
        self.num_heads = c.num_heads
        self.shortcut_neuron = model.make_neuron()
        self.q, self.k, self.v = LinearBN(d, d), LinearBN(d, d), LinearBN(d, d)
        self.q_neuron, self.k_neuron, self.v_neuron = model.make_neuron(), model.make_neuron(), model.make_neuron()
        self.kv_neuron = model.make_neuron(v_threshold=c.attn_v_threshold)
        self.proj = LinearBN(d, d, bias=c.proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut_neuron(x)
        q = bn_neuron(self.q, self.q_neuron, s, self.num_heads)  # [T, B, H, N, D/H]
        k = bn_neuron(self.k, self.k_neuron, s, self.num_heads)
        v = bn_neuron(self.v, self.v_neuron, s, self.num_heads)
        kv = self.kv_neuron(spike_driven_kv(k, v))  # [T, B, H, 1, D/H] spikes
        return self.proj(merge_heads(q * kv))


class SpikeDrivenMLP(nn.Module):
    """``BN(Linear(LIF(BN(Linear(LIF(x))))))`` on ``[T, B, N, D]`` membrane input."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        hidden = int(c.embed_dim * c.mlp_ratio)
        self.fc1_neuron, self.fc1 = model.make_neuron(), LinearBN(c.embed_dim, hidden, bias=c.proj_bias)
        self.fc2_neuron, self.fc2 = model.make_neuron(), LinearBN(hidden, c.embed_dim, bias=c.proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc2_neuron(self.fc1(self.fc1_neuron(x))))


class SpikeDrivenTransformer(SpikingVisionModel):
    """Spike-driven Transformer; keyword arguments: ``SpikingTransformerConfig`` fields."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        self.patch_embed = SpikeDrivenPatchSplitting(self)
        self.blocks = nn.ModuleList(
            ResidualBlock(SpikeDrivenSelfAttention(self), SpikeDrivenMLP(self)) for _ in range(c.depth)
        )
        self.head_neuron = self.make_neuron()
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        _init_weights(self)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_neuron(feats))


_IMAGENET = dict(img_size=224, in_chans=3, num_classes=1000, pool_stages=(True, True, True, True))
register_model("sdt-8-384", SpikeDrivenTransformer, **_IMAGENET, embed_dim=384, depth=8, num_heads=8)
register_model("sdt-8-512", SpikeDrivenTransformer, **_IMAGENET, embed_dim=512, depth=8, num_heads=8)
register_model("sdt-8-768", SpikeDrivenTransformer, **_IMAGENET, embed_dim=768, depth=8, num_heads=8)

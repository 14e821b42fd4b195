"""Spikformer (Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023).

Architecture, as in the paper and its public model files:
- SPS, spiking patch splitting: 4 x (Conv3x3 -> BN -> LIF) with D/8, D/4, D/2, D channels, MaxPool 3x3/2 after
  the stages in ``pool_stages``; relative position embedding ``x + LIF(BN(Conv3x3(x)))``.
- SSA: ``Q, K, V = LIF(BN(Linear(x)))``; ``LIF_0.5(Q K^T V * 0.125)`` (no softmax); then ``LIF(BN(Linear))``.
- MLP: ``LIF(BN(Linear(D -> 4D)))``, ``LIF(BN(Linear(4D -> D)))``; residuals ``x + SSA(x)``, ``x + MLP(x)``.
- Head: mean over tokens, Linear, mean over time. No LayerNorm, no dropout.
Neurons: LIF, tau 2, threshold 1, hard reset to 0 (detached), sigmoid surrogate alpha 4.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeformer.functional.attention import spiking_self_attention
from spikeformer.models._base import ResidualBlock, SpikingVisionModel
from spikeformer.models._registry import register_model
from spikeformer.nn.fused import bn_neuron
from spikeformer.nn.layers import ConvBN2d, LinearBN, SeqToANN

__all__ = ["Spikformer", "SpikingPatchSplitting", "SpikingSelfAttention", "SpikingMLP"]


class SpikingPatchSplitting(nn.Module):
    """SPS: ``[T, B, C, H, W] -> [T, B, N, D]`` spike tokens (values 0, 1, 2 after the position-embedding sum)."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        dims = [c.embed_dim // 8, c.embed_dim // 4, c.embed_dim // 2, c.embed_dim]
        before = c.pool_position == "before_neuron"
        self.stages = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.pools = nn.ModuleList()
        for cin, cout, pooled in zip([c.in_chans, *dims[:-1]], dims, c.pool_stages, strict=True):
            self.stages.append(ConvBN2d(cin, cout, 3, pool=pooled and before))
            self.neurons.append(model.make_neuron())
            self.pools.append(SeqToANN(nn.MaxPool2d(3, 2, 1)) if pooled and not before else nn.Identity())
        self.rpe = ConvBN2d(c.embed_dim, c.embed_dim, 3)
        self.rpe_neuron = model.make_neuron()

    def int8_consumed_neurons(self) -> list[nn.Module]:
        """The stage neurons whose spikes only the next stage's convolution reads (no max-pool after them); the last
        stage's neuron feeds the residual stream (``Spikformer.int8_consumed_neurons``)."""
        return [n for n, pool in zip(self.neurons[:-1], self.pools[:-1], strict=True) if isinstance(pool, nn.Identity)]

    def conv_neuron_pairs(self) -> list[tuple[ConvBN2d, nn.Module]]:
        """Each conv stage with the neuron that reads its output (through max-pooling at most):
        ``spikeformer.nn.fold.move_conv_bias_into_neurons``."""
        return [*zip(self.stages, self.neurons, strict=True), (self.rpe, self.rpe_neuron)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, neuron, pool in zip(self.stages, self.neurons, self.pools, strict=True):
            x = pool(bn_neuron(stage, neuron, x))  # [T, B, C, H, W] -> [T, B, C', H', W']
        x = x + bn_neuron(self.rpe, self.rpe_neuron, x)
        return x.flatten(3).transpose(2, 3)  # [T, B, D, H', W'] -> [T, B, N, D]


class SpikingSelfAttention(nn.Module):
    """SSA on ``[T, B, N, D]`` spikes."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        d = c.embed_dim
        self.num_heads = c.num_heads
        self.scale = c.attn_scale
        self.q, self.k, self.v = LinearBN(d, d), LinearBN(d, d), LinearBN(d, d)
        self.q_neuron, self.k_neuron, self.v_neuron = model.make_neuron(), model.make_neuron(), model.make_neuron()
        self.attn_neuron = model.make_neuron(v_threshold=c.attn_v_threshold)
        self.proj = LinearBN(d, d, bias=c.proj_bias)
        self.proj_neuron = model.make_neuron()

    def int8_consumed_neurons(self) -> list[nn.Module]:
        """Neurons whose spikes only a linear layer reads (``spikeformer.runtime.int8.int8_spiking_neurons``)."""
        return [self.attn_neuron]

    def linear_neuron_pairs(self) -> list[tuple[LinearBN, nn.Module]]:
        """Layers read only by the neuron after them (``spikeformer.runtime.int8.fuse_dequantize_into_neurons``)."""
        return [(self.proj, self.proj_neuron)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The neurons are elementwise, so they run on the head-split views: neuron(split(y)) == split(neuron(y)). The
        # fused kernels gather such a view (or, in training, write the split layout) and write contiguous spikes,
        # which the batched products read without the copy a split (or merge) of a contiguous tensor would need.
        q = bn_neuron(self.q, self.q_neuron, x, self.num_heads)  # [T, B, H, N, D/H]
        k = bn_neuron(self.k, self.k_neuron, x, self.num_heads)
        v = bn_neuron(self.v, self.v_neuron, x, self.num_heads)
        y = self.attn_neuron(spiking_self_attention(q, k, v, self.scale).transpose(2, 3))  # [T, B, N, H, D/H]
        return bn_neuron(self.proj, self.proj_neuron, y.reshape(*y.shape[:3], -1))  # [T, B, N, D]


class SpikingMLP(nn.Module):
    """``LIF(BN(Linear(D -> hidden)))`` then ``LIF(BN(Linear(hidden -> D)))`` on ``[T, B, N, D]``."""

    def __init__(self, model: SpikingVisionModel) -> None:
        super().__init__()
        c = model.config
        hidden = int(c.embed_dim * c.mlp_ratio)
        self.fc1, self.fc1_neuron = LinearBN(c.embed_dim, hidden, bias=c.proj_bias), model.make_neuron()
        self.fc2, self.fc2_neuron = LinearBN(hidden, c.embed_dim, bias=c.proj_bias), model.make_neuron()

    def int8_consumed_neurons(self) -> list[nn.Module]:
        """Neurons whose spikes only a linear layer reads (``spikeformer.runtime.int8.int8_spiking_neurons``)."""
        return [self.fc1_neuron]

    def linear_neuron_pairs(self) -> list[tuple[LinearBN, nn.Module]]:
        """Layers read only by the neuron after them (``spikeformer.runtime.int8.fuse_dequantize_into_neurons``)."""
        return [(self.fc1, self.fc1_neuron), (self.fc2, self.fc2_neuron)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bn_neuron(self.fc2, self.fc2_neuron, bn_neuron(self.fc1, self.fc1_neuron, x))


class Spikformer(SpikingVisionModel):
    """Spikformer; see the module docstring. Keyword arguments: ``SpikingTransformerConfig`` fields."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        c = self.config
        self.patch_embed = SpikingPatchSplitting(self)
        self.blocks = nn.ModuleList(ResidualBlock(SpikingSelfAttention(self), SpikingMLP(self)) for _ in range(c.depth))
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        _init_weights(self)

    def int8_consumed_neurons(self) -> list[nn.Module]:
        """The neurons whose spikes make up the residual stream (the last patch-splitting stage, the position
        embedding, each block's proj and fc2), when that stream can be held in int8: the stream is a sum of at most
        ``2 + 2 * depth`` spikes, read only by the residual sums, int8 products and the final mean over tokens. Not
        when a max-pool reads the last stage's spikes (the paper's pooling after the neuron)."""
        sps = self.patch_embed
        if 2 + 2 * self.config.depth > 127 or not isinstance(sps.pools[-1], nn.Identity):
            return []
        blocks = [(b.attn.proj_neuron, b.mlp.fc2_neuron) for b in self.blocks]
        return [sps.neurons[-1], sps.rpe_neuron, *(n for pair in blocks for n in pair)]


def _init_weights(model: nn.Module) -> None:
    """Truncated normal (std 0.02) for linear layers, as the reference implementations do; BN at identity."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Registry: CIFAR geometry (32x32, 8x8 = 64 tokens) and ImageNet geometry (224x224, 14x14 = 196 tokens).
_CIFAR = dict(img_size=32, in_chans=3, num_classes=10, pool_stages=(False, False, True, True))
_IMAGENET = dict(img_size=224, in_chans=3, num_classes=1000, pool_stages=(True, True, True, True))

register_model("spikformer-4-256", Spikformer, **_CIFAR, embed_dim=256, depth=4, num_heads=16)
register_model("spikformer-2-384", Spikformer, **_CIFAR, embed_dim=384, depth=2, num_heads=12)
register_model("spikformer-4-384", Spikformer, **_CIFAR, embed_dim=384, depth=4, num_heads=12)
register_model("spikformer-8-384", Spikformer, **_IMAGENET, embed_dim=384, depth=8, num_heads=12)
register_model("spikformer-8-512", Spikformer, **_IMAGENET, embed_dim=512, depth=8, num_heads=8)
register_model("spikformer-8-768", Spikformer, **_IMAGENET, embed_dim=768, depth=8, num_heads=12)
# The model the operations runbook names: ViT-Base width and depth with Spikformer blocks.
register_model("spikeformer-vit-base", Spikformer, **_IMAGENET, embed_dim=768, depth=12, num_heads=12)
# The bundled Fashion-MNIST model: 28x28x1 input, pooling in stages 2 and 3 (28 -> 14 -> 7: 49 tokens), D = 128.
register_model(
    "spikformer-2-128-fmnist",
    Spikformer,
    img_size=28,
    in_chans=1,
    num_classes=10,
    pool_stages=(False, True, True, False),
    embed_dim=128,
    depth=2,
    num_heads=8,
)

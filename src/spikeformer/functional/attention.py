"""Spiking attention products (pure functions on time-first, head-split tensors).

Shapes: ``q, k, v: [T, B, H, N, d]`` (time, batch, heads, tokens, head width).
"""

from __future__ import annotations

import torch

__all__ = ["spiking_self_attention", "spike_driven_kv", "split_heads", "merge_heads"]


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[T, B, N, D] -> [T, B, H, N, D/H]`` (a view)."""
    t, b, n, d = x.shape
    return x.reshape(t, b, n, heads, d // heads).transpose(2, 3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, H, N, D/H] -> [T, B, N, D]``."""
    t, b, h, n, dh = x.shape
    return x.transpose(2, 3).reshape(t, b, n, h * dh)


def spiking_self_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 0.125) -> torch.Tensor:
    """Spikformer's SSA product ``Q K^T V * scale`` without softmax (Zhou et al., ICLR 2023).

    Computed as ``Q (K^T V)`` (the paper's ImageNet order): ``N d^2`` multiply-adds per head instead of ``N^2 d``.
    With binary ``q, k, v`` every intermediate is an integer count, exact in float32 below 2^24, so both orders give
    bit-identical results. ``[T, B, H, N, d] -> [T, B, H, N, d]``.
    """
    kv = k.transpose(-2, -1) @ v  # [T, B, H, d, d]
    return (q @ kv) * scale


def spike_driven_kv(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Spike-driven self-attention's key-value term ``sum_tokens(K * V)`` (Yao et al., NeurIPS 2023).

    For binary ``k, v`` the Hadamard product is a mask (AND) and the sum over tokens an addition: no multiplication
    of two real tensors. ``[T, B, H, N, d] -> [T, B, H, 1, d]``.
    """
    return (k * v).sum(dim=-2, keepdim=True)

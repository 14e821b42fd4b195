"""Stateless layers for time-first tensors: they fold time into the batch (``[T, B, ...] -> [T*B, ...]``).

The conv/linear + BatchNorm pairs are kept as plain ``torch.nn`` modules inside, so BatchNorm folding, NIR export
and the energy profiler can find them by type.
"""

from __future__ import annotations

import torch
from torch import nn

from spikeformer.functional.linear import Linear
from spikeformer.kernels import triton_bn_lif

__all__ = ["SeqToANN", "ConvBN2d", "LinearBN", "fold_time", "unfold_time", "batch_statistics", "count_batch"]


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def unfold_time(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.reshape(timesteps, x.shape[0] // timesteps, *x.shape[1:])


def batch_statistics(bn: nn.Module) -> bool:
    """``bn`` is a plain ``BatchNorm1d``/``BatchNorm2d`` that normalises with the statistics of its batch (training
    mode, or no running statistics) with a fixed momentum: what the fused kernels of
    ``spikeformer.kernels.triton_bn_lif`` compute."""
    return (
        isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d)
        and (bn.training or not bn.track_running_stats)
        and bn.momentum is not None
    )


def count_batch(bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """What ``nn.BatchNorm`` does per training batch besides normalising: count it (for a kernel that replaces it)."""
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)


def _batch_norm(bn: nn.Module, y: torch.Tensor, images: bool) -> torch.Tensor:
    """``bn(y)`` (``y``: ``[N, C, H, W]`` with ``images``, else ``[M, C]``), through the Triton BatchNorm kernels
    on CUDA while it normalises with batch statistics (PyTorch's channels-last statistics kernel is several times
    slower than the memory allows)."""
    if not (torch.is_grad_enabled() and batch_statistics(bn) and triton_bn_lif.available(y)):
        return bn(y)
    count_batch(bn)
    return triton_bn_lif.batch_norm(
        y, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps, images=images
    )


class SeqToANN(nn.Sequential):
    """Apply stateless modules to every time step at once: ``[T, B, ...] -> [T, B, ...]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return unfold_time(super().forward(fold_time(x)), x.shape[0])


class ConvBN2d(nn.Module):
    """``Conv2d (no bias) -> BatchNorm2d`` on ``[T, B, C, H, W]``, optionally followed by max-pooling 3x3/2."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(_batch_norm(self.bn, self.conv(fold_time(x)), images=True))  # [T*B, C, H, W] -> [T*B, C', H', W']
        return unfold_time(y, x.shape[0])


class LinearBN(nn.Module):
    """``Linear -> BatchNorm1d`` over the last axis of ``[T, B, N, D]`` (per-channel statistics over T, B, N)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.linear = Linear(in_features, out_features, bias=bias)
        self.bn = nn.BatchNorm1d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if isinstance(self.bn, nn.Identity):  # folded into the weights for inference
            return y
        return _batch_norm(self.bn, y.reshape(-1, y.shape[-1]), images=False).reshape(y.shape)

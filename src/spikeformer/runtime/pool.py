"""Max-pooling: identical results to ``nn.MaxPool2d``, faster (CPU inference; CUDA inference and training).

PyTorch's NCHW CPU max-pool is slow for spike maps, and in training it also writes int64 argmax indices (timings:
``docs/runtime.md``). ``FastMaxPool2d`` runs the compiled kernels
(``spikeformer.kernels.cpu``, one plane per task) when they are available: float32 inference without indices,
training (float32 or bf16) with a one-byte winning tap per output and the same gradient as ``nn.MaxPool2d``; else two
separable strided-maximum passes (a k x k max is the max over rows of the max over columns; inference only, as
their gradient splits ties).
On CUDA, channels-last inputs go through the Triton kernels of ``spikeformer.kernels.triton_pool`` (no int64
argmax indices; differentiable, so training on a GPU uses them too). NaN inputs are not supported (they never occur
in spiking networks: inputs are spikes or finite sums).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.kernels import cpu as kernels
from spikeformer.kernels import triton_pool

__all__ = ["FastMaxPool2d", "to_fast_pooling"]


class FastMaxPool2d(nn.Module):
    """``nn.MaxPool2d(kernel_size, stride, padding)`` (square, no dilation, floor mode) for inference."""

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.k, self.s, self.p = kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cpu = x.device.type == "cpu"
        if x.ndim == 4 and triton_pool.available(x) and x.is_contiguous(memory_format=torch.channels_last):
            return triton_pool.max_pool2d_channels_last(x, self.k, self.s, self.p)  # differentiable
        if cpu and x.ndim == 4 and x.dtype in (torch.float32, torch.bfloat16) and (k := kernels.get()) is not None:
            if torch.is_grad_enabled() and x.requires_grad:
                return _CpuMaxPool.apply(x, self.k, self.s, self.p)
            if x.dtype == torch.float32:
                return k.maxpool2d(x, self.k, self.s, self.p)
            return k.maxpool2d_argmax(x, self.k, self.s, self.p)[0]
        if cpu:
            return separable_max_pool(x, self.k, self.s, self.p)
        return F.max_pool2d(x, self.k, self.s, self.p)


class _CpuMaxPool(torch.autograd.Function):
    """The compiled kernels' max-pool for training: the forward pass keeps each window's winning tap (one byte), the
    backward pass sends each output's gradient there; the same gradient as ``nn.MaxPool2d`` (first maximum wins)."""

    @staticmethod
    def forward(ctx, x, k, s, p):  # type: ignore[override]
        y, arg = kernels.get().maxpool2d_argmax(x, k, s, p)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape[2], x.shape[3], x.dtype, k, s, p)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (arg,) = ctx.saved_tensors
        h, w, dtype, k, s, p = ctx.geometry
        grad = grad if grad.dtype in (torch.float32, torch.bfloat16) else grad.float()
        return kernels.get().maxpool2d_backward(grad, arg, h, w, k, s, p).to(dtype), None, None, None


def separable_max_pool(x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    if p:
        x = F.pad(x, (p,) * 4, value=float("-inf"))
    h_out = (x.shape[-2] - k) // s + 1
    w_out = (x.shape[-1] - k) // s + 1
    rows = x[..., 0 : s * (h_out - 1) + 1 : s, :]
    for i in range(1, k):
        rows = torch.maximum(rows, x[..., i : i + s * (h_out - 1) + 1 : s, :])
    out = rows[..., 0 : s * (w_out - 1) + 1 : s]
    for j in range(1, k):
        out = torch.maximum(out, rows[..., j : j + s * (w_out - 1) + 1 : s])
    return out


def _square(v) -> int | None:
    if isinstance(v, int):
        return v
    return v[0] if len(set(v)) == 1 else None


def to_fast_pooling(model: nn.Module) -> nn.Module:
    """Replace (in place) every square, undilated, floor-mode ``nn.MaxPool2d``; returns ``model``."""
    for name, child in list(model.named_children()):
        if type(child) is nn.MaxPool2d and not child.ceil_mode and not child.return_indices:
            k, s = _square(child.kernel_size), _square(child.stride or child.kernel_size)
            p, d = _square(child.padding), _square(child.dilation)
            if None not in (k, s, p) and d == 1:
                setattr(model, name, FastMaxPool2d(k, s, p))
                continue
        to_fast_pooling(child)
    return model

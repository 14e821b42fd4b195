"""Max-pooling of channels-last tensors on CUDA in Triton kernels (no int64 argmax indices).

PyTorch's channels-last max-pool also writes the argmax indices (int64, 4x the bytes of a bf16 output) even when
nobody needs them, which makes it several times slower than one read of its input (figures: ``docs/runtime.md``).
Each program here takes a tile of output pixels x channels, reads the
``k x k`` window of every pixel (neighbouring windows overlap, so most reads hit the cache) and writes the maximum.
Out-of-image taps count as minus infinity, as in ``nn.MaxPool2d``; results equal ``F.max_pool2d`` exactly (a maximum
is a selection, no rounding). For training the forward pass also stores each window's winning tap as one byte, and
the backward pass gathers (no atomics): each input pixel adds the gradients of the windows that picked it.
"""

from __future__ import annotations

import torch

from spikeformer.kernels.triton_lif import available, triton

if triton is not None:
    import triton.language as tl

__all__ = ["available", "max_pool2d_channels_last"]

if triton is not None:

    @triton.jit
    def _tile(P, C, H, W, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """This program's pixels (flat ``(b, row, col)`` over ``P`` pixels of ``H x W`` maps) and channels."""
        pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        return (pix // (W * H)).to(tl.int64), (pix // W) % H, pix % W, cs, pix < P, cs < C

    @triton.jit
    def _max_pool_kernel(
        x_ptr, y_ptr, arg_ptr, P, C, H, W, HO, WO, sxb, sxh, sxw, syb, syh, syw,
        K: tl.constexpr, S: tl.constexpr, PAD: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
        KEEP_ARG: tl.constexpr,
    ):  # fmt: skip
        b, oh, ow, cs, pmask, cmask = _tile(P, C, HO, WO, BLOCK_P, BLOCK_C)  # output pixels x channels
        acc = tl.full([BLOCK_P, BLOCK_C], float("-inf"), tl.float32)
        arg = tl.zeros([BLOCK_P, BLOCK_C], tl.int32)
        for i in tl.static_range(K):
            ih = oh * S - PAD + i
            for j in tl.static_range(K):
                iw = ow * S - PAD + j
                ok = pmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                base = b * sxb + ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw
                v = tl.load(x_ptr + base[:, None] + cs[None, :], mask=ok[:, None] & cmask[None, :], other=float("-inf"))
                v = v.to(tl.float32)
                if KEEP_ARG:  # the first maximum in scan order wins, as in PyTorch (ties are common in spikes)
                    arg = tl.where(v > acc, i * K + j, arg)
                acc = tl.maximum(acc, v)
        out = b * syb + oh.to(tl.int64) * syh + ow.to(tl.int64) * syw
        omask = pmask[:, None] & cmask[None, :]
        tl.store(y_ptr + out[:, None] + cs[None, :], acc.to(y_ptr.dtype.element_ty), mask=omask)
        if KEEP_ARG:
            tl.store(arg_ptr + out[:, None] + cs[None, :], arg.to(tl.int8), mask=omask)

    @triton.jit
    def _max_pool_bwd_kernel(
        g_ptr, arg_ptr, gx_ptr, Q, C, H, W, HO, WO, sgb, sgh, sgw, sxb, sxh, sxw,
        K: tl.constexpr, S: tl.constexpr, PAD: tl.constexpr, NC: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # Gather form (no atomics): each input pixel sums the output gradients of the (at most NC x NC) windows that
        # contain it and picked it as their maximum.
        b, ih, iw, cs, pmask, cmask = _tile(Q, C, H, W, BLOCK_P, BLOCK_C)  # input pixels x channels
        acc = tl.zeros([BLOCK_P, BLOCK_C], tl.float32)
        for di in tl.static_range(NC):
            oh = (ih + PAD) // S - di
            ti = ih - (oh * S - PAD)  # row of this pixel inside that window
            for dj in tl.static_range(NC):
                ow = (iw + PAD) // S - dj
                tj = iw - (ow * S - PAD)
                ok = pmask & (oh >= 0) & (oh < HO) & (ti < K) & (ow >= 0) & (ow < WO) & (tj < K)
                off = b * sgb + oh.to(tl.int64) * sgh + ow.to(tl.int64) * sgw
                m2 = ok[:, None] & cmask[None, :]
                a = tl.load(arg_ptr + off[:, None] + cs[None, :], mask=m2, other=-1).to(tl.int32)
                g = tl.load(g_ptr + off[:, None] + cs[None, :], mask=m2, other=0.0).to(tl.float32)
                acc += tl.where(a == (ti * K + tj)[:, None], g, 0.0)
        out = b * sxb + ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw
        omask = pmask[:, None] & cmask[None, :]
        tl.store(gx_ptr + out[:, None] + cs[None, :], acc.to(gx_ptr.dtype.element_ty), mask=omask)


def _blocks(c: int) -> tuple[int, int]:
    block_c = min(64, triton.next_power_of_2(c))
    return max(1, 2048 // block_c), block_c


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError(f"expected a channels-last [B, C, H, W] tensor; got {list(x.shape)}, strides {x.stride()}")


def _forward(x: torch.Tensor, k: int, s: int, p: int, keep_arg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    _check(x)
    b, c, h, w = x.shape
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y = torch.empty((b, c, ho, wo), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    arg = torch.empty_like(y, dtype=torch.int8) if keep_arg else None  # the winning tap, 0 .. k*k - 1
    n = b * ho * wo
    if n and c:
        block_p, block_c = _blocks(c)
        _max_pool_kernel[(triton.cdiv(n, block_p), triton.cdiv(c, block_c))](
            x, y, y if arg is None else arg, n, c, h, w, ho, wo,
            x.stride(0), x.stride(2), x.stride(3), y.stride(0), y.stride(2), y.stride(3),
            K=k, S=s, PAD=p, BLOCK_P=block_p, BLOCK_C=block_c, KEEP_ARG=keep_arg, num_warps=4,
        )  # fmt: skip
    return y, arg


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, s, p):  # type: ignore[override]
        y, arg = _forward(x, k, s, p, keep_arg=True)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, k, s, p)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (arg,) = ctx.saved_tensors
        shape, k, s, p = ctx.geometry
        b, c, h, w = shape
        g = grad.contiguous(memory_format=torch.channels_last)
        gx = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=torch.channels_last)
        n = b * h * w
        if n and c:
            block_p, block_c = _blocks(c)
            _max_pool_bwd_kernel[(triton.cdiv(n, block_p), triton.cdiv(c, block_c))](
                g, arg, gx, n, c, h, w, arg.shape[2], arg.shape[3],
                g.stride(0), g.stride(2), g.stride(3), gx.stride(0), gx.stride(2), gx.stride(3),
                K=k, S=s, PAD=p, NC=-(-k // s), BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4,
            )  # fmt: skip
        return gx, None, None, None


def max_pool2d_channels_last(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding)`` for a channels-last ``[B, C, H, W]`` tensor (output in the
    same layout, same dtype). Differentiable: when a gradient is needed the forward pass also keeps each window's
    winning tap (one byte per output) and the backward pass gathers the gradient into the input, giving it to the first
    maximum of each window in scan order, as PyTorch does."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool.apply(x, kernel_size, stride, padding)
    return _forward(x, kernel_size, stride, padding, keep_arg=False)[0]

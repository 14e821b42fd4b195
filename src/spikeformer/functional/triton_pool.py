"""Max-pooling of channels-last tensors on CUDA in one Triton kernel (inference: no indices).

PyTorch's channels-last max-pool also writes the argmax indices (int64, 4x the bytes of a bf16 output) even when
nobody needs them; in the Spikformer stem at batch 256 it took 0.63 ms per call on an H200 where reading the input
once takes about 0.1 ms (docs/benchmarks.md). Each program here takes a tile of output pixels x channels, reads the
``k x k`` window of every pixel (neighbouring windows overlap, so most reads hit the cache) and writes the maximum.
Out-of-image taps count as minus infinity, as in ``nn.MaxPool2d``; results equal ``F.max_pool2d`` exactly (a maximum
is a selection, no rounding).
"""

from __future__ import annotations

import torch

from spikeformer.functional.triton_lif import available, triton

if triton is not None:
    import triton.language as tl

__all__ = ["available", "max_pool2d_channels_last"]

if triton is not None:

    @triton.jit
    def _max_pool_kernel(
        x_ptr, y_ptr, P, C, H, W, HO, WO, sxb, sxh, sxw, syb, syh, syw,
        K: tl.constexpr, S: tl.constexpr, PAD: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat output pixel: (b, oh, ow)
        cs = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        pmask = pix < P
        cmask = cs < C
        ow = pix % WO
        oh = (pix // WO) % HO
        b = (pix // (WO * HO)).to(tl.int64)
        acc = tl.full([BLOCK_P, BLOCK_C], float("-inf"), tl.float32)
        for i in tl.static_range(K):
            ih = oh * S - PAD + i
            for j in tl.static_range(K):
                iw = ow * S - PAD + j
                ok = pmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                base = b * sxb + ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw
                v = tl.load(x_ptr + base[:, None] + cs[None, :], mask=ok[:, None] & cmask[None, :], other=float("-inf"))
                acc = tl.maximum(acc, v.to(tl.float32))
        out = b * syb + oh.to(tl.int64) * syh + ow.to(tl.int64) * syw
        omask = pmask[:, None] & cmask[None, :]
        tl.store(y_ptr + out[:, None] + cs[None, :], acc.to(y_ptr.dtype.element_ty), mask=omask)


def max_pool2d_channels_last(x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride, padding)`` for a channels-last ``[B, C, H, W]`` tensor (output in the
    same layout, same dtype)."""
    if x.ndim != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        raise ValueError(f"expected a channels-last [B, C, H, W] tensor; got {list(x.shape)}, strides {x.stride()}")
    b, c, h, w = x.shape
    ho = (h + 2 * padding - kernel_size) // stride + 1
    wo = (w + 2 * padding - kernel_size) // stride + 1
    y = torch.empty((b, c, ho, wo), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    p = b * ho * wo
    if p and c:
        block_c = min(64, triton.next_power_of_2(c))
        block_p = max(1, 2048 // block_c)
        grid = (triton.cdiv(p, block_p), triton.cdiv(c, block_c))
        _max_pool_kernel[grid](
            x, y, p, c, h, w, ho, wo, x.stride(0), x.stride(2), x.stride(3), y.stride(0), y.stride(2), y.stride(3),
            K=kernel_size, S=stride, PAD=padding, BLOCK_P=block_p, BLOCK_C=block_c, num_warps=4,
        )  # fmt: skip
    return y

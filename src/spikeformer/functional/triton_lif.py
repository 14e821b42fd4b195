"""Fused multi-step LIF/IF on CUDA: one Triton kernel for the forward pass, one for the backward pass.

The same recurrence, in the same order of operations, as ``spikeformer.functional.fused`` (its docstring has the
equations) and the compiled CPU kernel. Each program owns ``BLOCK`` neurons and walks the time axis; a membrane never
leaves registers. Per element the forward pass reads ``x`` and writes ``s`` (and ``h`` in float32 when a backward pass
will need it); the backward pass reads ``h`` and ``dL/ds`` and writes ``dL/dx``: 6 accesses, the fewest this
recurrence allows when ``h`` is stored rather than recomputed. The time loop is unrolled ``UNROLL`` steps deep so that
the loads of several steps are in flight at once (one step of a small layer is too little to hide memory latency).

Arithmetic is float32 whatever the input dtype (bfloat16 inputs under autocast give exact bfloat16 spikes); the kernels
are built with floating-point contraction off (``enable_fp_fusion=False``) so ``a v + b x`` rounds like the reference
(a fused multiply-add would move spikes that sit exactly at threshold).

Tests (``tests/functional/test_triton_lif.py``) run these kernels in Triton's interpreter on the CPU against the
step-by-step reference; ``bench/speed_gpu.py`` times them on a GPU.
"""

from __future__ import annotations

import functools
import os

import torch

try:  # Triton ships with CUDA builds of PyTorch; CPU builds may lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

__all__ = ["available", "lif_forward", "lif_backward"]

SURROGATES = {"sigmoid": 0, "atan": 1, "fast_sigmoid": 2}
_HALF_PI = 1.5707963267948966


def available(t: torch.Tensor) -> bool:
    """True when ``t`` can go through the Triton kernels: a CUDA tensor (or any tensor under ``TRITON_INTERPRET=1``)
    of float32, bfloat16 or float16, with Triton installed."""
    if triton is None or t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    return t.is_cuda or _interpreting()


@functools.cache
def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _lif_fwd_kernel(
        x_ptr, v0_ptr, s_ptr, h_ptr, vt_ptr, T, N, a, b, c, theta, v_reset,
        V0_SCALAR: tl.constexpr, SOFT: tl.constexpr, HAS_C: tl.constexpr, KEEP_H: tl.constexpr,
        BLOCK: tl.constexpr, UNROLL: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        step = tl.zeros([BLOCK], tl.int64) + N  # 64-bit offsets: T * N may pass 2**31
        zero = tl.zeros([BLOCK], tl.int32)  # the step-in-range test as a vector (the interpreter needs one)
        if V0_SCALAR:
            v = tl.zeros([BLOCK], tl.float32) + tl.load(v0_ptr).to(tl.float32)
        else:
            v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        idx = offs
        for t0 in range(0, T, UNROLL):
            for u in tl.static_range(UNROLL):
                m = mask & (zero + (t0 + u) < T)
                x = tl.load(x_ptr + idx, mask=m, other=0.0).to(tl.float32)
                h = v * a + x * b
                if HAS_C:
                    h = h + c
                fire = (h - theta) >= 0.0
                if SOFT:
                    v = tl.where(m, tl.where(fire, h - theta, h), v)
                else:
                    v = tl.where(m, tl.where(fire, v_reset, h), v)
                tl.store(s_ptr + idx, fire.to(tl.float32).to(s_ptr.dtype.element_ty), mask=m)
                if KEEP_H:
                    tl.store(h_ptr + idx, h, mask=m)
                idx += step
        tl.store(vt_ptr + offs, v, mask=mask)

    @triton.jit
    def _surrogate_grad(x, alpha, KIND: tl.constexpr):
        if KIND == 0:  # sigmoid
            sg = 1.0 / (1.0 + tl.exp(-alpha * x))
            d = alpha * sg * (1.0 - sg)
        elif KIND == 1:  # atan
            y = 1.5707963267948966 * alpha * x
            d = alpha / 2.0 / (1.0 + y * y)
        else:  # fast sigmoid
            y = 1.0 + alpha * tl.abs(x)
            d = 1.0 / (y * y)
        return d

    @triton.jit
    def _lif_bwd_kernel(
        h_ptr, gs_ptr, gvt_ptr, gx_ptr, gv0_ptr, T, N, a, b, theta, v_reset, alpha,
        SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr, HAS_GVT: tl.constexpr,
        BLOCK: tl.constexpr, UNROLL: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        if HAS_GVT:
            g_v = tl.load(gvt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            g_v = tl.zeros([BLOCK], tl.float32)
        step = tl.zeros([BLOCK], tl.int64) + N
        zero = tl.zeros([BLOCK], tl.int32)
        idx = offs + step * (T - 1)
        for r0 in range(0, T, UNROLL):
            for u in tl.static_range(UNROLL):
                m = mask & (zero + (r0 + u) < T)
                h = tl.load(h_ptr + idx, mask=m, other=0.0)
                gs = tl.load(gs_ptr + idx, mask=m, other=0.0).to(tl.float32)
                d = _surrogate_grad(h - theta, alpha, KIND)
                if SOFT:
                    if DETACH:
                        dv_dh = tl.zeros([BLOCK], tl.float32) + 1.0
                    else:
                        dv_dh = 1.0 - theta * d
                else:
                    keep = 1.0 - ((h - theta) >= 0.0).to(tl.float32)
                    if DETACH:
                        dv_dh = keep
                    else:
                        dv_dh = keep + (v_reset - h) * d
                g_h = gs * d + g_v * dv_dh
                tl.store(gx_ptr + idx, (g_h * b).to(gx_ptr.dtype.element_ty), mask=m)
                g_v = tl.where(m, g_h * a, g_v)
                idx -= step
        tl.store(gv0_ptr + offs, g_v, mask=mask)


_BLOCK, _WARPS = 512, 4


def _unroll(steps: int) -> int:
    return min(8, triton.next_power_of_2(max(steps, 1)))


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _BLOCK),)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``x`` as ``[T, N]`` over its own storage when every time step is one dense block laid out alike (contiguous or
    channels-last), else a contiguous copy; the kernels index ``t * N + i``."""
    if x.is_contiguous() or (
        x.dim() == 5 and x[0].is_contiguous(memory_format=torch.channels_last) and x.stride(0) == x[0].numel()
    ):
        return x
    return x.contiguous()


def _like(layout: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t`` broadcast to ``layout``'s shape and memory layout, in its own dtype (no copy when it already is)."""
    if t.shape == layout.shape and t.stride() == layout.stride():
        return t
    return torch.empty_like(layout, dtype=t.dtype).copy_(t.expand(layout.shape))


def lif_forward(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    a: float,
    b: float,
    c: float,
    theta: float,
    v_reset: float | None,
    keep_h: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(spikes like x_seq, v_T float32 [step shape], h float32 like x_seq or None)``; ``v_reset=None`` is the soft
    reset. ``v0`` has the shape of one step or broadcasts to it from a single value."""
    x = _flat(x_seq)
    steps, n = x.shape[0], x[0].numel()
    scalar = v0.numel() == 1 or all(st == 0 for st in v0.stride())
    v0c = v0.reshape(-1)[:1] if scalar else _like(x[0], v0)
    s = torch.empty_like(x)
    h = torch.empty_like(x, dtype=torch.float32) if keep_h else s  # dummy pointer when not kept
    v_t = torch.empty_like(x[0], dtype=torch.float32)
    if n and steps:
        _lif_fwd_kernel[_grid(n)](
            x, v0c, s, h, v_t, steps, n, a, b, c, theta, 0.0 if v_reset is None else v_reset,
            V0_SCALAR=scalar, SOFT=v_reset is None, HAS_C=c != 0.0, KEEP_H=keep_h,
            BLOCK=_BLOCK, UNROLL=_unroll(steps), num_warps=_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
    else:
        v_t.copy_(v0.expand(x.shape[1:]))
    return s, v_t, (h if keep_h else None)


def lif_backward(
    h_seq: torch.Tensor,
    grad_s: torch.Tensor,
    grad_v: torch.Tensor | None,
    a: float,
    b: float,
    theta: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate: str,
    alpha: float,
    grad_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dx like h_seq in grad_dtype, dL/dv0 float32 [step shape])`` from the charged potentials ``h_seq`` that
    ``lif_forward(keep_h=True)`` returned."""
    steps, n = h_seq.shape[0], h_seq[0].numel()
    gs = _like(h_seq, grad_s)
    gvt = h_seq[0] if grad_v is None else _like(h_seq[0], grad_v)  # h_seq[0]: a dummy pointer when absent
    gx = torch.empty_like(h_seq, dtype=grad_dtype)
    gv0 = torch.empty_like(h_seq[0], dtype=torch.float32)
    if n and steps:
        _lif_bwd_kernel[_grid(n)](
            h_seq, gs, gvt, gx, gv0, steps, n, a, b, theta, 0.0 if v_reset is None else v_reset, alpha,
            SOFT=v_reset is None, DETACH=detach_reset, KIND=SURROGATES[surrogate], HAS_GVT=grad_v is not None,
            BLOCK=_BLOCK, UNROLL=_unroll(steps), num_warps=_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
    else:
        gv0.copy_(grad_v if grad_v is not None else torch.zeros_like(gv0))
    return gx, gv0

"""Fused multi-step LIF/IF on CUDA: one Triton kernel for the forward pass, one for the backward pass.

The same recurrence, in the same order of operations, as ``spikeformer.functional.fused`` (its docstring has the
equations) and the compiled CPU kernel. Each program owns ``BLOCK`` neurons and walks the time axis; a membrane never
leaves registers. Per element the forward pass reads ``x`` and writes ``s`` (and ``h`` in float32 when a backward pass
will need it); the backward pass reads ``h`` and ``dL/ds`` and writes ``dL/dx``: 6 accesses, the fewest this
recurrence allows when ``h`` is stored rather than recomputed. The time loop runs four steps per iteration and loads
the next four steps' inputs before storing this iteration's outputs, so that eight loads per thread are in flight (one
step of a layer is too little work to hide memory latency). The forward kernel can add a per-channel bias to its input
on the fly (a convolution's bias, which cuDNN would otherwise add in a separate pass over the output).

Arithmetic is float32 whatever the input dtype (bfloat16 inputs under autocast give exact bfloat16 spikes); the kernels
are built with floating-point contraction off (``enable_fp_fusion=False``) so ``a v + b x`` rounds like the reference
(a fused multiply-add would move spikes that sit exactly at threshold).

Tests (``tests/kernels/test_triton.py``) run these kernels in Triton's interpreter on the CPU against the
step-by-step reference; ``bench/speed_gpu.py`` times them on a GPU.
"""

from __future__ import annotations

import functools
import math
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
    def _charge_fire_store(
        x, v, m, idx, s_ptr, h_ptr, a, b, c, theta, v_reset,
        SOFT: tl.constexpr, HAS_C: tl.constexpr, KEEP_H: tl.constexpr,
    ):  # fmt: skip
        """One time step of ``BLOCK`` neurons: charge, fire, reset (only where ``m``); store s (and h)."""
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
        return v

    @triton.jit
    def _load_x(x_ptr, bias_ptr, idx, m, ch, HAS_BIAS: tl.constexpr):
        x = tl.load(x_ptr + idx, mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            x = x + tl.load(bias_ptr + ch, mask=m, other=0.0).to(tl.float32)
        return x

    @triton.jit
    def _lif_fwd_kernel(
        x_ptr, bias_ptr, v0_ptr, s_ptr, h_ptr, vt_ptr, T, N, C, CH_STRIDE, a, b, c, theta, v_reset,
        XT, S1, S2, S3, X0, X1, X2, X3,
        V0_SCALAR: tl.constexpr, SOFT: tl.constexpr, HAS_C: tl.constexpr, KEEP_H: tl.constexpr,
        HAS_BIAS: tl.constexpr, STRIDED: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # Four steps per iteration; the next four steps' inputs are loaded before this iteration's stores, so that
        # eight loads per thread are in flight (the compiler may not move a load above a store it cannot prove
        # independent, so the order is written out).
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        step = tl.zeros([BLOCK], tl.int64) + N  # 64-bit offsets: T * N may pass 2**31
        zero = tl.zeros([BLOCK], tl.int32)  # the step-in-range tests as vectors (the interpreter needs them)
        ch = (offs // CH_STRIDE) % C if HAS_BIAS else offs
        if V0_SCALAR:
            v = tl.zeros([BLOCK], tl.float32) + tl.load(v0_ptr).to(tl.float32)
        else:
            v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        idx = offs
        if STRIDED:  # the input is a strided view (e.g. heads split off a [T, B, N, D] tensor): gather it
            xs = tl.zeros([BLOCK], tl.int64) + XT
            e = offs
            xi = (e % S3) * X3
            e = e // S3
            xi += (e % S2) * X2
            e = e // S2
            xi += (e % S1) * X1 + (e // S1) * X0
        else:
            xs = step
            xi = offs
        x0 = _load_x(x_ptr, bias_ptr, xi, mask & (zero < T), ch, HAS_BIAS)
        x1 = _load_x(x_ptr, bias_ptr, xi + xs, mask & (zero + 1 < T), ch, HAS_BIAS)
        x2 = _load_x(x_ptr, bias_ptr, xi + 2 * xs, mask & (zero + 2 < T), ch, HAS_BIAS)
        x3 = _load_x(x_ptr, bias_ptr, xi + 3 * xs, mask & (zero + 3 < T), ch, HAS_BIAS)
        for t0 in range(0, T, 4):
            nxt = idx + 4 * step
            xi += 4 * xs
            n0 = _load_x(x_ptr, bias_ptr, xi, mask & (zero + (t0 + 4) < T), ch, HAS_BIAS)
            n1 = _load_x(x_ptr, bias_ptr, xi + xs, mask & (zero + (t0 + 5) < T), ch, HAS_BIAS)
            n2 = _load_x(x_ptr, bias_ptr, xi + 2 * xs, mask & (zero + (t0 + 6) < T), ch, HAS_BIAS)
            n3 = _load_x(x_ptr, bias_ptr, xi + 3 * xs, mask & (zero + (t0 + 7) < T), ch, HAS_BIAS)
            m = mask & (zero + t0 < T)
            v = _charge_fire_store(x0, v, m, idx, s_ptr, h_ptr, a, b, c, theta, v_reset, SOFT, HAS_C, KEEP_H)
            m = mask & (zero + (t0 + 1) < T)
            v = _charge_fire_store(x1, v, m, idx + step, s_ptr, h_ptr, a, b, c, theta, v_reset, SOFT, HAS_C, KEEP_H)
            m = mask & (zero + (t0 + 2) < T)
            v = _charge_fire_store(x2, v, m, idx + 2 * step, s_ptr, h_ptr, a, b, c, theta, v_reset, SOFT, HAS_C, KEEP_H)
            m = mask & (zero + (t0 + 3) < T)
            v = _charge_fire_store(x3, v, m, idx + 3 * step, s_ptr, h_ptr, a, b, c, theta, v_reset, SOFT, HAS_C, KEEP_H)
            x0, x1, x2, x3 = n0, n1, n2, n3
            idx = nxt
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
    def _grad_h(
        hm, vr_minus_h, gs, g_v, theta, alpha, SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr
    ):  # fmt: skip
        """``dL/dh_t`` from ``hm = h_t - theta``, ``v_reset - h_t``, ``dL/ds_t`` and ``dL/dv_t``."""
        d = _surrogate_grad(hm, alpha, KIND)
        if SOFT:
            if DETACH:
                g_h = gs * d + g_v
            else:
                g_h = gs * d + g_v * (1.0 - theta * d)
        else:
            keep = 1.0 - (hm >= 0.0).to(tl.float32)
            if DETACH:
                g_h = gs * d + g_v * keep
            else:
                g_h = gs * d + g_v * (keep + vr_minus_h * d)
        return g_h

    @triton.jit
    def _grad_step(
        h, gs, g_v, m, idx, gx_ptr, a, b, theta, v_reset, alpha,
        SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr,
    ):  # fmt: skip
        """One time step backwards: store dL/dx_t, return dL/dv_{t-1} (unchanged where not ``m``)."""
        g_h = _grad_h(h - theta, v_reset - h, gs, g_v, theta, alpha, SOFT, DETACH, KIND)
        tl.store(gx_ptr + idx, (g_h * b).to(gx_ptr.dtype.element_ty), mask=m)
        return tl.where(m, g_h * a, g_v)

    @triton.jit
    def _lif_bwd_kernel(
        h_ptr, gs_ptr, gvt_ptr, gx_ptr, gv0_ptr, T, N, a, b, theta, v_reset, alpha,
        SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr, HAS_GVT: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        # Backwards in time, four steps per iteration, the next four steps' loads issued first (as in the forward).
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        if HAS_GVT:
            g_v = tl.load(gvt_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        else:
            g_v = tl.zeros([BLOCK], tl.float32)
        step = tl.zeros([BLOCK], tl.int64) + N
        zero = tl.zeros([BLOCK], tl.int32)
        idx = offs + step * (T - 1)
        m = mask & (zero < T)
        h0, g0 = tl.load(h_ptr + idx, mask=m, other=0.0), tl.load(gs_ptr + idx, mask=m, other=0.0).to(tl.float32)
        m = mask & (zero + 1 < T)
        h1 = tl.load(h_ptr + idx - step, mask=m, other=0.0)
        g1 = tl.load(gs_ptr + idx - step, mask=m, other=0.0).to(tl.float32)
        m = mask & (zero + 2 < T)
        h2 = tl.load(h_ptr + idx - 2 * step, mask=m, other=0.0)
        g2 = tl.load(gs_ptr + idx - 2 * step, mask=m, other=0.0).to(tl.float32)
        m = mask & (zero + 3 < T)
        h3 = tl.load(h_ptr + idx - 3 * step, mask=m, other=0.0)
        g3 = tl.load(gs_ptr + idx - 3 * step, mask=m, other=0.0).to(tl.float32)
        for r0 in range(0, T, 4):
            nxt = idx - 4 * step
            m = mask & (zero + (r0 + 4) < T)
            n_h0, n_g0 = tl.load(h_ptr + nxt, mask=m, other=0.0), tl.load(gs_ptr + nxt, mask=m, other=0.0)
            m = mask & (zero + (r0 + 5) < T)
            n_h1, n_g1 = tl.load(h_ptr + nxt - step, mask=m, other=0.0), tl.load(gs_ptr + nxt - step, mask=m, other=0.0)
            m = mask & (zero + (r0 + 6) < T)
            n_h2 = tl.load(h_ptr + nxt - 2 * step, mask=m, other=0.0)
            n_g2 = tl.load(gs_ptr + nxt - 2 * step, mask=m, other=0.0)
            m = mask & (zero + (r0 + 7) < T)
            n_h3 = tl.load(h_ptr + nxt - 3 * step, mask=m, other=0.0)
            n_g3 = tl.load(gs_ptr + nxt - 3 * step, mask=m, other=0.0)
            m = mask & (zero + r0 < T)
            g_v = _grad_step(h0, g0, g_v, m, idx, gx_ptr, a, b, theta, v_reset, alpha, SOFT, DETACH, KIND)
            m = mask & (zero + (r0 + 1) < T)
            g_v = _grad_step(h1, g1, g_v, m, idx - step, gx_ptr, a, b, theta, v_reset, alpha, SOFT, DETACH, KIND)
            m = mask & (zero + (r0 + 2) < T)
            g_v = _grad_step(h2, g2, g_v, m, idx - 2 * step, gx_ptr, a, b, theta, v_reset, alpha, SOFT, DETACH, KIND)
            m = mask & (zero + (r0 + 3) < T)
            g_v = _grad_step(h3, g3, g_v, m, idx - 3 * step, gx_ptr, a, b, theta, v_reset, alpha, SOFT, DETACH, KIND)
            h0, h1, h2, h3 = n_h0, n_h1, n_h2, n_h3
            g0, g1, g2, g3 = n_g0.to(tl.float32), n_g1.to(tl.float32), n_g2.to(tl.float32), n_g3.to(tl.float32)
            idx = nxt
        tl.store(gv0_ptr + offs, g_v, mask=mask)


_BLOCK, _WARPS = 512, 4


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, _BLOCK),)


def _dense_steps(x: torch.Tensor) -> bool:
    """Every time step of ``x`` is one dense block laid out alike (contiguous or channels-last): the kernels can index
    input and outputs alike as ``t * N + i`` over the storage, and outputs keep ``x``'s layout."""
    return x.is_contiguous() or (
        x.dim() == 5 and x[0].is_contiguous(memory_format=torch.channels_last) and x.stride(0) == x[0].numel()
    )


def _gather_strides(x: torch.Tensor) -> tuple[int, ...] | None:
    """``(XT, S1, S2, S3, X0, X1, X2, X3)`` for a strided ``x`` with at most four dimensions per step (sizes of the
    last three step dimensions, then the input strides of all four), or ``None`` when the kernel cannot gather it."""
    sizes, strides = list(x.shape[1:]), list(x.stride()[1:])
    if len(sizes) > 4:
        return None
    sizes, strides = [1] * (4 - len(sizes)) + sizes, [0] * (4 - len(strides)) + strides
    return (x.stride(0), *sizes[1:], *strides)


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
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(spikes like x_seq, v_T float32 [step shape], h float32 like x_seq or None)``; ``v_reset=None`` is the soft
    reset. ``v0`` has the shape of one step or broadcasts to it from a single value. ``bias`` (``[C]``, for
    ``x_seq [T, B, C, H, W]`` or ``[T, ..., C]``) is added to the input first, in float32."""
    x = x_seq
    gather = None if _dense_steps(x) else _gather_strides(x)
    if not _dense_steps(x) and gather is None:
        x = x.contiguous()
    c_count, ch_stride = 1, 1
    if bias is not None:
        c_count = bias.numel()
        ch_dim = 2 if x.dim() == 5 else x.dim() - 1
        if x.shape[ch_dim] != c_count:
            raise ValueError(f"bias of {c_count} channels for an input of shape {list(x.shape)}")
        ch_stride = x.stride(ch_dim) if gather is None else math.prod(x.shape[ch_dim + 1 :])
        bias = bias.contiguous()
    steps, n = x.shape[0], x[0].numel()
    scalar = v0.numel() == 1 or all(st == 0 for st in v0.stride())
    v0c = v0.reshape(-1)[:1] if scalar else None
    fmt = torch.contiguous_format if gather is not None else torch.preserve_format  # a gathered input: contiguous out
    s = torch.empty_like(x, memory_format=fmt)
    h = torch.empty_like(x, dtype=torch.float32, memory_format=fmt) if keep_h else s  # a dummy pointer when not kept
    v_t = torch.empty_like(s[0], dtype=torch.float32)
    if not scalar:
        v0c = _like(s[0], v0)
    if n and steps:
        _lif_fwd_kernel[_grid(n)](
            x, x if bias is None else bias, v0c, s, h, v_t, steps, n, c_count, ch_stride,
            a, b, c, theta, 0.0 if v_reset is None else v_reset, *(gather or (0,) * 8),
            V0_SCALAR=scalar, SOFT=v_reset is None, HAS_C=c != 0.0, KEEP_H=keep_h, HAS_BIAS=bias is not None,
            STRIDED=gather is not None, BLOCK=_BLOCK, num_warps=_WARPS, enable_fp_fusion=False,
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
            BLOCK=_BLOCK, num_warps=_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
    else:
        gv0.copy_(grad_v if grad_v is not None else torch.zeros_like(gv0))
    return gx, gv0

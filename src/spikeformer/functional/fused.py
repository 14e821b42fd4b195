"""Fused multi-step LIF/IF: one autograd node for all T steps instead of several per step.

Forward runs the recurrence without recording a graph and keeps only the charged potentials ``h [T, ...]``;
backward runs the recurrence in reverse by hand. With ``a = 1 - 1/tau`` (LIF with ``decay_input``;
``a = 1`` for IF), ``v_r`` the reset value (soft reset: subtract ``theta``), ``s_t = H(h_t - theta)``:

    h_t = a v_{t-1} + b x_t + (1 - a) v_rest        (b = 1/tau with decay_input, else 1)
    v_t = h_t (1 - s_t) + v_r s_t                   (hard)     v_t = h_t - theta s_t   (soft)

    dL/dh_t = dL/ds_t * sg'(h_t - theta) + dL/dv_t * dv_t/dh_t
    dv_t/dh_t = 1 - s_t [+ (v_r - h_t) sg'(h_t - theta)  when the reset is not detached; soft: - theta sg']
    dL/dv_{t-1} = a dL/dh_t,   dL/dx_t = b dL/dh_t

``sg'`` is the surrogate derivative (``spikeformer.functional.surrogate``). Tested against the step-by-step reference
(``tests/functional/test_fused.py``): identical spikes, gradients equal to float rounding.

On the CPU (float32, or bfloat16 under autocast with the membrane kept in float32) both directions run in the
compiled kernel of ``spikeformer.kernels.cpu``, on CUDA in the Triton kernels of
``spikeformer.kernels.triton_lif`` (float32, bfloat16 or float16 inputs, float32 membrane); each is one pass over
``[T, N]`` with the same operations in the same order, and inference calls it without an autograd node. Elsewhere (other
dtypes, no compiler, no Triton) the torch loop below runs.
"""

from __future__ import annotations

import torch

from spikeformer.functional.surrogate import atan_grad, fast_sigmoid_grad, heaviside, sigmoid_grad
from spikeformer.kernels import cpu as kernels
from spikeformer.kernels import triton_lif

__all__ = ["fused_multistep", "add_channel_bias", "lif_coefficients", "SURROGATE_GRADS"]

SURROGATE_GRADS = {"sigmoid": sigmoid_grad, "atan": atan_grad, "fast_sigmoid": fast_sigmoid_grad}


SURROGATE_KINDS = {"sigmoid": 0, "atan": 1, "fast_sigmoid": 2}  # the kernel's numbering


def _kernels(*tensors: torch.Tensor):
    """The compiled kernels when every tensor is a float32 or bfloat16 CPU tensor and they are available."""
    if not all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16) for t in tensors):
        return None
    return kernels.get()


def _kernel_v0(v0: torch.Tensor, step_shape: torch.Size) -> torch.Tensor:
    """``v0`` for the compiled kernels: one value per neuron, or a single value for a broadcast resting potential."""
    v0 = v0.expand(step_shape)
    if v0.numel() > 1 and all(st == 0 for st in v0.stride()):
        v0 = v0.reshape(-1)[:1]  # the kernel broadcasts it itself
    return v0


def _kernel_forward(k, x_seq, v0, a, b, v_rest, theta, v_reset, keep_h: bool, int8_spikes: bool = False):
    """``(spikes in x_seq's dtype, v_T, h)`` from the compiled kernel (x_seq float32 or bfloat16, v0 float32);
    ``int8_spikes`` (float32 inference only): ``(int8 spikes, v_T)``."""
    v0 = _kernel_v0(v0, x_seq.shape[1:])
    c = (1.0 - a) * v_rest
    if int8_spikes:
        return k.lif_forward_int8(x_seq, v0, a, b, c, theta, v_reset is None, v_reset or 0.0)
    return k.lif_forward(x_seq, v0, a, b, c, theta, v_reset is None, v_reset or 0.0, keep_h)


def _kernel_rows(k, rows, v0, dequant, a, b, v_rest, theta, v_reset, int8_spikes: bool):
    """Inference over ``rows [T, ..., C]`` (contiguous, channel innermost): float32 values, or int32 accumulators with
    ``dequant = (scale, bias)`` per channel (any shape holding ``C`` values)."""
    c = (1.0 - a) * v_rest
    if rows.dtype == torch.float32:
        if int8_spikes:
            return k.lif_forward_int8(rows, v0, a, b, c, theta, v_reset is None, v_reset or 0.0)
        return k.lif_forward(rows, v0, a, b, c, theta, v_reset is None, v_reset or 0.0, False)[:2]
    scale, dq_bias = dequant
    return k.lif_forward_dequant(
        rows, scale.reshape(-1), torch.empty(0) if dq_bias is None else dq_bias.reshape(-1), v0,
        a, b, c, theta, v_reset is None, v_reset or 0.0, int8_spikes,
    )  # fmt: skip


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_seq, v0, a, b, v_rest, theta, v_reset, detach_reset, surrogate, alpha):  # type: ignore[override]
        ctx.params = (a, b, theta, v_reset, detach_reset, surrogate, alpha)
        ctx.in_dtypes = (x_seq.dtype, v0.dtype)
        ctx.kernel = None
        if triton_lif.available(x_seq) and v0.device == x_seq.device:
            keep_h = any(ctx.needs_input_grad[:2])
            s_seq, v, h_seq = triton_lif.lif_forward(x_seq, v0, a, b, (1.0 - a) * v_rest, theta, v_reset, keep_h)
            ctx.save_for_backward(h_seq)
            ctx.kernel = "triton"
            return s_seq, v
        k = _kernels(x_seq, v0)
        if k is not None:
            # bfloat16 (CPU autocast) in and out: the kernel integrates the membrane in float32 (bf16 spikes are exact)
            keep_h = any(ctx.needs_input_grad[:2])  # the charged potentials are needed only for backward
            s_seq, v, h_seq = _kernel_forward(k, x_seq, v0.float(), a, b, v_rest, theta, v_reset, keep_h)
            ctx.save_for_backward(h_seq, s_seq)
            ctx.kernel = "cpu"
            return s_seq.to(ctx.in_dtypes[0]), v
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        v = v0
        c = (1.0 - a) * v_rest
        for t in range(x_seq.shape[0]):
            h = v * a + x_seq[t] * b
            if c:
                h = h + c
            s = heaviside(h - theta)
            v = h - theta * s if v_reset is None else h * (1.0 - s) + v_reset * s
            h_seq[t] = h
            s_seq[t] = s
        ctx.save_for_backward(h_seq, s_seq)
        return s_seq, v

    @staticmethod
    def backward(ctx, grad_s, grad_v):  # type: ignore[override]
        a, b, theta, v_reset, detach_reset, surrogate, alpha = ctx.params
        if ctx.kernel == "triton":
            (h_seq,) = ctx.saved_tensors
            grad_s = grad_s if grad_s is not None else torch.zeros_like(h_seq)
            grad_x, g_v = triton_lif.lif_backward(
                h_seq, grad_s, grad_v, a, b, theta, v_reset, detach_reset, surrogate, alpha, ctx.in_dtypes[0]
            )
            return grad_x, g_v.to(ctx.in_dtypes[1]), None, None, None, None, None, None, None, None
        h_seq, s_seq = ctx.saved_tensors
        if ctx.kernel == "cpu":
            g_v = grad_v if grad_v is not None else torch.zeros_like(h_seq[0])
            grad_s = grad_s if grad_s is not None else torch.zeros_like(h_seq)
            grad_x, g_v = kernels.get().lif_backward(
                h_seq,
                grad_s if grad_s.dtype in (torch.float32, torch.bfloat16) else grad_s.float(),
                g_v.float(),
                a,
                b,
                theta,
                v_reset is None,
                v_reset or 0.0,
                detach_reset,
                SURROGATE_KINDS[surrogate],
                alpha,
            )
            return grad_x.to(ctx.in_dtypes[0]), g_v.to(ctx.in_dtypes[1]), None, None, None, None, None, None, None, None
        sg = SURROGATE_GRADS[surrogate]
        grad_x = torch.empty_like(h_seq)
        g_v = grad_v if grad_v is not None else torch.zeros_like(h_seq[0])
        grad_s = grad_s if grad_s is not None else torch.zeros_like(h_seq)
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h, s = h_seq[t], s_seq[t]
            d = sg(h - theta, alpha)
            if v_reset is None:
                dv_dh = 1.0 if detach_reset else 1.0 - theta * d
            else:
                dv_dh = (1.0 - s) if detach_reset else (1.0 - s) + (v_reset - h) * d
            g_h = grad_s[t] * d + g_v * dv_dh
            grad_x[t] = g_h * b
            g_v = g_h * a
        return grad_x, g_v, None, None, None, None, None, None, None, None


def add_channel_bias(x_seq: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x_seq`` plus a per-channel ``bias``: channel axis 2 of ``[T, B, C, H, W]``, else the last axis."""
    if bias is None:
        return x_seq
    return x_seq + (bias.view(-1, 1, 1) if x_seq.dim() == 5 else bias)


def lif_coefficients(decay: float | None, decay_input: bool = True) -> tuple[float, float]:
    """``(a, b)`` of ``h_t = a v_{t-1} + b x_t + ...``: LIF with ``decay = 1/tau``, or IF (``decay=None``)."""
    if decay is None:
        return 1.0, 1.0
    return 1.0 - decay, (decay if decay_input else 1.0)


def fused_multistep(
    x_seq: torch.Tensor,
    v0: torch.Tensor,
    decay: float | None,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    detach_reset: bool = True,
    surrogate: str = "sigmoid",
    alpha: float = 4.0,
    bias: torch.Tensor | None = None,
    int8_spikes: bool = False,
    dequant: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step LIF (``decay = 1/tau``) or IF (``decay=None``): ``(spikes [T, ...], v_T)``; ``bias`` is a
    per-channel input bias (``add_channel_bias``), added inside the CUDA inference kernel; ``int8_spikes``: in
    inference, spikes as int8 (for a neuron read only by int8 products: ``spikeformer.runtime.int8``); ``dequant``:
    ``(scale [C], bias [C] or None)`` for int32 accumulators ``x_seq`` of an int8 product, the input being
    ``x_seq * scale + bias`` (added inside the CPU inference kernel)."""
    if surrogate not in SURROGATE_GRADS:
        raise ValueError(f"unknown surrogate {surrogate!r}; accepted: {sorted(SURROGATE_GRADS)}")
    v_rest = 0.0 if v_reset is None else v_reset
    a, b = lif_coefficients(decay, decay_input)
    inference = not (torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad))  # no autograd node
    if inference and triton_lif.available(x_seq) and v0.device == x_seq.device:
        c = (1.0 - a) * v_rest
        return triton_lif.lif_forward(x_seq, v0, a, b, c, v_threshold, v_reset, keep_h=False, bias=bias)[:2]
    on_cpu = inference and x_seq.device.type == "cpu" and bias is None and v0.dtype == torch.float32
    k = kernels.get() if on_cpu else None
    if x_seq.dtype == torch.int32 and dequant is None:
        raise ValueError("int32 neuron input needs dequant=(scale, bias): the accumulators of an int8 product")
    if k is not None and x_seq.dtype in (torch.int32, torch.float32):
        # a convolution's output [T, B, C, H, W] in channels-last memory (the int8 runtime's): the kernel runs over
        # [T, B, H, W, C] (channel innermost) and the spikes keep that memory
        rows = x_seq.permute(0, 1, 3, 4, 2) if x_seq.dim() == 5 else None
        if rows is not None and rows.is_contiguous() and not x_seq.is_contiguous():
            v0r = _kernel_v0(v0, x_seq.shape[1:])
            v0r = v0r if v0r.numel() == 1 else v0r.permute(0, 2, 3, 1).contiguous()
            s, v = _kernel_rows(k, rows, v0r, dequant, a, b, v_rest, v_threshold, v_reset, int8_spikes)
            return s.permute(0, 1, 4, 2, 3), v.permute(0, 3, 1, 2)
        if x_seq.dtype == torch.int32 and dequant[0].dim() == 1:
            v0k = _kernel_v0(v0, x_seq.shape[1:])
            return _kernel_rows(k, x_seq, v0k, dequant, a, b, v_rest, v_threshold, v_reset, int8_spikes)
    if x_seq.dtype == torch.int32:
        scale, dq_bias = dequant
        x_seq = x_seq.float() * scale if dq_bias is None else x_seq.float() * scale + dq_bias
    x_seq = add_channel_bias(x_seq, bias)
    if inference and (k := _kernels(x_seq, v0)) is not None and x_seq.dtype == v0.dtype == torch.float32:
        return _kernel_forward(k, x_seq, v0, a, b, v_rest, v_threshold, v_reset, False, int8_spikes)[:2]
    s, v = _FusedLIF.apply(x_seq, v0, a, b, v_rest, v_threshold, v_reset, detach_reset, surrogate, alpha)
    return (s.to(torch.int8), v) if int8_spikes and inference else (s, v)

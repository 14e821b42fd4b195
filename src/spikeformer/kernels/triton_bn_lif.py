"""Training-mode BatchNorm followed by a multi-step LIF/IF neuron, fused, on CUDA (Triton).

In a Spikformer every convolution and linear layer is followed by ``BatchNorm -> LIF``. Run as separate operations a
training step passes over each of those activations eight times (statistics; normalise, write; the neuron reads;
backward: the neuron writes dL/dz; two BatchNorm backward passes read it and the input, one writes dL/dy) and
PyTorch's channels-last statistics kernel runs far below the memory bandwidth. Here the layer output ``y`` is read
in place, as ``[T, R, C]`` rows of ``C`` channels (a linear layer's ``[T, B, N, C]`` or a channels-last convolution
output ``[T*B, C, H, W]``):

- forward: a statistics kernel (per block of rows: a shifted-data sum and sum of squares, one read of ``y``) and a
  combining kernel (Chan et al.'s pairwise update; the running statistics are updated as ``nn.BatchNorm`` does,
  unbiased variance, the momentum), then one kernel that normalises ``y`` as it reads it (``w (y - mean) invstd + b``,
  rounded to ``y``'s dtype as a separate BatchNorm's output would be) and runs the neuron over the time steps;
- backward: one kernel runs the neuron's recurrence backwards, writes ``dL/dz`` and sums ``dL/dz`` and
  ``dL/dz * ŷ`` per channel; one kernel writes ``dL/dy = w invstd (dL/dz - mean(dL/dz) - ŷ mean(dL/dz ŷ))``.

The neuron's spikes can be written straight into the head-split layout ``[T, B, H, N, C/H]`` that the attention
products read (and their gradient read from it), so the split costs no copy in either direction. Arithmetic is
float32 whatever the input dtype; the neuron steps are those of ``spikeformer.kernels.triton_lif`` (built without
floating-point contraction). For the backward pass the kernel keeps ``h - theta`` in the input's dtype: exact for
float32 inputs; under bf16/fp16 autocast the spikes and reset decisions are still exact (the sign of ``h - theta``
survives the rounding) and the surrogate derivative is evaluated at the rounded value (a relative error of the order
of that dtype's precision), for two bytes per element less traffic each way. The forward result matches
``nn.BatchNorm`` then the neuron up to float32 rounding of the statistics (tested in ``tests/kernels/test_triton.py``
in Triton's interpreter and, on a GPU, compiled). The reducing kernels keep per-thread partial sums over several row
tiles and reduce across the tile once.
"""

from __future__ import annotations

import torch

from spikeformer.kernels import triton_lif

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

__all__ = ["available", "bn_lif", "batch_norm"]

# tile: rows (of C channels), channels, warps per program; the fastest of a sweep of tile shapes over the bf16
# training step of Spikformer-4-384 on a GPU (docs/benchmarks.md)
_ROWS, _COLS, _WARPS = 64, 64, 4
_CHUNKS, _SUM_COLS = 128, 32  # partial results x channels the combining kernels read at a time
_PROGRAMS = 1024  # the reducing kernels give each program enough row tiles to make about this many programs


# Switch for A/B measurements (``bench/speed_gpu.py``): False sends every BatchNorm back to the ``nn`` modules.
ENABLED = True


def available(t: torch.Tensor) -> bool:
    """True when the fused kernels can run on ``t`` (as ``triton_lif.available``) and ``ENABLED``."""
    return ENABLED and triton_lif.available(t)


if triton is not None:
    from spikeformer.kernels.triton_lif import _grad_h

    @triton.jit
    def _tile(R, C, BR: tl.constexpr, BC: tl.constexpr, i=0, ITERS: tl.constexpr = 1):
        """Rows, channels, mask and row-major offsets of this program's ``[BR, BC]`` tile of a ``[R, C]`` step (tile
        ``i`` of the ``ITERS`` consecutive row tiles of a reducing kernel's program)."""
        rows = (tl.program_id(0).to(tl.int64) * ITERS + i) * BR + tl.arange(0, BR)
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        m = (rows < R)[:, None] & (cols < C)[None, :]
        return rows, cols, m, rows[:, None] * C + cols[None, :]

    @triton.jit
    def _batch_stats(mean_ptr, invstd_ptr, cols, cm):
        """Per-channel mean and 1/std as ``[1, BC]`` rows."""
        mean = tl.load(mean_ptr + cols, mask=cm, other=0.0)[None, :]
        return mean, tl.load(invstd_ptr + cols, mask=cm, other=0.0)[None, :]

    @triton.jit
    def _out_offsets(rows, cols, off, NTOK, HEADS, DH, SPLIT: tl.constexpr):
        """Offsets in the spikes' layout: ``off`` itself, or for a head split ``[B, H, N, C/H]`` within a step (a row
        is token ``n`` of image ``b``, a channel is ``d`` of head ``h``)."""
        if SPLIT:
            bb, n = rows // NTOK, rows % NTOK
            hh, d = cols // DH, cols % DH
            return ((bb[:, None] * HEADS + hh[None, :]) * NTOK + n[:, None]) * DH + d[None, :]
        return off

    @triton.jit
    def _stats_kernel(y_ptr, mean_ptr, m2_ptr, T, R, C, BR: tl.constexpr, BC: tl.constexpr, ITERS: tl.constexpr):
        # Shifted data (Chan, Golub and LeVeque 1983): sums of y - K with K the chunk's first value per channel keep
        # the sum of squares from cancelling when the mean is large against the spread. Per-thread partial sums; one
        # reduction across the tile at the end.
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        first = tl.program_id(0).to(tl.int64) * ITERS * BR
        k = tl.load(y_ptr + first * C + cols, mask=cols < C, other=0.0).to(tl.float32)[None, :]
        step = R * C
        s = tl.zeros([BR, BC], tl.float32)
        q = tl.zeros([BR, BC], tl.float32)
        for i in range(ITERS):
            _, _, m, off = _tile(R, C, BR, BC, i, ITERS)
            for t in range(T):
                d = tl.where(m, tl.load(y_ptr + t * step + off, mask=m, other=0.0).to(tl.float32) - k, 0.0)
                s += d
                q += d * d
        s1 = tl.sum(s, axis=0)
        n = (tl.minimum(R - first, ITERS * BR) * T).to(tl.float32)
        i = tl.program_id(0) * C + cols
        tl.store(mean_ptr + i, s1 / n + tl.sum(k, axis=0), mask=cols < C)  # the chunk's mean
        tl.store(m2_ptr + i, tl.sum(q, axis=0) - s1 * s1 / n, mask=cols < C)  # and its sum of squared deviations

    @triton.jit
    def _combine_kernel(
        mean_part, m2_part, rm_ptr, rv_ptr, mean_ptr, invstd_ptr, T, R, C, NCH, eps, momentum,
        CHUNK, COPIES, UPDATE: tl.constexpr, BCH: tl.constexpr, BC: tl.constexpr,
    ):  # fmt: skip
        # One pass over the chunks' (mean, M2): with the first chunk's mean as the shift, the spread of the chunk
        # means around it is summed without cancelling (Chan et al.'s combination, shifted).
        cols = tl.program_id(0) * BC + tl.arange(0, BC)
        cm = cols < C
        total = (R * T).to(tl.float32)
        mu0 = tl.load(mean_part + cols, mask=cm, other=0.0)[None, :]
        a = tl.zeros([BCH, BC], tl.float32)
        b = tl.zeros([BCH, BC], tl.float32)
        m2 = tl.zeros([BCH, BC], tl.float32)
        for i0 in range(0, NCH, BCH):
            ch = i0 + tl.arange(0, BCH)
            mm = (ch < NCH)[:, None] & cm[None, :]
            n = (tl.minimum(R - ch.to(tl.int64) * CHUNK, CHUNK) * T).to(tl.float32)[:, None]
            i = ch[:, None] * C + cols[None, :]
            d = tl.where(mm, tl.load(mean_part + i, mask=mm, other=0.0) - mu0, 0.0)
            a += n * d
            b += n * d * d
            m2 += tl.load(m2_part + i, mask=mm, other=0.0)
        sa = tl.sum(a, axis=0)
        mean = tl.sum(mu0, axis=0) + sa / total
        var = (tl.sum(m2, axis=0) + tl.maximum(tl.sum(b, axis=0) - sa * sa / total, 0.0)) / total
        tl.store(mean_ptr + cols, mean, mask=cm)
        tl.store(invstd_ptr + cols, 1.0 / tl.sqrt(var + eps), mask=cm)
        if UPDATE:
            rm = tl.load(rm_ptr + cols, mask=cm, other=0.0).to(tl.float32)
            rv = tl.load(rv_ptr + cols, mask=cm, other=0.0).to(tl.float32)
            n = total * COPIES  # (a repeated input: the statistics of one copy, the count of all)
            unbiased = var * n / tl.maximum(n - 1.0, 1.0)
            tl.store(rm_ptr + cols, (1.0 - momentum) * rm + momentum * mean, mask=cm)
            tl.store(rv_ptr + cols, (1.0 - momentum) * rv + momentum * unbiased, mask=cm)

    @triton.jit
    def _sum_chunks_kernel(part_ptr, out_ptr, NCH, C, BCH: tl.constexpr, BC: tl.constexpr):
        """``out[k, c] = sum_i part[k, i, c]`` for ``part [K, NCH, C]``, in a fixed order (deterministic)."""
        cols = tl.program_id(0) * BC + tl.arange(0, BC)
        cm = cols < C
        base = part_ptr + tl.program_id(1).to(tl.int64) * NCH * C
        acc = tl.zeros([BCH, BC], tl.float32)
        for i0 in range(0, NCH, BCH):
            ch = i0 + tl.arange(0, BCH)
            mm = (ch < NCH)[:, None] & cm[None, :]
            acc += tl.load(base + ch[:, None] * C + cols[None, :], mask=mm, other=0.0)
        tl.store(out_ptr + tl.program_id(1) * C + cols, tl.sum(acc, axis=0), mask=cm)

    @triton.jit
    def _affine(w_ptr, b_ptr, cols, cm, HAS_W: tl.constexpr):
        if HAS_W:
            w = tl.load(w_ptr + cols, mask=cm, other=0.0).to(tl.float32)
            b = tl.load(b_ptr + cols, mask=cm, other=0.0).to(tl.float32)
        else:
            w = tl.zeros_like(cols.to(tl.float32)) + 1.0
            b = tl.zeros_like(cols.to(tl.float32))
        return w, b

    @triton.jit
    def _fwd_kernel(
        y_ptr, mean_ptr, invstd_ptr, w_ptr, b_ptr, s_ptr, h_ptr, vt_ptr, T, R, C, YSTEP, NTOK, HEADS, DH,
        a, b, c, theta, v_reset, v0,
        HAS_W: tl.constexpr, SOFT: tl.constexpr, HAS_C: tl.constexpr, KEEP_H: tl.constexpr, SPLIT: tl.constexpr,
        BR: tl.constexpr, BC: tl.constexpr,
    ):  # fmt: skip
        rows, cols, m, off = _tile(R, C, BR, BC)
        soff = _out_offsets(rows, cols, off, NTOK, HEADS, DH, SPLIT)
        cm = cols < C
        mean, invstd = _batch_stats(mean_ptr, invstd_ptr, cols, cm)
        w, bias = _affine(w_ptr, b_ptr, cols, cm, HAS_W)
        step = R * C
        v = tl.zeros([BR, BC], tl.float32) + v0
        zero = tl.zeros([BR, BC], tl.int32)  # the step-in-range test as a tensor (the interpreter needs one)
        nxt = tl.load(y_ptr + off, mask=m, other=0.0)
        for t in range(T):
            # the next step's input is loaded before this step's stores (the compiler does not move a load above a
            # store it cannot prove independent)
            y = nxt.to(tl.float32)
            nxt = tl.load(y_ptr + (t + 1) * YSTEP + off, mask=m & (zero + t + 1 < T), other=0.0)
            # BatchNorm's output, rounded to its dtype as a separate BatchNorm would store it; then one neuron step
            z = (w[None, :] * (y - mean) * invstd + bias[None, :]).to(y_ptr.dtype.element_ty).to(tl.float32)
            h = v * a + z * b
            if HAS_C:
                h = h + c
            fire = (h - theta) >= 0.0
            if SOFT:
                v = tl.where(fire, h - theta, h)
            else:
                v = tl.where(fire, v_reset, h)
            tl.store(s_ptr + t * step + soff, fire.to(tl.float32).to(s_ptr.dtype.element_ty), mask=m)
            if KEEP_H:  # h - theta (its sign is the spike even in bf16: |h - theta| is 0 or above 1e-38)
                tl.store(h_ptr + t * step + off, (h - theta).to(h_ptr.dtype.element_ty), mask=m)
        tl.store(vt_ptr + off, v, mask=m)

    @triton.jit
    def _bwd_kernel(
        h_ptr, gs_ptr, y_ptr, mean_ptr, invstd_ptr, gz_ptr, sum_ptr, dot_ptr, T, R, C, YSTEP, NTOK, HEADS, DH,
        a, b, theta, v_reset, alpha,
        SOFT: tl.constexpr, DETACH: tl.constexpr, KIND: tl.constexpr, SPLIT: tl.constexpr,
        BR: tl.constexpr, BC: tl.constexpr, ITERS: tl.constexpr,
    ):  # fmt: skip
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        cm = cols < C
        mean, invstd = _batch_stats(mean_ptr, invstd_ptr, cols, cm)
        step = R * C
        sg = tl.zeros([BR, BC], tl.float32)
        sgx = tl.zeros([BR, BC], tl.float32)
        for i in range(ITERS):
            rows, _, m, off = _tile(R, C, BR, BC, i, ITERS)
            soff = _out_offsets(rows, cols, off, NTOK, HEADS, DH, SPLIT)
            g_v = tl.zeros([BR, BC], tl.float32)
            zero = tl.zeros([BR, BC], tl.int32)
            last = (T - 1) * step
            n_h = tl.load(h_ptr + last + off, mask=m, other=0.0)
            n_g = tl.load(gs_ptr + last + soff, mask=m, other=0.0)
            n_y = tl.load(y_ptr + (T - 1) * YSTEP + off, mask=m, other=0.0)
            for r in range(T):
                t = T - 1 - r
                hm, gs, y = n_h.to(tl.float32), n_g.to(tl.float32), n_y.to(tl.float32)  # hm: h - theta
                # the previous step's loads go out before this step's store (as in the forward kernel)
                pm = m & (zero + t > 0)
                n_h = tl.load(h_ptr + (t - 1) * step + off, mask=pm, other=0.0)
                n_g = tl.load(gs_ptr + (t - 1) * step + soff, mask=pm, other=0.0)
                n_y = tl.load(y_ptr + (t - 1) * YSTEP + off, mask=pm, other=0.0)
                g_h = _grad_h(hm, v_reset - theta - hm, gs, g_v, theta, alpha, SOFT, DETACH, KIND)
                g_v = g_h * a
                # dL/dz as stored (rounded to its dtype): the sums and the second pass see the same values
                gz = (g_h * b).to(gz_ptr.dtype.element_ty)
                tl.store(gz_ptr + t * step + off, gz, mask=m)
                gz = tl.where(m, gz.to(tl.float32), 0.0)
                sg += gz
                sgx += gz * (y - mean) * invstd
        i = tl.program_id(0) * C + cols
        tl.store(sum_ptr + i, tl.sum(sg, axis=0), mask=cm)
        tl.store(dot_ptr + i, tl.sum(sgx, axis=0), mask=cm)

    @triton.jit
    def _normalize_kernel(
        y_ptr, mean_ptr, invstd_ptr, w_ptr, b_ptr, z_ptr, M, C, HAS_W: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr
    ):  # fmt: skip
        _, cols, m, off = _tile(M, C, BR, BC)
        cm = cols < C
        mean, invstd = _batch_stats(mean_ptr, invstd_ptr, cols, cm)
        w, bias = _affine(w_ptr, b_ptr, cols, cm, HAS_W)
        y = tl.load(y_ptr + off, mask=m, other=0.0).to(tl.float32)
        tl.store(z_ptr + off, (w[None, :] * (y - mean) * invstd + bias[None, :]).to(z_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _reduce_grad_kernel(
        gz_ptr, y_ptr, mean_ptr, invstd_ptr, sum_ptr, dot_ptr, M, C,
        BR: tl.constexpr, BC: tl.constexpr, ITERS: tl.constexpr,
    ):  # fmt: skip
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        cm = cols < C
        mean, invstd = _batch_stats(mean_ptr, invstd_ptr, cols, cm)
        sg = tl.zeros([BR, BC], tl.float32)
        sgx = tl.zeros([BR, BC], tl.float32)
        for i in range(ITERS):
            _, _, m, off = _tile(M, C, BR, BC, i, ITERS)
            gz = tl.load(gz_ptr + off, mask=m, other=0.0).to(tl.float32)
            y = tl.load(y_ptr + off, mask=m, other=0.0).to(tl.float32)
            sg += gz
            sgx += gz * tl.where(m, (y - mean) * invstd, 0.0)
        i = tl.program_id(0) * C + cols
        tl.store(sum_ptr + i, tl.sum(sg, axis=0), mask=cm)
        tl.store(dot_ptr + i, tl.sum(sgx, axis=0), mask=cm)

    @triton.jit
    def _grad_input_kernel(
        gz_ptr, y_ptr, mean_ptr, invstd_ptr, w_ptr, sum_ptr, dot_ptr, gy_ptr, M, C, inv_count, COPIES,
        HAS_W: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr,
    ):  # fmt: skip
        # COPIES > 1: y was read as the input of every one of COPIES steps (dL/dz holds them one after the other)
        rows, cols, m, off = _tile(M, C, BR, BC)
        cm = cols < C
        mean, invstd = _batch_stats(mean_ptr, invstd_ptr, cols, cm)
        w, _ = _affine(w_ptr, w_ptr, cols, cm, HAS_W)
        mg = (tl.load(sum_ptr + cols, mask=cm, other=0.0) * inv_count)[None, :]
        mgx = (tl.load(dot_ptr + cols, mask=cm, other=0.0) * inv_count)[None, :]
        gz = tl.zeros([BR, BC], tl.float32)
        for t in range(COPIES):
            gz += tl.load(gz_ptr + t * M * C + off, mask=m, other=0.0).to(tl.float32)
        xhat = (tl.load(y_ptr + off, mask=m, other=0.0).to(tl.float32) - mean) * invstd
        gy = (gz - COPIES * (mg + xhat * mgx)) * invstd * w[None, :]
        tl.store(gy_ptr + off, gy.to(gy_ptr.dtype.element_ty), mask=m)


def _rows(y: torch.Tensor, images: bool) -> torch.Tensor:
    """``y`` laid out as rows of channels: channels-last for images ``[N, C, H, W]``, contiguous otherwise."""
    return y.contiguous(memory_format=torch.channels_last) if images else y.contiguous()


def _channels(y: torch.Tensor, images: bool) -> int:
    return y.shape[1] if images else y.shape[-1]


def _grid(rows: int, c: int, iters: int = 1) -> tuple[int, int]:
    return (triton.cdiv(rows, _ROWS * iters), triton.cdiv(c, _COLS))


def _iters(rows: int, c: int) -> int:
    """Row tiles per program for the reducing kernels: a power of two up to 16 that leaves about ``_PROGRAMS``
    programs (fewer partial results to combine, and the combining kernels stay short)."""
    tiles = triton.cdiv(rows, _ROWS) * triton.cdiv(c, _COLS)
    return 1 << max(0, min(4, (tiles // _PROGRAMS).bit_length() - 1))


def _statistics(y, timesteps, r, cc, running_mean, running_var, momentum, eps, copies=1):
    """``(mean, invstd)`` per channel of ``y`` (``timesteps`` steps of ``r`` rows of ``cc`` channels, each step counted
    ``copies`` times); the running statistics are updated in place (when given)."""
    iters = _iters(r, cc)
    grid = _grid(r, cc, iters)
    mean_part = torch.empty(grid[0], cc, device=y.device, dtype=torch.float32)
    m2_part = torch.empty_like(mean_part)
    mean, invstd = torch.empty(cc, device=y.device), torch.empty(cc, device=y.device)
    update = running_mean is not None
    _stats_kernel[grid](y, mean_part, m2_part, timesteps, r, cc, BR=_ROWS, BC=_COLS, ITERS=iters, num_warps=_WARPS)
    _combine_kernel[(triton.cdiv(cc, _SUM_COLS),)](
        mean_part, m2_part, running_mean if update else mean, running_var if update else mean, mean, invstd,
        timesteps, r, cc, grid[0], eps, momentum, _ROWS * iters, copies, UPDATE=update, BCH=_CHUNKS, BC=_SUM_COLS,
        num_warps=8,
    )  # fmt: skip
    return mean, invstd


def _input_grads(ctx, gz, y, mean, invstd, weight, sums, copies=1):
    """``(dL/dy, dL/dweight, dL/dbias)`` from ``dL/dz`` (``copies`` steps of y's shape when y was repeated) and the
    per-program partial sums ``[2, programs, C]`` of ``dL/dz`` and ``dL/dz * ŷ``."""
    cc = mean.numel()
    m = y.numel() // cc
    total = torch.empty(2, cc, device=y.device, dtype=torch.float32)  # sum of dL/dz (bias grad), dL/dz * ŷ (weight)
    _sum_chunks_kernel[(triton.cdiv(cc, _SUM_COLS), 2)](
        sums, total, sums.shape[1], cc, BCH=_CHUNKS, BC=_SUM_COLS, num_warps=8
    )  # fmt: skip
    gy = torch.empty_like(y)
    has_w = weight is not None
    _grad_input_kernel[_grid(m, cc)](
        gz, y, mean, invstd, weight if has_w else mean, total[0], total[1], gy, m, cc, 1.0 / (m * copies), copies,
        HAS_W=has_w, BR=_ROWS, BC=_COLS, num_warps=_WARPS,
    )  # fmt: skip
    gw = total[1].to(weight.dtype) if has_w and ctx.needs_input_grad[1] else None
    gb = total[0].to(weight.dtype) if has_w and ctx.needs_input_grad[2] else None
    return gy, gw, gb


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, running_mean, running_var, momentum, eps, images):  # type: ignore[override]
        y = _rows(y, images)
        cc = _channels(y, images)
        mean, invstd = _statistics(y, 1, y.numel() // cc, cc, running_mean, running_var, momentum, eps)
        z = torch.empty_like(y)
        has_w = weight is not None
        _normalize_kernel[_grid(y.numel() // cc, cc)](
            y, mean, invstd, weight if has_w else mean, bias if has_w else mean, z, y.numel() // cc, cc,
            HAS_W=has_w, BR=_ROWS, BC=_COLS, num_warps=_WARPS,
        )  # fmt: skip
        ctx.save_for_backward(y, mean, invstd, weight)
        ctx.images = images
        return z

    @staticmethod
    def backward(ctx, grad_z):  # type: ignore[override]
        y, mean, invstd, weight = ctx.saved_tensors
        cc = mean.numel()
        m = y.numel() // cc
        gz = _rows(grad_z, ctx.images)
        iters = _iters(m, cc)
        grid = _grid(m, cc, iters)
        sums = torch.empty(2, grid[0], cc, device=y.device, dtype=torch.float32)
        _reduce_grad_kernel[grid](
            gz, y, mean, invstd, sums[0], sums[1], m, cc, BR=_ROWS, BC=_COLS, ITERS=iters, num_warps=_WARPS
        )  # fmt: skip
        return *_input_grads(ctx, gz, y, mean, invstd, weight, sums), None, None, None, None, None


class _BNLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, running_mean, running_var, timesteps, momentum, eps, neuron, layout):  # type: ignore[override]
        a, b, c, theta, v_reset, detach_reset, surrogate, alpha, v0 = neuron
        heads, images, repeated = layout
        y = _rows(y, images)
        cc = _channels(y, images)
        r = y.numel() // (cc * (1 if repeated else timesteps))  # rows per step
        dev = y.device
        if repeated:  # one step of y, the input of every step: its statistics are those of all T copies
            mean, invstd = _statistics(y, 1, r, cc, running_mean, running_var, momentum, eps, copies=timesteps)
        else:
            mean, invstd = _statistics(y, timesteps, r, cc, running_mean, running_var, momentum, eps)
        has_w = weight is not None
        if heads:
            t_b_n = y.shape[:-1]  # [T, B, N]
            s = torch.empty(*t_b_n[:2], heads, t_b_n[2], cc // heads, device=dev, dtype=y.dtype)
            ntok = t_b_n[2]
        elif repeated:  # [T*B, C, H, W], channels-last
            n, _, hh, ww = y.shape
            s, ntok = torch.empty(timesteps * n, hh, ww, cc, device=dev, dtype=y.dtype).permute(0, 3, 1, 2), 1
        else:
            s, ntok = torch.empty_like(y), 1
        keep_h = any(ctx.needs_input_grad[:3])  # h - theta in y's dtype (float32 for float32 inputs: exact)
        h = torch.empty_like(s) if keep_h and not heads else (torch.empty_like(y) if keep_h else s)
        v_t = torch.empty(r, cc, device=dev, dtype=torch.float32)
        _fwd_kernel[_grid(r, cc)](
            y, mean, invstd, weight if has_w else mean, bias if has_w else mean, s, h, v_t, timesteps, r, cc,
            0 if repeated else r * cc, ntok, max(heads, 1), cc // max(heads, 1),
            a, b, c, theta, 0.0 if v_reset is None else v_reset, v0,
            HAS_W=has_w, SOFT=v_reset is None, HAS_C=c != 0.0, KEEP_H=keep_h, SPLIT=bool(heads),
            BR=_ROWS, BC=_COLS, num_warps=_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
        ctx.save_for_backward(y, h, mean, invstd, weight)
        ctx.params = (timesteps, heads, images, repeated, a, b, theta, v_reset, detach_reset, surrogate, alpha)
        ctx.mark_non_differentiable(v_t)
        return s, v_t

    @staticmethod
    def backward(ctx, grad_s, _grad_v):  # type: ignore[override]
        y, h, mean, invstd, weight = ctx.saved_tensors
        timesteps, heads, images, repeated, a, b, theta, v_reset, detach_reset, surrogate, alpha = ctx.params
        cc = mean.numel()
        r = h.numel() // (cc * timesteps)
        gs = _rows(grad_s, images)
        gz = torch.empty_like(h)  # one step per time step (like h), also for a repeated y
        iters = _iters(r, cc)
        grid = _grid(r, cc, iters)
        sums = torch.empty(2, grid[0], cc, device=y.device, dtype=torch.float32)
        _bwd_kernel[grid](
            h, gs, y, mean, invstd, gz, sums[0], sums[1], timesteps, r, cc, 0 if repeated else r * cc,
            y.shape[-2] if heads else 1, max(heads, 1), cc // max(heads, 1),
            a, b, theta, 0.0 if v_reset is None else v_reset, alpha,
            SOFT=v_reset is None, DETACH=detach_reset, KIND=triton_lif.SURROGATES[surrogate], SPLIT=bool(heads),
            BR=_ROWS, BC=_COLS, ITERS=iters, num_warps=_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
        grads = _input_grads(ctx, gz, y, mean, invstd, weight, sums, copies=timesteps if repeated else 1)
        return *grads, *([None] * 8)


def batch_norm(
    y: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
    images: bool = True,
) -> torch.Tensor:
    """Training-mode BatchNorm over the channels of ``y`` (``[N, C, H, W]`` with ``images``, channels-last read in
    place; else ``[..., C]``), with the statistics and backward kernels of ``bn_lif``: for a BatchNorm whose output
    something other than a neuron reads first (SpikingJelly's Spikformer max-pools it). Output like ``y`` (rows of
    channels), in ``y``'s dtype."""
    return _BatchNorm.apply(y, weight, bias, running_mean, running_var, momentum, eps, images)


def bn_lif(
    y: torch.Tensor,
    timesteps: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
    a: float,
    b: float,
    v_rest: float,
    theta: float,
    v_reset: float | None,
    detach_reset: bool,
    surrogate: str,
    alpha: float,
    heads: int = 0,
    images: bool = False,
    repeated: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode BatchNorm over the channels of ``y``, then a LIF/IF neuron from rest over ``timesteps`` steps.

    ``y``: ``[T, ..., C]``, or with ``images`` a convolution's ``[T*B, C, H, W]`` (channels-last is read in place).
    Neuron: ``h = a v + b z + (1 - a) v_rest``, threshold ``theta``, hard reset to ``v_reset`` (``None``: soft),
    surrogate ``surrogate`` with sharpness ``alpha`` (``spikeformer.functional.fused`` has the equations). ``heads``
    (``y`` ``[T, B, N, C]`` only): spikes ``[T, B, heads, N, C/heads]``. ``running_mean``/``running_var`` (``None``: not
    tracked) are updated in place with ``momentum``. Returns ``(spikes like y, or head-split; v_T float32 shaped like
    one step of the spikes, no gradient)``. ``repeated`` (with ``images``): ``y`` ``[B, C, H, W]`` is the layer output
    of an input repeated over the ``timesteps`` steps (direct encoding; the layer ran once instead of ``T`` times):
    the same spikes and gradients as for ``y`` repeated into ``[T*B, C, H, W]``, without that copy.
    """
    if repeated and not images:
        raise ValueError("repeated needs images=True (a convolution's output of the repeated input images)")
    if images and (y.dim() != 4 or heads or (y.shape[0] % timesteps and not repeated)):
        raise ValueError(f"images: y must be [T*B, C, H, W] with T = {timesteps} and no heads, got {list(y.shape)}")
    if heads and (y.dim() != 4 or y.shape[-1] % heads):
        raise ValueError(f"a head split needs y [T, B, N, C] with C divisible by heads, got {list(y.shape)}, {heads}")
    if y.numel() % (_channels(y, images) * timesteps) and not repeated:
        raise ValueError(f"y of shape {list(y.shape)} does not hold {timesteps} equal time steps")
    if surrogate not in triton_lif.SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; accepted: {sorted(triton_lif.SURROGATES)}")
    neuron = (a, b, (1.0 - a) * v_rest, theta, v_reset, detach_reset, surrogate, alpha, v_rest)
    layout = (heads, images, repeated)
    s, v_t = _BNLIF.apply(y, weight, bias, running_mean, running_var, timesteps, momentum, eps, neuron, layout)
    if images:  # rows of a channels-last [B, C, H, W] step
        n, c, hh, ww = s.shape
        return s, v_t.view(n // timesteps, hh, ww, c).permute(0, 3, 1, 2)
    if heads:
        return s, v_t.view(*s.shape[1:2], s.shape[3], heads, s.shape[4]).transpose(1, 2)
    return s, v_t.view(y.shape[1:])

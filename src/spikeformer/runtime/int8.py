"""Integer products for spike-fed layers (CPU inference, ``Runner(precision="int8")``).

A spiking layer's input is a spike (0/1) or a small sum of spikes: an exact int8 value. With the weights quantized
per output channel (``w ~ scale_o * q``, ``q`` int8, symmetric, ``scale_o = max|w_o| / 127``) the product runs as one
int8 x int8 -> int32 matrix product (``torch._int_mm``: oneDNN/VNNI on x86), exact in its accumulation; the only
error is the weights' rounding (at most ``scale_o / 2`` per weight). On our 2-core AMD EPYC (AVX-512 VNNI) a
[2048 x 384] x [384 x 1536] product takes about 10x less time than in float32.

``Int8Linear`` and ``Int8Conv2d`` check every input: when it is not integer-valued in [-128, 127] (an image into
the first convolution, a membrane-valued input) they run the float32 product instead, so nothing is ever wrong, only
slower. ``weight_terms=2`` adds a second int8 term for the rounding residual (about 15-bit weights, twice the work).
Agreement of the predictions with float32 is measured in ``bench/speed_cpu.py`` and ``tests/runtime/test_int8.py``
and stated in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.functional import kernels
from spikeformer.functional.linear import linear

__all__ = [
    "Int8Linear",
    "Int8Conv2d",
    "fuse_dequantize_into_neurons",
    "fuse_pooling_into_int8_convs",
    "int8_spiking_neurons",
    "to_int8",
    "quantize_per_channel",
    "shared_conversions",
]


def quantize_per_channel(w2d: torch.Tensor, terms: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``w2d [O, K]`` -> (``q [terms, K, O]`` int8, transposed for the product; ``scales [terms, O]`` float32)."""
    qs, scales = [], []
    residual = w2d.detach().float()
    for _ in range(terms):
        scale = residual.abs().amax(dim=1).clamp_min(1e-30) / 127.0
        q = torch.round(residual / scale[:, None]).clamp_(-127, 127)
        residual = residual - q * scale[:, None]
        qs.append(q.to(torch.int8).t().contiguous())
        scales.append(scale)
    return torch.stack(qs), torch.stack(scales)


_cache = threading.local()  # within ``shared_conversions()``: the latest conversion of this thread


@contextlib.contextmanager
def shared_conversions():
    """Within this block (one forward pass of the ``Runner``), a tensor that several int8 layers read is converted
    once: a Spikformer's Q, K and V layers read the same tensor. The cache holds the input itself (its memory cannot be
    reused while cached) and is emptied when the block ends; inference tensors carry no version counter, so an input
    changed in place between two layers within one pass would not be seen (no model here does that)."""
    _cache.on, _cache.entry = True, None
    try:
        yield
    finally:
        _cache.on, _cache.entry = False, None


def _as_int8(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` as int8 when every value is an integer in [-128, 127], else ``None``."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return None
    if not getattr(_cache, "on", False):
        return _convert(x)
    hit = _cache.entry
    if hit is not None and hit[0] is x:
        return hit[1]
    q = _convert(x)
    _cache.entry = (x, q)
    return q


def _convert(x: torch.Tensor) -> torch.Tensor | None:
    k = kernels.get()
    if k is not None:  # one pass
        q, ok = k.to_int8_exact(x)
        return q if ok else None
    q = x.to(torch.int8)  # truncates toward zero and wraps out-of-range values: compare to see if it was exact
    return q if torch.equal(q.float(), x) else None


class _Int8Layer(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, w2d: torch.Tensor, terms: int) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        q, s = quantize_per_channel(w2d, terms)
        self.register_buffer("qweight", q, persistent=False)
        self.register_buffer("scales", s, persistent=False)
        self.calls = {"int8": 0, "float": 0}

    def _product(self, x8: torch.Tensor, images: int = 0) -> torch.Tensor:
        """``x8 [M, K]`` int8 -> ``[M, O]`` float32 (bias added); ``images > 0``: ``[images, O, M / images]``."""
        k = kernels.get()
        if k is not None:
            acc = [torch._int_mm(x8, q) for q in self.qweight]
            bias = self.bias.detach() if self.bias is not None else torch.empty(0)
            return k.dequantize(acc, self.scales, bias, images)
        out = None
        for q, s in zip(self.qweight, self.scales, strict=True):
            term = torch._int_mm(x8, q).float() * s
            out = term if out is None else out + term
        out = out if self.bias is None else out + self.bias
        return out.reshape(images, -1, out.shape[1]).transpose(1, 2) if images else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = None if torch.is_grad_enabled() else self._int(x)
        if out is None:
            self.calls["float"] += 1
            return self._float(x)
        self.calls["int8"] += 1
        return out


class Int8Linear(_Int8Layer):
    def __init__(self, linear: nn.Linear, terms: int = 1) -> None:
        super().__init__(linear.weight, linear.bias, linear.weight, terms)
        self.__dict__["dense_equivalent"] = linear  # for the energy profiler; not a submodule
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.raw_out = False  # int32 accumulators out (``fuse_dequantize_into_neurons``)

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x.float() if x.dtype == torch.int8 else x, self.weight, self.bias)

    def _int(self, x: torch.Tensor) -> torch.Tensor | None:
        x8 = x if x.dtype == torch.int8 else _as_int8(x)  # int8 already: spikes from an int8-spiking neuron
        if x8 is None:
            return None
        rows = x8.reshape(-1, self.in_features)
        if self.raw_out:  # the neuron reading this layer scales the int32 accumulators itself
            return torch._int_mm(rows, self.qweight[0]).reshape(*x8.shape[:-1], self.out_features)
        return self._product(rows).reshape(*x8.shape[:-1], self.out_features)


class Int8Conv2d(_Int8Layer):
    """Ungrouped, undilated, zero-padded ``nn.Conv2d`` (any kernel, stride, padding) as im2col + int8 product."""

    def __init__(self, conv: nn.Conv2d, terms: int = 1) -> None:
        if not supports_conv(conv):
            raise ValueError(f"Int8Conv2d needs an ungrouped, undilated, zero-padded convolution, got {conv}")
        o, c, kh, kw = conv.weight.shape
        # rows ordered (dy, dx, c_in), matching the im2col below
        super().__init__(conv.weight, conv.bias, conv.weight.permute(0, 2, 3, 1).reshape(o, kh * kw * c), terms)
        self.__dict__["dense_equivalent"] = conv  # for the energy profiler; not a submodule
        self.kernel, self.stride, self.padding = (kh, kw), conv.stride, conv.padding
        self.out_channels = o
        self.pool: tuple[int, int, int] | None = None  # (k, stride, padding): max-pooling of the output, fused
        # int32 accumulators out, channels-last (``fuse_dequantize_into_neurons``): the neuron scales them as it reads
        self.raw_out = False

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x.float() if x.dtype == torch.int8 else x, self.weight, self.bias, self.stride, self.padding)
        return y if self.pool is None else F.max_pool2d(y, *self.pool)

    def _int(self, x: torch.Tensor) -> torch.Tensor | None:
        k = kernels.get()
        if x.dtype == torch.int8 and k is None:  # int8 spikes (an int8-spiking neuron) without the kernels
            x = x.float()
        if x.dtype not in (torch.float32, torch.int8) or x.device.type != "cpu":
            return None
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if k is not None:  # im2col (float32: with the exactness check) in one pass, NCHW written by the epilogue
            cols, ok = k.im2col_int8(x, kh, kw, sh, sw, ph, pw)
            if not ok:
                return None
            if self.pool is None and not self.raw_out:
                return self._product(cols, images=n).reshape(n, self.out_channels, ho, wo)
            acc = torch._int_mm(cols, self.qweight[0])  # [N*Ho*Wo, O]: channels-last rows
            if self.pool is not None:  # pool the int32 rows, then scale the pooled ones only
                acc = k.maxpool_int32_rows(acc, n, ho, wo, *self.pool)
                ho, wo = ((d + 2 * self.pool[2] - self.pool[0]) // self.pool[1] + 1 for d in (ho, wo))
            if self.raw_out:
                return acc.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)  # [N, O, Ho, Wo] channels-last
            bias = self.bias.detach() if self.bias is not None else torch.empty(0)
            return k.dequantize([acc], self.scales, bias, n).reshape(n, self.out_channels, ho, wo)
        if self.pool is not None:
            return None  # (the fused pooling needs the kernels; the float path pools)
        x8 = _as_int8(x)
        if x8 is None:
            return None
        xp = F.pad(x8.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # [N, H+2p, W+2p, C] (int8 zero padding)
        cols = torch.stack(
            [
                xp[:, dy : dy + sh * (ho - 1) + 1 : sh, dx : dx + sw * (wo - 1) + 1 : sw, :]
                for dy in range(kh)
                for dx in range(kw)
            ],
            dim=3,
        )  # [N, Ho, Wo, kh*kw, C]
        out = self._product(cols.reshape(n * ho * wo, kh * kw * c), images=n)
        return out.reshape(n, self.out_channels, ho, wo)


def supports_conv(conv: nn.Conv2d) -> bool:
    return (
        conv.groups == 1
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def int8_spiking_neurons(model: nn.Module) -> int:
    """Let every neuron that only int8 products read emit int8 spikes (in place): modules that know such neurons list
    them with ``int8_consumed_neurons()`` (a Spikformer also lists the neurons of its residual stream, which int8
    holds exactly); the product then reads the spikes as they are, without a float32 -> int8 pass. Returns how many
    neurons were switched."""
    n = 0
    for module in model.modules():
        for neuron in getattr(module, "int8_consumed_neurons", list)():
            neuron.int8_spikes = True
            n += 1
    return n


def fuse_dequantize_into_neurons(model: nn.Module) -> int:
    """Let each int8 linear layer or convolution that feeds a neuron directly hand it the raw int32 accumulators, the
    neuron applying the per-channel scale and bias while it reads them (in place): one pass over the layer's output
    instead of two. Modules list such pairs with ``linear_neuron_pairs() -> [(LinearBN, neuron)]`` and
    ``conv_neuron_pairs() -> [(ConvBN2d, neuron)]``; only single-term layers whose BatchNorm is folded (and whose
    stage pools nothing, or pools inside the convolution) are touched. A convolution's accumulators stay in
    channels-last memory, and so do the neuron's spikes (the next int8 im2col reads them as they are). When a layer's
    input is not exact int8 it still returns dequantized float32, and the neuron takes that as it is. Returns how many
    pairs were fused."""
    n = 0
    for module in model.modules():
        for stage, neuron in getattr(module, "conv_neuron_pairs", list)():
            conv = stage.conv
            if (
                isinstance(conv, Int8Conv2d)
                and isinstance(stage.bn, nn.Identity)
                and isinstance(stage.pool, nn.Identity)
                and conv.qweight.shape[0] == 1
                and kernels.available()
            ):
                conv.raw_out = True
                neuron.int32_scale = conv.scales[0].view(-1, 1, 1)  # channel axis 2 of [T, B, C, H, W]
                neuron.int32_bias = None if conv.bias is None else conv.bias.detach().view(-1, 1, 1)
                n += 1
        for stage, neuron in getattr(module, "linear_neuron_pairs", list)():
            lin = stage.linear
            if isinstance(lin, Int8Linear) and isinstance(stage.bn, nn.Identity) and lin.qweight.shape[0] == 1:
                lin.raw_out = True
                neuron.int32_scale = lin.scales[0]
                neuron.int32_bias = None if lin.bias is None else lin.bias.detach()
                n += 1
    return n


def fuse_pooling_into_int8_convs(model: nn.Module) -> int:
    """Let each single-term int8 convolution followed by max-pooling (``ConvBN2d(pool=True)`` with its BatchNorm
    folded: SpikingJelly's Spikformer pools before the neuron) pool its int32 accumulators and scale only the pooled
    ones (in place; the stage's own pooling becomes the identity). Same outputs: the per-channel scales are positive
    (``quantize_per_channel``), so scaling and adding the bias is non-decreasing in the accumulator and commutes with
    the maximum. Returns how many convolutions took their pooling."""
    from spikeformer.nn.layers import ConvBN2d
    from spikeformer.runtime.pool import FastMaxPool2d

    n = 0
    for stage in model.modules():
        if not (isinstance(stage, ConvBN2d) and isinstance(stage.bn, nn.Identity)):
            continue
        conv, pool = stage.conv, stage.pool
        if not (isinstance(conv, Int8Conv2d) and conv.qweight.shape[0] == 1 and bool((conv.scales > 0).all())):
            continue
        if isinstance(pool, FastMaxPool2d):
            conv.pool = (pool.k, pool.s, pool.p)
        elif isinstance(pool, nn.MaxPool2d) and pool.dilation == 1 and not pool.ceil_mode:
            conv.pool = (pool.kernel_size, pool.stride, pool.padding)
            if not all(isinstance(v, int) for v in conv.pool):
                conv.pool = None
                continue
        else:
            continue
        stage.pool = nn.Identity()
        n += 1
    return n


def to_int8(model: nn.Module, terms: int = 1) -> nn.Module:
    """Replace (in place) every ``nn.Linear`` and supported ``nn.Conv2d`` by its int8 twin; returns ``model``."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, terms))
        elif type(child) is nn.Conv2d and supports_conv(child):
            setattr(model, name, Int8Conv2d(child, terms))
        else:
            to_int8(child, terms)
    return model

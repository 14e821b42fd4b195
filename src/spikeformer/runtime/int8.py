"""Integer products for spike-fed layers (CPU inference, ``Runner(precision="int8")``).

A spiking layer's input is a spike (0/1) or a small sum of spikes: an exact int8 value. With the weights quantized
per output channel (``w ~ scale_o * q``, ``q`` int8, symmetric, ``scale_o = max|w_o| / 127``) the product runs as one
int8 x int8 -> int32 matrix product (``torch._int_mm``: oneDNN/VNNI on x86), exact in its accumulation; the only
error is the weights' rounding (at most ``scale_o / 2`` per weight). On CPUs with AVX-512 VNNI such a product is
several times faster than the float32 one (figures: ``docs/runtime.md``).

``Int8Linear`` and ``Int8Conv2d`` check every input: when it is not integer-valued in [-128, 127] (an image into
the first convolution, a membrane-valued input) they run the float32 product instead, so nothing is ever wrong, only
slower. ``weight_terms=2`` adds a second int8 term for the rounding residual (about 15-bit weights, twice the work).
Agreement of the predictions with float32 is measured in ``bench/speed_cpu.py`` and ``tests/runtime/test_int8.py``
and stated in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.functional.linear import linear
from spikeformer.kernels import cpu as kernels
from spikeformer.models.spikformer import SpikingSelfAttention
from spikeformer.nn.fused import bn_neuron

__all__ = [
    "Int8Linear",
    "Int8Conv2d",
    "fuse_dequantize_into_neurons",
    "fuse_pooling_into_int8_convs",
    "fuse_spiking_attention",
    "Int8SpikingSelfAttention",
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


log = logging.getLogger(__name__)
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
        # oneDNN's direct int8 convolution (no im2col rows in memory) for non-negative int8 inputs: faster than
        # im2col + product (docs/runtime.md), float32 out (same rounding as ``dequantize``: tested equal). Its weights
        # are packed per input shape (the kernel is chosen for the shape), the latest ``PACKED_SHAPES`` kept.
        self.use_onednn = terms == 1 and onednn_conv_available()
        self._packed: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._packed_lock = threading.Lock()

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
        if k is not None and self.use_onednn:
            x8 = x if x.dtype == torch.int8 else _convert(x)
            if x8 is None:
                return None
            if int(x8.min()) >= 0:  # spikes and sums of spikes: unsigned, as oneDNN's int8 convolution reads them
                try:
                    return self._onednn(k, x8.view(torch.uint8))
                except RuntimeError as e:  # a oneDNN build without this primitive for this CPU: im2col from now on
                    log.warning("oneDNN int8 convolution unavailable (%s); using im2col products", e)
                    self.use_onednn = False
            x = x8
        if k is not None:  # im2col (float32: with the exactness check) in one pass, NCHW written by the epilogue
            cols, ok = k.im2col_int8(x, kh, kw, sh, sw, ph, pw)
            if not ok:
                return None
            if self.pool is None and not self.raw_out:
                return self._product(cols, images=n).reshape(n, self.out_channels, ho, wo)
            acc = torch._int_mm(cols, self.qweight[0])  # [N*Ho*Wo, O]: channels-last rows
            if self.pool is not None:  # pool the int32 rows, then scale the pooled ones only
                acc = k.maxpool_rows(acc, n, ho, wo, *self.pool)
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

    def _onednn(self, k, u8: torch.Tensor) -> torch.Tensor:
        """oneDNN's int8 convolution of ``u8 [N, C, H, W]`` -> float32 ``[N, O, Ho, Wo]`` in channels-last memory
        (scaled, bias added, max-pooled when ``pool`` is set)."""
        u8 = u8.contiguous(memory_format=torch.channels_last)
        stride, padding = list(self.stride), list(self.padding)
        key = tuple(u8.shape)
        with self._packed_lock:
            packed = self._packed.get(key)
            if packed is None:
                qw = self.qweight[0].t().reshape(self.out_channels, *self.kernel, -1).permute(0, 3, 1, 2).contiguous()
                packed = torch.ops.onednn.qconv_prepack(
                    qw, self.scales[0], 1.0, 0, stride, padding, [1, 1], 1, list(key)
                )
                self._packed[key] = packed
                if len(self._packed) > PACKED_SHAPES:
                    self._packed.popitem(last=False)
            else:
                self._packed.move_to_end(key)
        bias = self.bias.detach() if self.bias is not None else None
        zero_points = torch.zeros(self.out_channels, dtype=torch.long)
        y = torch.ops.onednn.qconv2d_pointwise(
            u8, 1.0, 0, packed, self.scales[0], zero_points, bias, stride, padding, [1, 1], 1,
            1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip
        if self.pool is None:
            return y
        n, o, ho, wo = y.shape
        rows = k.maxpool_rows(y.permute(0, 2, 3, 1).reshape(-1, o), n, ho, wo, *self.pool)
        ho, wo = ((d + 2 * self.pool[2] - self.pool[0]) // self.pool[1] + 1 for d in (ho, wo))
        return rows.view(n, ho, wo, o).permute(0, 3, 1, 2)


PACKED_SHAPES = 16  # input shapes per convolution whose oneDNN-packed weights are kept (a few MB each at most)


def onednn_conv_available() -> bool:
    """Whether this torch has oneDNN's int8 convolution (x86 builds with mkldnn)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.onednn, "qconv_prepack")
        and hasattr(torch.ops.onednn, "qconv2d_pointwise")
    )


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


def _plain_neuron(neuron: nn.Module) -> bool:
    """A LIF/IF neuron whose inference the compiled kernels run as ``lif_forward`` would (no PLIF, no extra input)."""
    from spikeformer.nn.neuron import IF, LIF

    return (
        type(neuron) in (LIF, IF)
        and neuron.backend == "fused"
        and neuron.step_mode == "m"
        and neuron.input_bias is None
        and neuron.int32_scale is None
    )


def _neuron_row(neuron: nn.Module) -> list[float]:
    """``(a, b, c, theta, soft, v_reset, v0)`` of ``h_t = a v_{t-1} + b x_t + c`` (``spiking_attention``'s rows)."""
    from spikeformer.functional.fused import lif_coefficients
    from spikeformer.nn.neuron import LIF

    decay = 1.0 / neuron.tau if isinstance(neuron, LIF) else None
    a, b = lif_coefficients(decay, getattr(neuron, "decay_input", True))
    soft = neuron.v_reset is None
    return [a, b, (1.0 - a) * neuron.v_rest, neuron.v_threshold, float(soft), neuron.v_reset or 0.0, neuron.v_rest]


class Int8SpikingSelfAttention(SpikingSelfAttention):
    """Spikformer's spiking self-attention for int8 inference, holding the block's own modules under their names: one
    int8 product for Q, K and V together (weights side by side: ``[D, 3D]``), then one compiled kernel for the Q/K/V
    neurons, ``Q K^T V * scale`` and the attention neuron (``kernels.spiking_attention``), then the block's projection.
    Every spike equals the unfused path's (the products are integer counts there too); an input that is not exact int8
    runs the same kernel on the layers' float32 products.

    The four neurons' states are not kept (the model resets every state at the start of each forward pass). With
    ``count_spikes`` on, ``spike_counts`` holds the spikes of those four neurons per sample after each call
    (``Runner.run_with_stats``). With autograd on, a neuron not at rest, or hooks on the inner modules (the energy
    profiler's), the block runs as ``SpikingSelfAttention``.
    """

    def __init__(self, attention: SpikingSelfAttention) -> None:
        nn.Module.__init__(self)
        for name, child in attention.named_children():
            self.add_module(name, child)
        self.num_heads, self.scale, self.training = attention.num_heads, attention.scale, attention.training
        layers = [self.q.linear, self.k.linear, self.v.linear]
        self.register_buffer("qweight", torch.cat([lin.qweight[0] for lin in layers], dim=1), persistent=False)
        self.register_buffer("scales", torch.cat([lin.scales[0] for lin in layers]), persistent=False)
        biases = [lin.bias.detach() if lin.bias is not None else torch.zeros(lin.out_features) for lin in layers]
        self.register_buffer("bias", torch.cat(biases), persistent=False)  # x + 0.0 == x: exact where there was none
        rows = torch.tensor([_neuron_row(n) for n in self.fused_neurons()], dtype=torch.float64)
        self.register_buffer("neuron_rows", rows, persistent=False)
        self.count_spikes = False
        self.spike_counts: torch.Tensor | None = None

    def fused_neurons(self) -> list[nn.Module]:
        """The neurons the kernel runs in place of their modules (their forward hooks do not fire)."""
        return [self.q_neuron, self.k_neuron, self.v_neuron, self.attn_neuron]

    def _kernel_applies(self, x: torch.Tensor) -> bool:
        inner = [*self.fused_neurons(), self.q, self.k, self.v, self.q.linear, self.k.linear, self.v.linear]
        return (
            not torch.is_grad_enabled()
            and x.dim() == 4
            and x.device.type == "cpu"
            and all(n.v is None for n in self.fused_neurons())
            and not any(m._forward_hooks or m._forward_pre_hooks for m in inner)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = kernels.get()
        if k is None or not self._kernel_applies(x):
            return self._reference(x)
        t, b, n, d = x.shape
        x8 = x if x.dtype == torch.int8 else _as_int8(x)
        if x8 is not None:
            acc = torch._int_mm(x8.reshape(-1, d), self.qweight).view(t, b, n, 3 * d)
            scales, bias = self.scales, self.bias
        else:  # not exact int8: the unfused path's float32 products (each layer's own), the same kernel after them
            acc = torch.cat([stage.linear._float(x) for stage in (self.q, self.k, self.v)], dim=-1)
            scales, bias = torch.empty(0), torch.empty(0)
        y, counts = k.spiking_attention(
            acc, scales, bias, self.neuron_rows, self.num_heads, self.scale, self.count_spikes
        )
        self.spike_counts = counts if self.count_spikes else None
        return bn_neuron(self.proj, self.proj_neuron, y)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """``SpikingSelfAttention.forward``; with ``count_spikes``, the four fused neurons' spikes are counted."""
        if not self.count_spikes:
            self.spike_counts = None
            return super().forward(x)
        counts: list[torch.Tensor] = []

        def hook(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            counts.append(out.detach().flatten(2).sum(dim=(0, 2), dtype=torch.float64).round().long())

        handles = [n.register_forward_hook(hook) for n in self.fused_neurons()]
        try:
            y = super().forward(x)
        finally:
            for h in handles:
                h.remove()
        self.spike_counts = torch.stack(counts).sum(0)
        return y


def fuse_spiking_attention(model: nn.Module) -> int:
    """Replace (in place) each Spikformer ``SpikingSelfAttention`` whose Q, K and V layers are single-term int8 linear
    layers with folded BatchNorm, read by plain LIF/IF neurons, by ``Int8SpikingSelfAttention`` (needs the compiled
    kernels). Returns how many blocks were replaced."""
    if not kernels.available():
        return 0
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not SpikingSelfAttention:  # (an Int8SpikingSelfAttention already is one)
                continue
            stages = [child.q, child.k, child.v]
            if not all(
                isinstance(s.bn, nn.Identity)
                and isinstance(s.linear, Int8Linear)
                and s.linear.qweight.shape[0] == 1
                and not s.linear.raw_out
                for s in stages
            ):
                continue
            neurons = [child.q_neuron, child.k_neuron, child.v_neuron, child.attn_neuron]
            if not all(_plain_neuron(m) for m in neurons):
                continue
            setattr(parent, name, Int8SpikingSelfAttention(child))
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

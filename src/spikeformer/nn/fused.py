"""``neuron(layer(x))`` for a conv/linear + BatchNorm layer and the neuron that reads it, fused where it can be.

In training on CUDA a ``ConvBN2d`` or ``LinearBN`` whose BatchNorm normalises with batch statistics, followed by a
LIF or IF neuron on the ``fused`` backend that starts from rest, runs its BatchNorm and the neuron as the fused kernels
of ``spikeformer.kernels.triton_bn_lif`` (statistics, then normalise-and-fire in one pass; backward likewise).
A convolution whose input is repeated over the time steps (direct encoding: the first layer) runs once on one copy
(its BatchNorm statistics, spikes and gradients are those of the ``T`` copies). Everywhere else this is exactly
``neuron(layer(x))``. The neuron's final membrane is kept as its state either way
(without a gradient on the fused path: a model that back-propagates through the state across calls uses the
separate modules, e.g. the ``torch`` backend).
"""

from __future__ import annotations

import torch
from torch import nn

from spikeformer.functional.attention import split_heads
from spikeformer.functional.fused import lif_coefficients
from spikeformer.kernels import triton_bn_lif
from spikeformer.nn.layers import ConvBN2d, LinearBN, batch_statistics, count_batch, fold_time, unfold_time
from spikeformer.nn.neuron import IF, LIF, BaseNeuron

__all__ = ["bn_neuron"]


def _fusable(layer: ConvBN2d | LinearBN, neuron: BaseNeuron, x: torch.Tensor) -> bool:
    bn = getattr(layer, "bn", None)
    return (
        isinstance(layer, ConvBN2d | LinearBN)  # (a model may swap in other modules: they run as they are)
        and torch.is_grad_enabled()
        and triton_bn_lif.available(x)
        and batch_statistics(bn)
        and not (isinstance(layer, ConvBN2d) and not isinstance(layer.pool, nn.Identity))
        and type(neuron) in (LIF, IF)
        and neuron.backend == "fused"
        and neuron.step_mode == "m"
        and neuron.v is None
        and neuron.input_bias is None
        and neuron.surrogate.name in triton_bn_lif.triton_lif.SURROGATES
    )


def bn_neuron(layer: ConvBN2d | LinearBN, neuron: BaseNeuron, x: torch.Tensor, heads: int = 0) -> torch.Tensor:
    """``neuron(layer(x))`` on ``[T, B, ...]``; with ``heads`` (``LinearBN`` only) the heads are split between the two:
    spikes ``[T, B, heads, N, D/heads]``."""
    if not _fusable(layer, neuron, x):
        y = layer(x)
        return neuron(split_heads(y, heads) if heads else y)
    timesteps = x.shape[0]
    images = isinstance(layer, ConvBN2d)
    # an input repeated over time (direct encoding: a stride-0 time axis) goes through the convolution once
    repeated = images and timesteps > 1 and x.stride(0) == 0
    y = (layer.conv(x[0]) if repeated else layer.conv(fold_time(x))) if images else layer.linear(x)
    bn = layer.bn
    a, b = lif_coefficients(1.0 / neuron.tau, neuron.decay_input) if isinstance(neuron, LIF) else lif_coefficients(None)
    count_batch(bn)
    s, neuron.v = triton_bn_lif.bn_lif(
        y, timesteps, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps,
        a, b, neuron.v_rest, neuron.v_threshold, neuron.v_reset, neuron.detach_reset,
        neuron.surrogate.name, neuron.surrogate.alpha, heads=heads, images=images, repeated=repeated,
    )  # fmt: skip
    return unfold_time(s, timesteps) if images else s

"""BatchNorm folding for inference: ``BN(W x + b) = W' x + b'`` with ``W' = W g / s``, ``b' = (b - mu) g / s + beta``,
``s = sqrt(var + eps)``. Exact in real arithmetic; in float32 the outputs differ by rounding only (a membrane
potential sitting exactly on a threshold may then flip one spike, which ``tests/nn/test_fold.py`` bounds).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from spikeformer.nn.layers import ConvBN2d, LinearBN

__all__ = ["fold_batchnorm", "move_conv_bias_into_neurons"]


def _fold(layer: nn.Linear | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        layer.weight.mul_(scale.reshape(shape))
        new_bias = (bias - bn.running_mean) * scale + bn.bias.detach()
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias)
        else:
            layer.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every ``LinearBN`` / ``ConvBN2d`` BatchNorm into its weights (the model must be in eval mode)."""
    model = model if inplace else copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, LinearBN) and isinstance(m.bn, nn.BatchNorm1d):
            _fold(m.linear, m.bn)
            m.bn = nn.Identity()
        elif isinstance(m, ConvBN2d) and isinstance(m.bn, nn.BatchNorm2d):
            _fold(m.conv, m.bn)
            m.bn = nn.Identity()
    return model.eval()


def move_conv_bias_into_neurons(model: nn.Module) -> int:
    """Move the bias of each folded conv that feeds a neuron directly into that neuron's ``input_bias`` (in place).

    Modules that know such pairs list them with ``conv_neuron_pairs() -> [(ConvBN2d, neuron)]`` (max-pooling between
    the two is allowed: a per-channel constant commutes with a maximum). Only pairs whose BatchNorm is folded away are
    touched. cuDNN adds a conv bias in a separate pass over the output; the CUDA neuron kernel adds it while reading
    its input. Returns how many biases moved.
    """
    moved = 0
    for module in model.modules():
        for stage, neuron in getattr(module, "conv_neuron_pairs", list)():
            conv = stage.conv
            if isinstance(stage.bn, nn.Identity) and conv.bias is not None and neuron.input_bias is None:
                neuron.input_bias = conv.bias.detach().clone()
                conv.bias = None
                moved += 1
    return moved

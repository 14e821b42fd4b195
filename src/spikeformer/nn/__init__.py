"""Modules over ``spikeformer.functional``: stateful base, neurons (and their registry), surrogates, quantized
activations, time-folding layers."""

from spikeformer.nn.base import StatefulModule, detach_states, reset_states, set_step_mode
from spikeformer.nn.fold import fold_batchnorm
from spikeformer.nn.layers import ConvBN2d, LinearBN, SeqToANN
from spikeformer.nn.neuron import (
    CONVERTED_NEURONS,
    IF,
    LIF,
    NEURON_BACKENDS,
    NEURON_REGISTRY,
    NEURONS,
    PLIF,
    STBIF,
    BaseNeuron,
    NeuronKind,
    QuantIF,
    make_neuron,
    set_backend,
)
from spikeformer.nn.quant import QCFS
from spikeformer.nn.surrogate import ATan, FastSigmoid, Sigmoid, Surrogate, make_surrogate

__all__ = [
    "ATan",
    "BaseNeuron",
    "CONVERTED_NEURONS",
    "ConvBN2d",
    "FastSigmoid",
    "IF",
    "LIF",
    "LinearBN",
    "NEURONS",
    "NEURON_BACKENDS",
    "NEURON_REGISTRY",
    "NeuronKind",
    "PLIF",
    "QCFS",
    "QuantIF",
    "STBIF",
    "SeqToANN",
    "Sigmoid",
    "StatefulModule",
    "Surrogate",
    "detach_states",
    "fold_batchnorm",
    "make_neuron",
    "make_surrogate",
    "reset_states",
    "set_backend",
    "set_step_mode",
]

"""Modules over ``spikeformer.functional``: stateful base, neurons, surrogates, time-folding layers."""

from spikeformer.nn.base import StatefulModule, detach_states, reset_states, set_step_mode
from spikeformer.nn.fold import fold_batchnorm
from spikeformer.nn.layers import ConvBN2d, LinearBN, SeqToANN
from spikeformer.nn.neuron import IF, LIF, NEURON_BACKENDS, NEURONS, PLIF, BaseNeuron, make_neuron, set_backend
from spikeformer.nn.surrogate import ATan, FastSigmoid, Sigmoid, Surrogate, make_surrogate

__all__ = [
    "ATan",
    "BaseNeuron",
    "ConvBN2d",
    "FastSigmoid",
    "IF",
    "LIF",
    "LinearBN",
    "NEURONS",
    "NEURON_BACKENDS",
    "PLIF",
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

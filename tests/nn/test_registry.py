"""One registry of neuron kinds: every kind builds, and the lists each context accepts are derived from it."""

import pytest
import torch

from spikeformer.nn import (
    CONVERTED_NEURONS,
    IF,
    LIF,
    NEURON_REGISTRY,
    NEURONS,
    PLIF,
    QCFS,
    STBIF,
    BaseNeuron,
    QuantIF,
    make_neuron,
)


def test_trained_and_converted_lists_come_from_the_registry():
    assert NEURONS == {"lif": LIF, "if": IF, "plif": PLIF}
    assert list(NEURONS) == ["lif", "if", "plif"]
    assert CONVERTED_NEURONS == ("if", "st-bif")
    assert NEURON_REGISTRY["if"].converted is QuantIF and NEURON_REGISTRY["st-bif"].converted is STBIF
    assert {k.coding for k in NEURON_REGISTRY.values() if k.converted} == {"rate", "accumulation"}
    assert all(name == kind.name for name, kind in NEURON_REGISTRY.items())


@pytest.mark.parametrize("name", list(NEURON_REGISTRY))
def test_every_kind_builds_a_neuron_that_fires(name):
    kind = NEURON_REGISTRY[name]
    assert kind.trained or kind.converted, f"{name} is built nowhere"
    built = [c() for c in (kind.trained, kind.converted) if c is not None]
    if kind.trained is not None:
        built.append(make_neuron(name))
        assert type(built[-1]) is kind.trained
    x = torch.full((6, 2, 3), 1.5)  # above every default threshold, also after the LIF input decay
    for neuron in built:
        assert isinstance(neuron, BaseNeuron)
        spikes = neuron(x)
        assert spikes.shape == x.shape and spikes.abs().sum() > 0, f"{type(neuron).__name__} never fired"


def test_old_names_still_name_the_same_lists():
    from spikeformer.convert.converter import NEURONS as CONVERTER_NEURONS
    from spikeformer.models.vit_relu import NEURON_KINDS

    assert NEURON_KINDS == CONVERTER_NEURONS == CONVERTED_NEURONS


def test_moved_modules_are_importable_from_vit_relu_with_a_warning():
    import spikeformer.models.vit_relu as vit_relu

    for name, cls in (("QCFS", QCFS), ("QuantIF", QuantIF), ("STBIF", STBIF)):
        with pytest.warns(DeprecationWarning, match=f"vit_relu.{name} moved to spikeformer.nn"):
            assert getattr(vit_relu, name) is cls
    with pytest.warns(DeprecationWarning):
        from spikeformer.models.vit_relu import QCFS as Old
    assert Old is QCFS
    with pytest.raises(AttributeError):
        vit_relu.NoSuchName  # noqa: B018

import pytest
import torch

import spikeformer
from spikeformer.models import model_defaults
from spikeformer.nn import BaseNeuron

# The spiking families; the ANN entries built for conversion (spiking=False) are tested in test_vit_relu.py.
ALL = [n for n in spikeformer.list_models() if model_defaults(n).get("spiking", True)]

# Parameter counts published with each architecture (millions, rounded as in the Spikformer and Spike-driven
# Transformer papers).
PAPER_PARAMS = {
    "spikformer-4-256": 4.15,
    "spikformer-2-384": 5.76,
    "spikformer-4-384": 9.32,
    "spikformer-8-384": 16.81,
    "spikformer-8-512": 29.68,
    "spikformer-8-768": 66.34,
    "sdt-8-768": 66.34,
}


def _small(name: str) -> torch.nn.Module:
    """The registry entry with its family's layers at a size a CPU test can afford."""
    d = model_defaults(name)
    return spikeformer.create_model(
        name,
        img_size=32,
        in_chans=3,
        embed_dim=32,
        depth=1,
        num_heads=4,
        num_classes=7,
        timesteps=2,
        pool_stages=d["pool_stages"],
    )


def test_registry_lists_every_family():
    for n in [
        "spikformer-4-384",
        "spikformer-2-384",
        "spikformer-4-256",
        "spikformer-8-384",
        "spikformer-8-512",
        "spikformer-8-768",
        "spikeformer-vit-base",
        "sdt-8-384",
        "sdt-8-512",
        "sdt-8-768",
    ]:
        assert n in ALL
    assert spikeformer.list_models("sdt-*") == ["sdt-8-384", "sdt-8-512", "sdt-8-768"]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_papers(name):
    model = spikeformer.create_model(name)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(millions - PAPER_PARAMS[name]) <= 0.011, millions


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = _small(name)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_sequence_input_equals_repeated_images(name):
    torch.manual_seed(0)
    model = _small(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x)
        b = model(x.unsqueeze(0).repeat(2, 1, 1, 1, 1))
        c = model(x)  # state is reset between calls
    assert torch.equal(a, b) and torch.equal(a, c)


def test_fashion_mnist_variant_geometry():
    model = spikeformer.create_model(
        "spikformer-4-384", img_size=28, in_chans=1, num_classes=10, embed_dim=64, depth=1, num_heads=4
    )
    assert model.config.num_tokens == 49
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_attention_neuron_uses_half_threshold():
    model = _small("spikformer-4-384")
    assert model.blocks[0].attn.attn_neuron.v_threshold == 0.5
    assert model.blocks[0].attn.q_neuron.v_threshold == 1.0
    assert model.blocks[0].attn.scale == 0.125


def test_spike_driven_attention_multiplies_only_spikes():
    """Every tensor multiplied in SDSA is binary: check by hooking the inputs of the product."""
    torch.manual_seed(0)
    model = _small("sdt-8-384").eval()
    seen = []
    for m in model.modules():
        if isinstance(m, BaseNeuron):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32) * 4)
    assert seen and all(bool(((s == 0) | (s == 1)).all()) for s in seen)
    attn = model.blocks[0].attn
    assert attn.kv_neuron.v_threshold == 0.5


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.rand(3, 32, 32), "rank 3"),
        (torch.rand(2, 1, 32, 32), "3 input channel"),
        (torch.rand(2, 3, 28, 28), "32x32"),
        (torch.rand(1, 2, 1, 3, 32, 32), "rank 6"),
    ],
)
def test_bad_input_is_a_clear_value_error(x, match):
    model = _small("spikformer-4-384")
    with pytest.raises(ValueError, match=match) as e:
        model(x)
    assert "accepted" in str(e.value) or "expected" in str(e.value)


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean 'spikformer-4-384'"):
        spikeformer.create_model("spikformer-4-38")


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"timesteps": 0}, "timesteps"),
        ({"embed_dim": 100}, "multiple of 8"),
        ({"num_heads": 7}, "divisible"),
        ({"colour": 1}, "unknown argument"),
        ({"neuron": "hh"}, "neuron"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        spikeformer.create_model("spikformer-4-384", **overrides)


def test_config_round_trip():
    model = spikeformer.create_model("sdt-8-384", img_size=28, in_chans=1)
    cfg = type(model.config).from_dict(model.config.to_dict())
    assert cfg == model.config

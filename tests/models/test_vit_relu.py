"""The convertible ReLU ViT family: every entry (ANN, spiking twin, softmax baseline) runs forward and backward."""

from __future__ import annotations

import pytest
import torch

import spikeformer
from spikeformer.models import ReLUViT, model_defaults
from spikeformer.nn.neuron import QuantIF
from spikeformer.nn.quant import QCFS

ENTRIES = [n for n in spikeformer.list_models() if not model_defaults(n).get("spiking", True)]
SMALL = dict(img_size=16, in_chans=3, num_classes=7, patch_size=4, embed_dim=32, depth=1, num_heads=4)


def test_registry_has_the_convertible_entries():
    assert {"vit-tiny-relu", "vit-small-relu", "vit-relu-fmnist", "vit-softmax-fmnist"} <= set(ENTRIES)
    cfg = spikeformer.create_model("vit-relu-fmnist").config
    assert (cfg.img_size, cfg.num_tokens, cfg.embed_dim, cfg.block) == ((28, 28), 49, 96, "relu")
    assert spikeformer.create_model("vit-tiny-relu").config.num_tokens == 196


# every entry as an ANN, and as its spiking twin where it has one (the softmax baseline has none: tested below)
CASES = [(n, False) for n in ENTRIES] + [(n, True) for n in ENTRIES if model_defaults(n).get("block") != "softmax"]


@pytest.mark.parametrize("name,spiking", CASES)
def test_forward_backward_every_entry(name, spiking):
    torch.manual_seed(0)
    extra = {"spiking": True, "timesteps": 3} if spiking else {}
    model = spikeformer.create_model(name, **SMALL, **extra)
    out = model(torch.rand(2, 3, 16, 16) * 3)
    assert out.shape == (2, 7)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    kinds = {type(m) for m in model.modules()}
    if model_defaults(name).get("block") == "softmax":
        assert {torch.nn.LayerNorm, torch.nn.Softmax, torch.nn.GELU} <= kinds
    else:
        assert (QuantIF if spiking else QCFS) in kinds and torch.nn.LayerNorm not in kinds
        assert (torch.nn.BatchNorm1d in kinds) is not spiking  # the twin has BatchNorm folded away


def test_qcfs_levels_and_straight_through_gradients():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.1, 0.3, 1.0, 1.9, 2.5], requires_grad=True)
    y = act(x)
    assert y.tolist() == [0.0, 0.0, 0.5, 1.0, 2.0, 2.0]  # lambda/L * clip(floor(x L / lambda + 1/2), 0, L)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # 1 inside (0, lambda)
    # d/dlambda: floor(u)/L - x/lambda inside, 1 at the clip, 0 below
    expected = 0 + (0 - 0.05) + (0.25 - 0.15) + (0.5 - 0.5) + (1.0 - 0.95) + 1.0
    assert float(act.threshold.grad) == pytest.approx(expected)


def test_twin_repeats_the_image_and_resets_between_calls():
    torch.manual_seed(0)
    model = spikeformer.create_model("vit-relu-fmnist", **SMALL, spiking=True, timesteps=4).eval()
    x = torch.rand(2, 3, 16, 16) * 3
    with torch.no_grad():
        a, b, c = model(x), model(x.unsqueeze(0).repeat(4, 1, 1, 1, 1)), model(x)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_ann_given_a_sequence_averages_its_steps():
    torch.manual_seed(0)
    model = spikeformer.create_model("vit-relu-fmnist", **SMALL).eval()
    x = torch.rand(3, 2, 3, 16, 16)
    with torch.no_grad():
        expected = torch.stack([model(x[t]) for t in range(3)]).mean(0)
        assert torch.allclose(model(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"timesteps": 4}, "ANN .* runs once"),
        ({"block": "softmax", "spiking": True, "timesteps": 4}, "no spiking twin"),
        ({"img_size": 30}, "divisible by patch_size"),
        ({"block": "gelu"}, "block must be one of"),
        ({"levels": 0}, "levels"),
        ({"neuron": "lif"}, "neuron must be one of"),
        ({"colour": 1}, "unknown argument"),
    ],
)
def test_bad_configurations_are_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        spikeformer.create_model("vit-relu-fmnist", **overrides)


def test_config_round_trip_and_spike_plan_names_real_modules():
    model = spikeformer.create_model("vit-relu-fmnist", depth=2)
    assert isinstance(model, ReLUViT)
    assert type(model.config).from_dict(model.config.to_dict()) == model.config
    twin = spikeformer.create_model("vit-relu-fmnist", depth=1, spiking=True, timesteps=3, neuron="st-bif")
    assert type(twin.config).from_dict(twin.config.to_dict()) == twin.config and twin.config.cumulative
    names = dict(model.named_modules())
    for consumer, source in model.spike_sources().items():
        assert consumer in names and isinstance(names[source], QCFS)
    buffers = dict(model.named_buffers())
    for buf, (a, b) in model.product_operands().items():
        assert buf in buffers and isinstance(names[a], QCFS) and isinstance(names[b], QCFS)

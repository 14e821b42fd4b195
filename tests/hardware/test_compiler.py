"""Lowering, fixed-point compilation, the emulators and placement."""

from __future__ import annotations

import pytest
import torch

from spikeformer import create_model
from spikeformer.hardware import (
    QuantConfig,
    QuantizationError,
    UnsupportedLayerError,
    compile_model,
    get_target,
    lower_model,
    quantize_graph,
    run_graph,
    run_program,
)
from spikeformer.nn import reset_states
from support import tiny_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(timesteps=2)


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(3)
    return torch.randn(8, 1, 28, 28)


def test_lowering_reproduces_the_torch_model(tiny, x):
    reset_states(tiny)
    with torch.no_grad():
        ref = tiny(x)
    graph = lower_model(tiny)
    assert torch.allclose(run_graph(graph, x), ref, atol=1e-5)
    ops = {n.op for n in graph}
    assert {"ssa", "readout", "orpool", "lif"} <= ops


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_high_precision_integer_program_matches_the_float_model(tiny, x, target):
    """With wide formats the integer arithmetic itself must not change a prediction."""
    spec = get_target(target).with_overrides(membrane_bits=48, threshold_shift=0)
    cfg = QuantConfig(weight_bits=24, threshold_bits=32, input_bits=28, input_max_abs=6.0, weight_splits=1)
    prog = quantize_graph(lower_model(tiny), spec, cfg)
    ref = run_graph(lower_model(tiny), x, torch.float64)
    assert torch.equal(run_program(prog, x).logits.argmax(1), ref.argmax(1))


def test_integer_neuron_is_bit_exact_to_its_description():
    """Hand-computed Loihi-style LIF: v <- trunc(v * (4096 - 2048) / 4096) + in; spike v > vth; reset 0."""
    from spikeformer.hardware.emulator import _int_neuron

    p = {"decay_unity": 4096, "dv": 2048, "vth": 100, "v_max": 2**23 - 1}
    x = torch.tensor([[61.0], [61.0], [-7.0], [150.0], [-301.0]])
    # v: 61 -> 30+61=91 -> 45-7=38 -> 19+150=169 (spike, reset 0) -> -301
    assert _int_neuron(p, x).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    x = torch.tensor([[-301.0], [0.0]])  # trunc toward zero: -301 -> -150, never -151
    p["vth"] = -151
    assert _int_neuron(p, x).flatten().tolist() == [0.0, 1.0]


def test_weights_are_8_bit_mantissas_with_a_shared_exponent(tiny):
    prog = quantize_graph(lower_model(tiny), get_target("loihi2"), QuantConfig(weight_splits=1))
    p = prog.params["blocks.0.attn.q"]
    assert p["weight"].abs().max() <= 127 and p["weight"].abs().max() >= 64
    assert p["exp"].unique().numel() == 1  # one exponent per layer
    per_channel = quantize_graph(lower_model(tiny), get_target("loihi2"), QuantConfig(exponent="channel"))
    assert per_channel.params["blocks.0.attn.q"]["exp"].unique().numel() > 1


def test_compile_places_attention_on_the_processor_for_spikformer(tiny, x):
    res = compile_model(tiny, "loihi2", samples=x[:2])
    d = res.to_dict()
    assert d["ok"] and d["cores_used"] > 0 and d["chips_used"] >= 1
    where = {lp["name"]: lp["where"] for lp in d["layers"]}
    assert where["blocks.0.attn.qkv_product"] == "embedded"
    assert where["head"] == "host" and where["blocks.0.attn.q_neuron"] == "cores"
    assert d["energy"]["assumed"] and "not public" in d["energy"]["note"]
    assert any("unverified" in a for a in d["assumptions"])
    for core in d["cores"]:
        assert core["memory_bytes"] <= 128 * 1024
    # every node of the graph appears in the report: nothing is dropped silently
    graph = lower_model(tiny)
    shown = {lp["name"] for lp in d["layers"]}
    assert {n.name for n in graph if n.op not in ("conv2d", "linear", "scale", "tokens", "flatten")} <= shown


def test_spike_driven_attention_maps_to_cores():
    m = create_model("sdt-8-384", img_size=16, embed_dim=32, depth=1, num_heads=4, num_classes=10,
                     pool_stages=(False, False, True, True), timesteps=2).eval()  # fmt: skip
    d = compile_model(m, "loihi2").to_dict()
    where = {lp["name"]: lp["where"] for lp in d["layers"]}
    for part in ("k_and_v", "kv_neuron", "q_and_kv"):
        assert where[f"blocks.0.attn.{part}"] == "cores"
    assert "embedded" not in {where[k] for k in where if ".attn." in k}


def test_too_few_chips_is_a_violation_naming_the_layer(tiny):
    res = compile_model(tiny, get_target("loihi2").with_overrides(cores_per_chip=2), chips=1)
    assert not res.ok
    assert "--chips 1" in res.violations[0] and "largest layer is" in res.violations[0]


def test_a_neuron_that_cannot_fit_names_the_limit(tiny):
    res = compile_model(tiny, get_target("loihi2").with_overrides(memory_per_core_bytes=16))
    assert not res.ok and any("memory per core" in v for v in res.violations)


def test_unsupported_layer_is_named():
    from torch import nn

    from spikeformer.nn import LIF

    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), LIF())
    with pytest.raises(UnsupportedLayerError, match=r"layer 1: LayerNorm"):
        lower_model(net, input_shape=(4,))


def test_spike_driven_lowering_reproduces_the_model_and_runs_in_integers():
    torch.manual_seed(0)
    m = create_model("sdt-8-384", img_size=16, embed_dim=32, depth=1, num_heads=4, num_classes=10,
                     pool_stages=(False, False, True, True), timesteps=2).eval()  # fmt: skip
    with torch.no_grad():  # an untrained model is nearly silent: strengthen it so every stage spikes
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.mul_(30)
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.mul_(4)
    x = torch.randn(16, 3, 16, 16)
    reset_states(m)
    with torch.no_grad():
        ref = m(x)
    graph = lower_model(m)
    assert torch.allclose(run_graph(graph, x), ref, atol=1e-5)
    res = run_program(quantize_graph(graph, get_target("loihi2"), QuantConfig(input_max_abs=5.0)), x)
    for layer in ("patch_embed.rpe_neuron", "blocks.0.attn.kv_neuron", "blocks.0.mlp.fc2_neuron"):
        assert res.spikes[layer] > 0, layer
    assert (res.logits.argmax(1) == ref.argmax(1)).float().mean() >= 0.9


def test_non_finite_weights_are_rejected_by_name(tiny):
    graph = lower_model(tiny)
    graph.nodes["blocks.0.attn.q"].params["weight"][0, 0] = float("nan")
    with pytest.raises(QuantizationError, match=r"blocks.0.attn.q: its weight holds inf or NaN"):
        quantize_graph(graph, get_target("loihi2"))

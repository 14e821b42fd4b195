"""The profiler on every registered model: outputs unchanged, MACs only where inputs are not spikes, totals add up."""

from __future__ import annotations

import json

import pytest
import torch

import spikeformer
from spikeformer.energy import OpCounter, profile
from spikeformer.models import model_defaults


# Spiking families only: the ANN entries built for conversion (spiking=False) are profiled in tests/convert.
@pytest.mark.parametrize("name", [n for n in spikeformer.list_models() if model_defaults(n).get("spiking", True)])
def test_profile_every_registered_model(name, small_model, images, small):
    model = small_model(name)
    x = images(model)
    with torch.no_grad():
        expected = model(x)
    report = profile(model, x)
    assert torch.equal(report.output, expected)  # hooks leave the outputs bit-identical
    assert (report.timesteps, report.batch_size) == (small["timesteps"], 2)

    first = report.layers[0]
    c_in = model.config.in_chans
    assert (first.name, first.input_kind) == ("patch_embed.stages.0.conv", "real")
    assert first.flops == (small["embed_dim"] // 8) * 32 * 32 * c_in * 9
    assert first.macs == small["timesteps"] * 2 * first.flops  # charged as MACs at every step

    for row in report.mac_layers:  # every MAC is explained, and only non-spike inputs get MACs
        assert row.input_kind == "real" and row.reason
    allowed = {"patch_embed.stages.0.conv", "head"} if name.startswith("spik") else {"patch_embed.stages.0.conv"}
    assert {r.name for r in report.mac_layers} <= allowed
    for row in report.layers:
        if row.kind == "linear" and row.input_kind in ("binary", "count"):
            assert row.sops == pytest.approx(row.rate_sops)  # events * fan-out == fr * T * FLOPs
    assert report.total_spikes > 0 and report.total_sops > report.total_attention_sops > 0
    assert report.energy("cmos45nm") == pytest.approx(4.6e-12 * report.total_macs + 0.9e-12 * report.total_sops)
    assert report.ann_energy("cmos45nm") == pytest.approx(4.6e-12 * report.ann_flops)
    assert report.energy_ratio("cmos45nm") == pytest.approx(report.ann_energy("cmos45nm") / report.energy("cmos45nm"))
    json.dumps(report.to_dict(), allow_nan=False)


def test_spikformer_token_sums_are_counts_charged_as_accumulates(small_model, images):
    model = small_model("spikformer-4-384")
    x = images(model)
    acc = profile(model, x)
    q = acc.layer("blocks.0.attn.q.linear")  # reads SPS tokens: spike + spike in {0, 1, 2}
    assert q.input_kind == "count" and q.max_input == 2.0
    assert q.sops == q.events * 32 and q.events > q.nonzero  # a value-2 input is 2 accumulates
    mac = profile(model, x, integer_inputs="mac")
    assert mac.layer("blocks.0.attn.q.linear").macs == mac.layer("blocks.0.attn.q.linear").dense_macs
    assert mac.total_macs > acc.total_macs and torch.equal(mac.output, acc.output)


def test_spike_driven_linears_all_read_spikes(small_model, images):
    report = profile(small_model("sdt-8-384"), images(small_model("sdt-8-384")))
    linears = [r for r in report.layers if r.kind == "linear"]
    assert linears and all(r.input_kind == "binary" for r in linears)
    assert report.layer("blocks.0.attn.kv").mask_ops > 0


def test_hooks_removed_and_training_flag_restored(small_model, images):
    model = small_model("spikformer-4-384").train()
    x = images(model)
    profile(model, x)
    assert model.training
    model.eval()
    with torch.no_grad():
        a = model(x)
    with OpCounter(model), torch.no_grad():
        b = model(x)
    with torch.no_grad():
        c = model(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not any(m._forward_hooks for m in model.modules())


def test_per_inference_totals_divide_by_batch(small_model, images):
    model = small_model("sdt-8-384")
    one = profile(model, images(model, n=1))
    two = profile(model, torch.cat([images(model, n=1)] * 2))
    assert two.total_sops == one.total_sops and two.total_macs == one.total_macs
    assert two.layers[0].macs == 2 * one.layers[0].macs

"""``spikeformer convert``: one JSON object, checkpoints the pipeline serves, a PNG, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spikeformer import load_pipeline
from spikeformer.cli import app
from spikeformer.convert.converter import parse_timesteps

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["convert", *args])


@pytest.mark.parametrize("neuron", [None, "if", "st-bif"])
def test_convert_sweep_prints_one_json_object_and_saves_checkpoints(digits_ann_checkpoint, tmp_path, neuron):
    ann = digits_ann_checkpoint()
    out = tmp_path / "out"
    r = _run(
        "--checkpoint",
        str(ann),
        "--timesteps",
        "4,2",
        "--dataset",
        "digits",
        "--limit-test",
        "40",
        "--calibration-samples",
        "64",
        "--energy-samples",
        "2",
        "--output",
        str(out),
        "--json",
        *(["--neuron", neuron] if neuron else []),
    )
    assert r.exit_code == 0, r.output
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert 0 <= d["ann_top1"] <= 1 and d["num_test"] == 40
    assert d["neuron"] == (neuron or "st-bif")  # the command's default: signed neurons
    assert [row["timesteps"] for row in d["results"]] == [2, 4]
    for row in d["results"]:
        assert set(row) >= {"timesteps", "top1", "agreement", "energy_j", "checkpoint"}
        assert 0 <= row["agreement"] <= 1 and row["energy_j"] > 0
        pipe = load_pipeline(row["checkpoint"])  # sha256 verified, rebuilt from the manifest's config
        assert pipe.manifest.config["spiking"] is True and pipe.manifest.timesteps == row["timesteps"]
        assert pipe.manifest.config["neuron"] == d["neuron"] == pipe.manifest.training["neuron"]
        assert pipe.manifest.training["converted_from"] == str(ann)
        assert pipe.manifest.metrics["top1"] == pytest.approx(row["top1"])
        # the sweep (one run at the largest T) agrees with serving each checkpoint through the pipeline
        from spikeformer.data import load_dataset

        test = load_dataset("digits", "test")
        served = pipe.predict(test.images[:40])
        assert float((served == test.labels[:40]).float().mean()) == pytest.approx(row["top1"], abs=1 / 40)
    assert d["results"][1]["energy_j"] > d["results"][0]["energy_j"]  # twice the steps, more operations
    assert Path(d["files"]["png"]).stat().st_size > 1000
    assert json.loads((out / "conversion.json").read_text())["results"] == d["results"]


def test_convert_refuses_softmax_layernorm_checkpoint_naming_layers(digits_ann_checkpoint):
    ckpt = digits_ann_checkpoint(block="softmax", name="softmax")
    r = _run("--checkpoint", str(ckpt), "--timesteps", "4", "--dataset", "digits", "--json")
    assert r.exit_code != 0 and "Traceback" not in r.output
    d = json.loads(r.stdout)
    assert d["ok"] is False
    for layer in ("blocks.0.attn.softmax (Softmax)", "blocks.0.attn.norm (LayerNorm)", "blocks.0.mlp.act (GELU)"):
        assert layer in d["error"]


@pytest.mark.parametrize(
    "args,match",
    [
        (["--timesteps", "4,x"], "comma-separated integers"),
        (["--timesteps", "0"], "between 1 and"),
        (["--method", "robust"], "accepted: qcfs, max, percentile"),
        (["--neuron", "lif"], "accepted: if, st-bif"),
        (["--percentile", "120"], "percentile"),
        (["--dataset", "fashion-mnist"], "takes [1, 8, 8]"),
    ],
)
def test_bad_arguments_are_clear_errors(digits_ann_checkpoint, args, match, monkeypatch, tmp_path):
    ckpt = digits_ann_checkpoint()
    r = _run("--checkpoint", str(ckpt), "--dataset", "digits", *args, "--output", str(tmp_path / "o"), "--json")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert match in json.loads(r.stdout)["error"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    r = _run("--checkpoint", str(tmp_path / "nope"), "--json")
    assert r.exit_code != 0 and "does not exist" in json.loads(r.stdout)["error"]


def test_parse_timesteps_sorts_and_dedups():
    assert parse_timesteps("64, 4,8,4") == [4, 8, 64]

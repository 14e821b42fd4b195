"""``spikeformer profile``: one JSON object on stdout, the files it writes, clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from spikeformer.cli import app

runner = CliRunner()
SMALL_ARGS = ["--arg", "img_size=32", "--arg", "embed_dim=32", "--arg", "depth=1", "--arg", "num_heads=4"]
SMALL_ARGS += ["--arg", "timesteps=2"]


def _one_json(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_profile_model_json_and_files(tmp_path):
    out = tmp_path / "prof"
    args = ["profile", "--model", "spikformer-4-384", *SMALL_ARGS, "--samples", "2", "--output", str(out), "--json"]
    r = runner.invoke(app, [*args, "--hardware", "cmos45nm,loihi2"])
    assert r.exit_code == 0, r.stderr
    d = _one_json(r)
    assert d["ok"] is True and "RANDOM weights" in d["weights"] and "RANDOM" in r.stderr
    assert (d["model"], d["timesteps"], d["batch_size"]) == ("spikformer-4-384", 2, 2)
    assert set(d["energy"]) == {"cmos45nm", "loihi2"} and d["energy"]["loihi2"]["assumed"] is True
    assert d["energy"]["cmos45nm"]["ratio"] > 1
    assert json.loads((out / "profile.json").read_text())["totals_per_inference"] == d["totals_per_inference"]
    for name in ("firing_rates.png", "energy.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_profile_dataset_images_and_table(tmp_path):
    args = ["profile", "--model", "spikformer-2-128-fmnist", "--arg", "img_size=8", "--arg", "embed_dim=32"]
    args += ["--arg", "depth=1", "--arg", "num_heads=4", "--arg", "timesteps=2", "--dataset", "digits"]
    r = runner.invoke(app, [*args, "--samples", "3", "--output", str(tmp_path)])
    assert r.exit_code == 0, r.stderr
    assert "energy: cmos45nm" in r.stdout and "first 3 test images of digits" in r.stderr


def test_profile_checkpoint(tiny_checkpoint, tmp_path):
    r = runner.invoke(
        app, ["profile", "--checkpoint", str(tiny_checkpoint), "--samples", "1", "--output", str(tmp_path), "--json"]
    )
    assert r.exit_code == 0, r.stderr
    d = _one_json(r)
    assert d["weights"].startswith("checkpoint") and d["batch_size"] == 1


def test_profile_errors(tiny_checkpoint, tmp_path):
    cases = [
        (["profile", "--json"], "exactly one of --checkpoint"),
        (["profile", "--model", "spikformer-4-384", "--hardware", "tpu", "--json"], "registered: cmos45nm"),
        (["profile", "--checkpoint", str(tiny_checkpoint), "--dataset", "digits", "--json"], "the model takes"),
        (["profile", "--model", "spikformer-4-384", *SMALL_ARGS, "--hardware", "gpu-measured", "--json"], "gpu"),
    ]
    for args, message in cases:
        r = runner.invoke(app, [*args, "--output", str(tmp_path)])
        assert r.exit_code == 2, (args, r.stdout)
        d = _one_json(r)
        assert d["ok"] is False and message in d["error"], d

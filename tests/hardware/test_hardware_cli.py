"""``spikeformer compile`` and ``spikeformer evaluate --backend``: one JSON object, clear errors, exit codes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from spikeformer.cli import app

BUNDLED = "models/spikformer-fmnist/1"
runner = CliRunner()


def _json(result) -> dict:
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_compile_bundled_model_reports_placement(tmp_path):
    r = runner.invoke(
        app, ["compile", "--target", "loihi2", "--checkpoint", BUNDLED, "--json", "--output", str(tmp_path)]
    )
    assert r.exit_code == 0, r.stdout
    d = _json(r)
    assert d["ok"] and d["chips_used"] >= 1 and d["measured_on_samples"] == 10
    assert "blocks.0.attn.qkv_product" in d["summary"]["embedded"]
    assert (tmp_path / "report.json").is_file() and (tmp_path / "program.safetensors").is_file()
    assert "Loihi 1 stand-in" in (tmp_path / "placement.txt").read_text()


def test_compile_with_too_few_chips_exits_non_zero():
    r = runner.invoke(app, ["compile", "--target", "loihi2", "--checkpoint", BUNDLED, "--chips", "1", "--json"])
    assert r.exit_code == 1
    d = _json(r)
    assert not d["ok"] and "largest layer" in d["violations"][0]


def test_compile_bad_target_and_limit_are_clear_errors():
    r = runner.invoke(app, ["compile", "--target", "truenorth", "--checkpoint", BUNDLED, "--json"])
    assert r.exit_code == 2 and "accepted: ['loihi2', 'spinnaker2']" in _json(r)["error"]
    r = runner.invoke(app, ["compile", "--target", "loihi2", "--checkpoint", BUNDLED, "--limit", "cores=3", "--json"])
    assert r.exit_code == 2 and "unknown target limit" in _json(r)["error"]


def test_evaluate_with_emulator_backend_reports_agreement():
    r = runner.invoke(
        app, ["evaluate", "--checkpoint", BUNDLED, "--backend", "spinnaker2-emu", "--limit", "20", "--json"]
    )
    assert r.exit_code == 0, r.stdout
    d = _json(r)
    assert d["backend"] == "spinnaker2-emu" and d["num_samples"] == 20
    assert 0.9 <= d["agreement"] <= 1.0 and 0.0 <= d["top1"] <= 1.0

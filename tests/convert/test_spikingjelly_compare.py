"""The SpikingJelly comparison script: one JSON object, both converters' curves, the ViT attempts reported."""

from __future__ import annotations

import json

import pytest

from spikeformer.convert import spikingjelly_compare
from spikeformer.data import DatasetNotFoundError, load_dataset


def test_compare_prints_one_json_object(tmp_path, capsys):
    try:
        load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist; `make test` installs it)")
    rc = spikingjelly_compare.main(
        ["--epochs", "1", "--limit-train", "256", "--limit-test", "40", "--timesteps", "2,8",
         "--calibration-samples", "64", "--output", str(tmp_path), "--json"]
    )  # fmt: skip
    assert rc == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert set(d["curves"]) == {"spikeformer max", "spikingjelly max", "spikeformer p99.9", "spikingjelly p99.9"}
    for rows in d["curves"].values():
        assert [r["timesteps"] for r in rows] == [2, 8] and all(0 <= r["top1"] <= 1 for r in rows)
    assert (tmp_path / "spikingjelly_compare.png").stat().st_size > 1000


def test_bad_arguments_are_one_json_error(capsys):
    assert spikingjelly_compare.main(["--timesteps", "x", "--json"]) == 2
    assert "comma-separated integers" in json.loads(capsys.readouterr().out)["error"]

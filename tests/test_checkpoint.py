import json

import pytest
import torch

from spikeformer.checkpoint import (
    CheckpointError,
    IntegrityError,
    Manifest,
    load_checkpoint,
    sha256_file,
    verify_checkpoint,
)
from support import tiny_model


def test_round_trip_gives_identical_outputs(tiny_checkpoint):
    model, manifest = load_checkpoint(tiny_checkpoint)
    x = torch.rand(3, 1, 28, 28) * 3
    with torch.no_grad():
        assert torch.equal(model(x), tiny_model()(x))
    assert manifest.sha256 == sha256_file(tiny_checkpoint / "model.safetensors")
    assert manifest.architecture == "Spikformer" and manifest.timesteps == 2
    for key in (
        "model_name",
        "config",
        "preprocessing",
        "class_names",
        "dataset",
        "metrics",
        "package_version",
        "created_at",
    ):
        assert key in json.loads((tiny_checkpoint / "manifest.json").read_text())


def test_one_altered_byte_is_refused(tiny_checkpoint):
    weights = tiny_checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        verify_checkpoint(tiny_checkpoint)
    with pytest.raises(IntegrityError):
        load_checkpoint(tiny_checkpoint)


def test_manifest_missing_field_is_named(tiny_checkpoint):
    path = tiny_checkpoint / "manifest.json"
    d = json.loads(path.read_text())
    del d["class_names"]
    path.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match="class_names"):
        verify_checkpoint(tiny_checkpoint)


def test_missing_folder_and_bad_json(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "nope")
    (tiny_checkpoint / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        verify_checkpoint(tiny_checkpoint)


def test_required_fields_listed():
    assert {"sha256", "model_name", "config", "class_names"} <= set(Manifest.required_fields())

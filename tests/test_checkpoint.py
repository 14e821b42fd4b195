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


# ------------------------------------------------------------------------------------------------ the manifest schema
def _edit(folder, **changes):
    path = folder / "manifest.json"
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def _b64(n_bytes: int) -> str:
    import base64

    return base64.b64encode(bytes(n_bytes)).decode()


@pytest.mark.security
@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"samples": {"data_b64": _b64(10), "shape": [5, 1, 28, 28], "labels": [0] * 5}}, "3920"),
        ({"samples": {"data_b64": _b64(2 * 3 * 28 * 28), "shape": [2, 3, 28, 28], "labels": [0, 1]}}, "channels"),
        ({"samples": {"data_b64": _b64(2 * 28 * 28), "shape": [2, 1, 28, 28], "labels": [0, 10]}}, "labels"),
        ({"samples": {"data_b64": _b64(2 * 28 * 28), "shape": [2, 1, 28, 28], "labels": [0]}}, "labels"),
        ({"samples": {"data_b64": "%%", "shape": [1, 1, 28, 28], "labels": [0]}}, "base64"),
        ({"samples": {"data_b64": _b64(784), "shape": [1, 1, 28, 28], "labels": [0], "dtype": "f4"}}, "dtype"),
        ({"samples": {"shape": [1, 1, 28, 28], "labels": [0]}}, "data_b64"),
        ({"samples": {"data_b64": _b64(784), "shape": "big", "labels": [0]}}, "shape"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"class_names": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}, "class_names"),
        ({"preprocessing": {"channels": 1}}, "preprocessing"),
        ({"timesteps": "four"}, "timesteps"),
        ({"timesteps": 0}, "timesteps"),
        ({"sha256": "abc"}, "sha256"),
        ({"config": []}, "config"),
        ({"weights_file": "/etc/passwd"}, "weights_file"),
        ({"weights_file": "../other/model.safetensors"}, "weights_file"),
    ],
    ids=[
        "short-samples",
        "sample-channels",
        "label-range",
        "label-count",
        "bad-base64",
        "sample-dtype",
        "no-data",
        "shape-type",
        "class-count",
        "class-type",
        "preprocessing",
        "timesteps-type",
        "timesteps-zero",
        "sha256",
        "config",
        "weights-absolute",
        "weights-escape",
    ],
)
def test_manifest_schema_refuses_malformed_fields(tiny_checkpoint, changes, needle):
    _edit(tiny_checkpoint, **changes)
    with pytest.raises(CheckpointError, match=needle) as e:
        verify_checkpoint(tiny_checkpoint)
    assert "manifest.json" in str(e.value)


@pytest.mark.security
def test_manifest_preprocessing_must_match_the_model(tiny_checkpoint):
    d = json.loads((tiny_checkpoint / "manifest.json").read_text())
    _edit(tiny_checkpoint, preprocessing={**d["preprocessing"], "channels": 3, "mean": [0.0], "std": [1.0]})
    with pytest.raises(CheckpointError, match="in_chans"):
        verify_checkpoint(tiny_checkpoint)


def test_valid_samples_are_accepted_and_decoded(tiny_checkpoint):
    _edit(tiny_checkpoint, samples={"data_b64": _b64(2 * 784), "shape": [2, 1, 28, 28], "labels": [3, 4]})
    images, labels = verify_checkpoint(tiny_checkpoint).sample_images()
    assert images.shape == (2, 1, 28, 28) and labels == [3, 4]


@pytest.mark.security
def test_weights_symlinked_out_of_the_folder_are_refused(tmp_path, tiny_checkpoint):
    import os
    import shutil

    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(tiny_checkpoint / "model.safetensors", outside)
    os.symlink(outside, tiny_checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match="outside"):
        verify_checkpoint(tiny_checkpoint)


@pytest.mark.security
@pytest.mark.parametrize(
    "content,needle",
    [
        (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.", "pickle"),
        (b"PK\x03\x04" + bytes(60), "zip"),
        (b"", "empty"),
        (b"\xff" * 8 + b"{}", "header"),
        ((20).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', "header"),
    ],
    ids=["pickle", "torch-zip", "empty", "huge-header", "truncated"],
)
def test_weights_that_are_not_safetensors_are_named(tiny_checkpoint, content, needle):
    """An intact sha256 is not enough: the file must be a safetensors file, and the error says what it is."""
    weights = tiny_checkpoint / "model.safetensors"
    weights.write_bytes(content)
    _edit(tiny_checkpoint, sha256=sha256_file(weights))
    with pytest.raises(CheckpointError, match=needle):
        verify_checkpoint(tiny_checkpoint)

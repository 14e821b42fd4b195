"""The command line: exit codes, --json output and bad input."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from spikeformer.cli import app

runner = CliRunner()


def _json(result) -> dict:
    lines = [x for x in result.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_demo_json_is_one_object():
    r = runner.invoke(app, ["demo", "--model", "spikformer-2-384", "--json"])
    assert r.exit_code == 0
    d = _json(r)
    assert d["logits_shape"] == [2, 10] and d["parameters"] > 5_000_000


def test_models_list_json():
    d = _json(runner.invoke(app, ["models", "list", "sdt-*", "--json"]))
    assert [m["name"] for m in d["models"]] == ["sdt-8-384", "sdt-8-512", "sdt-8-768"]


def test_verify_intact_and_altered_checkpoint(tiny_checkpoint):
    ok = runner.invoke(app, ["models", "verify", str(tiny_checkpoint), "--json"])
    assert ok.exit_code == 0 and _json(ok)["ok"] is True
    w = tiny_checkpoint / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x10
    w.write_bytes(bytes(data))
    bad = runner.invoke(app, ["models", "verify", str(tiny_checkpoint), "--json"])
    assert bad.exit_code == 1 and "sha256" in _json(bad)["error"]


def test_verify_manifest_missing_field(tiny_checkpoint):
    path = tiny_checkpoint / "manifest.json"
    d = json.loads(path.read_text())
    del d["sha256"]
    path.write_text(json.dumps(d))
    r = runner.invoke(app, ["models", "verify", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "sha256" in r.stderr


def test_evaluate_small_slice_writes_confusion_png(tiny_checkpoint, tmp_path):
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(tiny_checkpoint),
            "--dataset",
            "fashion-mnist",
            "--limit",
            "50",
            "--output",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    d = _json(r)
    assert d["num_samples"] == 50 and 0 <= d["top1"] <= 1 and len(d["per_class"]) == 10
    assert (tmp_path / "confusion.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dataset", "imagenet-22k"], "unknown dataset"),
        (["--dataset", "digits"], "[1, 8, 8]"),  # wrong image size for a 28x28 model
    ],
)
def test_evaluate_bad_input(tiny_checkpoint, args, needle):
    r = runner.invoke(app, ["evaluate", "--checkpoint", str(tiny_checkpoint), *args])
    assert r.exit_code != 0
    assert needle.lower() in r.stderr.lower()
    assert "Traceback" not in r.stderr


def test_empty_image_folder_is_refused(tmp_path, tiny_checkpoint):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    r = runner.invoke(
        app, ["evaluate", "--checkpoint", str(tiny_checkpoint), "--dataset", f"folder:{tmp_path / 'empty'}"]
    )
    assert r.exit_code != 0 and "no images" in r.stderr.lower() or "empty" in r.stderr.lower()


def test_image_folder_with_wrong_size(tmp_path, tiny_checkpoint):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "imgs" / cls / "x.png")
    r = runner.invoke(
        app,
        [
            "evaluate",
            "--checkpoint",
            str(tiny_checkpoint),
            "--dataset",
            f"folder:{tmp_path / 'imgs'}",
            "--split",
            "all",
        ],
    )
    assert r.exit_code != 0 and "[1, 28, 28]" in r.stderr


def test_train_unknown_dataset_and_missing_checkpoint(tmp_path):
    r = runner.invoke(app, ["train", "--dataset", "mnist-9", "--output", str(tmp_path / "x"), "--json"])
    assert r.exit_code != 0 and "unknown" in _json(r)["error"]
    r = runner.invoke(app, ["models", "verify", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "does not exist" in r.stderr


@pytest.mark.security
@pytest.mark.parametrize(
    "content,needle",
    [(b"", "empty"), (b"not a pickle at all", "not a torch.save file"), (b"PK\x03\x04broken", "zip")],
    ids=["empty", "text", "broken-zip"],
)
def test_models_import_of_an_unreadable_file_prints_one_json_error(tmp_path, content, needle):
    pth = tmp_path / "weights.pth"
    pth.write_bytes(content)
    r = runner.invoke(app, ["models", "import", str(pth), "--output", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 2 and "Aborted" not in r.output
    d = _json(r)
    assert d["ok"] is False and needle in d["error"] and "weights.pth" in d["error"]
    assert not (tmp_path / "out").exists()


@pytest.mark.security
def test_verify_names_a_weights_file_that_is_a_pickle(tiny_checkpoint):
    import pickle

    from spikeformer.checkpoint import sha256_file

    weights = tiny_checkpoint / "model.safetensors"
    weights.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    path = tiny_checkpoint / "manifest.json"
    d = json.loads(path.read_text())
    d["sha256"] = sha256_file(weights)  # the hash matches: only the format gives it away
    path.write_text(json.dumps(d))
    r = runner.invoke(app, ["models", "verify", str(tiny_checkpoint), "--json"])
    assert r.exit_code == 1
    error = _json(r)["error"]
    assert "pickle" in error and "not a safetensors file" in error


@pytest.mark.security
def test_verify_checks_the_whole_manifest(tiny_checkpoint):
    path = tiny_checkpoint / "manifest.json"
    d = json.loads(path.read_text())
    d["samples"] = {"data_b64": "AAAAAAAAAAAAAA==", "shape": [5, 1, 28, 28], "labels": [0, 0, 0, 0, 0]}
    path.write_text(json.dumps(d))
    r = runner.invoke(app, ["models", "verify", str(tiny_checkpoint), "--json"])
    assert r.exit_code == 1 and "samples" in _json(r)["error"]


def test_every_group_module_stands_alone():
    """Each command module imports only ``spikeformer.cli._output`` from the CLI, never the package that mounts it."""
    import ast
    from pathlib import Path

    import spikeformer.cli

    folder = Path(spikeformer.cli.__file__).parent
    for path in folder.glob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spikeformer.cli"):
                assert node.module == "spikeformer.cli._output", (path.name, node.module)


@pytest.mark.parametrize(
    "module,name,where",
    [
        ("spikeformer.cli", "fail", "spikeformer.cli._output"),
        ("spikeformer.cli", "incident_close", "spikeformer.cli.incident"),
        ("spikeformer.cli.convert", "run_conversion", "spikeformer.convert.run"),
    ],
)
def test_moved_names_warn_and_forward(module, name, where):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"moved to {where}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(where), name)


def test_incident_errors_map_to_their_exit_code():
    from spikeformer.cli.incident import _exit_code
    from spikeformer.ops.incidents import IncidentConflictError, IncidentNotFoundError
    from spikeformer.store import StoreError

    assert _exit_code(IncidentNotFoundError("no incident with id 9")) == 1
    assert _exit_code(IncidentConflictError("it is closed")) == 2
    assert _exit_code(StoreError("database unavailable")) == 2
    assert _exit_code(ValueError("bad input")) == 2

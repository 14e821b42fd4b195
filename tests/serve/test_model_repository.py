"""The model repository under bad manifests: a version that cannot load fails alone, and says why without host paths."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from spikeformer.checkpoint import save_checkpoint
from spikeformer.data import FASHION_MNIST_CLASSES, Preprocess
from spikeformer.serve.app import create_app
from spikeformer.serve.model_repository import ModelRepository
from spikeformer.store import ApiKeyStore, Database
from support import make_settings, tiny_model

pytestmark = pytest.mark.security

_IMAGES = np.random.default_rng(0).integers(0, 256, size=(2, 28, 28)).astype(np.uint8)
_INFER = {"inputs": [{"name": "images", "shape": [2, 28, 28], "datatype": "UINT8", "data": _IMAGES.tolist()}]}
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:etc|tmp|home|root|usr|var|proc|work)\b")


def _save(folder) -> None:
    save_checkpoint(
        tiny_model(),
        folder,
        Preprocess.for_dataset("fashion-mnist"),
        list(FASHION_MNIST_CLASSES),
        "fashion-mnist",
        {"top1": 0.1},
        samples=_samples(np.zeros((2, 1, 28, 28), np.uint8), [0, 1]),
    )


def _samples(images: np.ndarray, labels: list[int]) -> dict:
    return {
        "shape": list(images.shape),
        "dtype": "uint8",
        "data_b64": base64.b64encode(images.tobytes()).decode(),
        "labels": labels,
    }


def _edit_manifest(folder, **changes) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _repository(root, bad: dict | None = None):
    """``tiny/1`` intact; ``tiny/2`` intact too, with ``bad`` written into its manifest when given."""
    for v in ("1", "2"):
        _save(root / "tiny" / v)
    if bad:
        _edit_manifest(root / "tiny" / "2", **bad)
    return root


def _admin(settings) -> dict:
    with Database(settings.database_url).session() as s:
        key, _ = ApiKeyStore(s).create("ops", ["admin"])
    return {"Authorization": f"Bearer {key}"}


_BAD_SAMPLES = {
    "short data": _samples(np.zeros((1, 1, 1, 10), np.uint8), [0]) | {"shape": [5, 1, 28, 28], "labels": [0] * 5},
    "channel count": _samples(np.zeros((2, 3, 28, 28), np.uint8), [0, 1]),
    "label out of range": _samples(np.zeros((2, 1, 28, 28), np.uint8), [0, 10]),
    "label count": _samples(np.zeros((2, 1, 28, 28), np.uint8), [0]),
    "not base64": {"shape": [1, 1, 28, 28], "dtype": "uint8", "data_b64": "%%%not base64%%%", "labels": [0]},
    "shape of strings": {"shape": ["a"], "dtype": "uint8", "data_b64": "", "labels": []},
}


@pytest.mark.parametrize("samples", list(_BAD_SAMPLES.values()), ids=list(_BAD_SAMPLES))
def test_malformed_samples_fail_only_their_version(tmp_path, samples):
    repo = _repository(tmp_path / "models", {"samples": samples})
    settings = make_settings(repo, f"sqlite:///{tmp_path / 'svc.db'}")
    with TestClient(create_app(settings)) as client:  # start-up survives the bad version
        index = {e["version"]: e for e in client.post("/v2/repository/index").json()}
        assert index["1"]["state"] == "READY"
        assert index["2"]["state"] == "FAILED" and "samples" in index["2"]["reason"]
        assert client.get("/v2/health/ready").status_code == 200
        r = client.post("/v2/models/tiny/infer", json=_INFER)
        assert r.status_code == 200 and r.json()["model_version"] == "1"


def test_runtime_load_of_a_bad_version_answers_the_failure_and_serving_goes_on(tmp_path):
    repo = _repository(tmp_path / "models")
    settings = make_settings(repo, f"sqlite:///{tmp_path / 'svc.db'}", request_timeout_s=5)
    with TestClient(create_app(settings)) as client:
        assert client.post("/v2/models/tiny/infer", json=_INFER).json()["model_version"] == "2"
        _edit_manifest(repo / "tiny" / "2", samples=_BAD_SAMPLES["channel count"])
        r = client.post("/v2/repository/models/tiny/load", headers=_admin(settings))
        assert r.status_code == 200, r.text
        states = {v["version"]: v for v in r.json()["versions"]}
        assert states["1"]["state"] == "READY"
        assert states["2"]["state"] == "FAILED" and "channels" in states["2"]["reason"]
        r = client.post("/v2/models/tiny/infer", json=_INFER)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        assert client.get("/v2/models/tiny/versions/2/ready").status_code == 400


def test_a_failure_while_attaching_fails_the_version_not_the_service(tmp_path, monkeypatch):
    """Energy profiling and batcher set-up run inside the load's failure boundary."""
    import spikeformer.serve.services.inference as inference

    real = inference.estimate_energy

    def flaky(mv):
        if mv.version == "2":
            raise RuntimeError("profiling exploded")
        return real(mv)

    monkeypatch.setattr(inference, "estimate_energy", flaky)
    repo = _repository(tmp_path / "models")
    settings = make_settings(repo, f"sqlite:///{tmp_path / 'svc.db'}", request_timeout_s=5)
    with TestClient(create_app(settings)) as client:
        svc = client.app.state.svc
        index = {e["version"]: e for e in client.post("/v2/repository/index").json()}
        assert index["2"]["state"] == "FAILED" and "profiling exploded" in index["2"]["reason"]
        assert ("tiny", "2") not in svc.inference.batchers
        r = client.post("/v2/models/tiny/infer", json=_INFER)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        # at run time too: the answer names the failure, and no READY version is left without a started batcher
        r = client.post("/v2/repository/models/tiny/load", headers=_admin(settings))
        assert r.status_code == 200 and {v["version"]: v["state"] for v in r.json()["versions"]} == {
            "1": "READY",
            "2": "FAILED",
        }
        for mv in svc.repo.all_versions():
            if mv.ready:
                assert svc.inference.batchers[(mv.name, mv.version)]._task is not None
        assert client.post("/v2/models/tiny/infer", json=_INFER).status_code == 200


def test_on_load_failure_is_recorded_and_cleaned_up(tmp_path):
    repo_root = _repository(tmp_path / "models")
    unloaded = []

    def on_load(mv):
        raise KeyError("no batcher slot")

    repo = ModelRepository(repo_root, on_load=on_load, on_unload=unloaded.append)
    versions = repo.load_all()
    assert [mv.status for mv in versions] == ["failed", "failed"]
    assert all("no batcher slot" in mv.error for mv in versions) and not any(mv.ready for mv in versions)
    assert [mv.version for mv in unloaded] == ["1", "2"]  # what on_load may have set up is torn down


# ---------------------------------------------------------------------------------------------- weights confinement
def _weights_sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_outside_the_version_folder_are_refused(tmp_path):
    root = _repository(tmp_path / "models")
    _save(root / "other" / "1")
    foreign = root / "other" / "1" / "model.safetensors"
    _edit_manifest(root / "tiny" / "1", weights_file="../../other/1/model.safetensors", sha256=_weights_sha(foreign))
    _edit_manifest(root / "tiny" / "2", weights_file="/etc/hostname")
    settings = make_settings(root, f"sqlite:///{tmp_path / 'svc.db'}")
    with TestClient(create_app(settings)) as client:
        index = {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}
        assert index[("other", "1")]["state"] == "READY"
        for v in ("1", "2"):
            entry = index[("tiny", v)]
            assert entry["state"] == "FAILED" and "weights_file" in entry["reason"], entry


def test_a_symlinked_weights_file_pointing_elsewhere_is_refused(tmp_path):
    root = _repository(tmp_path / "models")
    _save(root / "other" / "1")
    foreign = root / "other" / "1" / "model.safetensors"
    weights = root / "tiny" / "2" / "model.safetensors"
    weights.unlink()
    os.symlink(foreign, weights)
    _edit_manifest(root / "tiny" / "2", sha256=_weights_sha(foreign))
    repo = ModelRepository(root)
    repo.load_all()
    mv = repo.versions("tiny")[-1]
    assert mv.status == "failed" and "outside" in mv.error


def test_keyless_answers_carry_no_absolute_host_paths(tmp_path):
    root = _repository(tmp_path / "models")
    w = root / "tiny" / "2" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01
    w.write_bytes(bytes(data))  # an integrity failure: its message names the weights file
    shutil.copytree(root / "tiny" / "1", root / "tiny" / "3")
    (root / "tiny" / "3" / "model.safetensors").unlink()  # a missing file
    settings = make_settings(root, f"sqlite:///{tmp_path / 'svc.db'}")
    with TestClient(create_app(settings)) as client:
        answers = [
            client.post("/v2/repository/index"),
            client.get("/v2/health/ready"),
            client.get("/v2/models/tiny/versions/2/ready"),
            client.get("/v2/models/tiny/versions/3/ready"),
            client.get("/v2/models/tiny/versions/2"),
            client.get("/v2/models/tiny/versions/3"),
            client.post("/v2/models/tiny/versions/2/infer", json=_INFER),
        ]
        index = {e["version"]: e for e in answers[0].json()}
        assert index["2"]["state"] == "FAILED" and "tiny/2/model.safetensors" in index["2"]["reason"]
        assert index["3"]["state"] == "FAILED" and "tiny/3/model.safetensors" in index["3"]["reason"]
        for r in answers:
            assert str(tmp_path) not in r.text and not _ABSOLUTE_PATH.search(r.text), (r.request.url, r.text)

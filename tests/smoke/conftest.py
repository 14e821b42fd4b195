"""Fixtures for the smoke checks and the status page: a model repository whose only model carries reference images,
and a service (TestClient) over SQLite with an admin key."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from spikeformer.checkpoint import save_checkpoint
from spikeformer.data import FASHION_MNIST_CLASSES, Preprocess
from spikeformer.serve.app import create_app
from spikeformer.store import ApiKeyStore, Database
from support import make_settings, tiny_model


def reference_images(n: int = 10) -> np.ndarray:
    """`n` seeded random 28x28 images, uint8 [N, 1, 28, 28]: stand-ins for one test image per class."""
    return np.random.default_rng(3).integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)


def write_model(root: Path, top1: float = 0.1, labels: list[int] | None = None, version: str = "1") -> Path:
    """`root/tiny/<version>`: the untrained tiny model with 10 reference images (labels 0..9 unless given) and
    `top1` as its recorded accuracy."""
    images = reference_images()
    samples = {
        "shape": list(images.shape),
        "dtype": "uint8",
        "data_b64": base64.b64encode(images.tobytes()).decode(),
        "labels": labels if labels is not None else list(range(len(images))),
    }
    save_checkpoint(
        tiny_model(),
        root / "tiny" / version,
        Preprocess.for_dataset("fashion-mnist"),
        list(FASHION_MNIST_CLASSES),
        "fashion-mnist",
        {"top1": top1},
        samples=samples,
    )
    return root


@pytest.fixture
def model_repository() -> Callable[..., Path]:
    """`model_repository(root, top1=0.1, labels=None)`: `write_model` as a fixture (conftest is not importable)."""
    return write_model


@pytest.fixture
def untrained_predictions() -> list[int]:
    """The classes the untrained tiny model gives the reference images (what the service must answer too)."""
    import torch

    x = Preprocess.for_dataset("fashion-mnist")(torch.from_numpy(reference_images()))
    with torch.no_grad():
        return [int(c) for c in tiny_model()(x).argmax(1)]


@pytest.fixture(scope="module")
def smoke_repository(tmp_path_factory) -> Path:
    """A repository with one model, `tiny`, one version with reference images, recorded top-1 10 % (untrained)."""
    return write_model(tmp_path_factory.mktemp("smoke-models"))


class Service:
    """A TestClient over the service, its database URL and an admin key."""

    def __init__(self, client: TestClient, db_url: str) -> None:
        self.client = client
        self.db_url = db_url
        database = Database(db_url)
        with database.session() as s:
            self.admin, _ = ApiKeyStore(s).create("ops", ["admin"])
            self.alerts, _ = ApiKeyStore(s).create("alertmanager", ["alerts"])
        database.dispose()

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin}"}


@pytest.fixture
def start_service(tmp_path) -> Iterator[Callable[..., Service]]:
    """`start_service(repository, **settings)` -> a running `Service` (stopped after the test)."""
    stack: list[TestClient] = []

    def start(repository: Path, **settings) -> Service:
        db_url = f"sqlite:///{tmp_path / f'svc-{len(stack)}.db'}"
        client = TestClient(create_app(make_settings(repository, db_url, **settings)))
        client.__enter__()
        stack.append(client)
        return Service(client, db_url)

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def service(start_service, smoke_repository) -> Service:
    return start_service(smoke_repository)

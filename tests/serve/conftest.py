"""A model repository with a tiny model (two good versions and a corrupt one) and a service over SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spikeformer.serve.app import create_app
from support import make_repository, make_settings


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return make_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture
def service(repository, tmp_path):
    """(client, settings) for a running service on a fresh SQLite database."""
    settings = make_settings(repository, f"sqlite:///{tmp_path / 'svc.db'}")
    with TestClient(create_app(settings)) as client:
        yield client, settings

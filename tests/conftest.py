"""Shared fixtures: small models and checkpoints that CPU tests can afford, and a migrated SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikeformer.checkpoint import save_checkpoint
from spikeformer.data import Preprocess
from support import tiny_model


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A checkpoint folder of an untrained 28x28 single-channel Spikformer."""
    folder = tmp_path / "ckpt"
    save_checkpoint(
        tiny_model(),
        folder,
        Preprocess.for_dataset("fashion-mnist"),
        [str(i) for i in range(10)],
        "fashion-mnist",
        {"top1": 0.1},
    )
    return folder


@pytest.fixture
def sqlite_db(tmp_path: Path):
    """A migrated SQLite database in the test's folder (closed afterwards)."""
    from spikeformer.store import Database

    database = Database(f"sqlite:///{tmp_path / 'test.db'}")
    database.upgrade()
    yield database
    database.dispose()

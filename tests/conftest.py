"""Shared fixtures: small models and checkpoints that CPU tests can afford."""

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

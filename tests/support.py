"""Helpers shared by tests (importable because pytest's pythonpath includes tests/)."""

from __future__ import annotations

import torch

import spikeformer

TINY = dict(img_size=28, in_chans=1, num_classes=10, embed_dim=32, depth=1, num_heads=4, timesteps=2)


def tiny_model(**overrides) -> torch.nn.Module:
    """An untrained 28x28 single-channel Spikformer small enough for CPU tests."""
    torch.manual_seed(0)
    return spikeformer.create_model("spikformer-4-384", **{**TINY, **overrides}).eval()


def firing_model() -> torch.nn.Module:
    """``tiny_model()`` with BatchNorm scales that make every layer fire (an untrained model is nearly silent)."""
    model = tiny_model()
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.weight.data.uniform_(2.0, 6.0)
            m.bias.data.uniform_(-0.2, 0.5)
    return model.eval()


def make_repository(root):
    """A model repository: ``tiny/1`` and ``tiny/2`` intact, ``tiny/3`` with an altered weights file."""
    from spikeformer.checkpoint import save_checkpoint
    from spikeformer.data import FASHION_MNIST_CLASSES, Preprocess

    pre = Preprocess.for_dataset("fashion-mnist")
    for v in ("1", "2", "3"):
        save_checkpoint(
            tiny_model(), root / "tiny" / v, pre, list(FASHION_MNIST_CLASSES), "fashion-mnist", {"top1": 0.1}
        )
    w = root / "tiny" / "3" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01
    w.write_bytes(bytes(data))
    return root


def make_settings(repository, db_url: str, **kw):
    """Service settings for tests: short delays, the tiny model required."""
    from spikeformer.settings import Settings

    return Settings(
        model_repository=repository,
        database_url=db_url,
        required_models=["tiny"],
        max_queue_delay_ms=2,
        record_flush_interval_s=0.1,
        settings_poll_interval_s=0.1,
        **kw,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repository, db_url: str, **env_settings):
    """``spikeformer serve`` as a subprocess on a free loopback port; returns ``(process, url)`` once ready.

    A SQLite database's server spools its records beside the database file (not under ./var), unless told otherwise.
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    port = free_port()
    spool = {}
    if db_url.startswith("sqlite:///"):
        spool = {"SPIKEFORMER_RECORD_SPOOL_DIR": str(Path(db_url.removeprefix("sqlite:///")).parent / "spool")}
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SPIKEFORMER_REQUIRED_MODELS": '["tiny"]',
        **spool,
        **{f"SPIKEFORMER_{k.upper()}": str(v) for k, v in env_settings.items()},
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spikeformer.cli",
            "serve",
            "--port",
            str(port),
            "--model-repository",
            str(repository),
            "--database-url",
            db_url,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stdout.read()}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not become ready within 60 s")


# Why the compiled-kernel tests skip where the kernels cannot build (tests/kernels/test_cpu.py fails, with the reason).
KERNELS_MISSING = (
    "the compiled CPU kernels could not be built on this machine (no C++ compiler or ninja); the plain-torch "
    "fallbacks are tested, and tests/kernels/test_cpu.py fails with the build error"
)


async def echo_app(scope, receive, send):
    """An ASGI application that reads the whole body and answers 200 with it."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

"""Multi-process training under torchrun: 2 CPU processes (gloo) on a tiny digits run."""

import json
import os
import subprocess
import sys

from spikeformer import load_pipeline


def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "spikeformer.cli",
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--arg",
        "embed_dim=32",
        "--arg",
        "depth=1",
        "--arg",
        "num_heads=4",
        "--arg",
        "timesteps=2",
        "--device",
        "cpu",
        "--lr",
        "0.005",
        "--output",
        str(out),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2  # only rank 0 writes
    pipe = load_pipeline(out / "checkpoint")
    assert pipe.manifest.training["world_size"] == 2
    # each rank saw half of the 1,437 training images per epoch, the global batch is 2 x 32
    assert lines[0]["step"] == 1437 // 2 // 32

"""The allocator configuration of long-running processes: freed batch tensors leave the resident set."""

import subprocess
import sys
import textwrap

import pytest
import uvicorn
from typer.testing import CliRunner

from spikeformer.cli import app
from spikeformer.runtime import memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or memory._glibc() is None,
    reason="mallopt and malloc_trim exist only in glibc's malloc (elsewhere the settings are logged and skipped)",
)

# The pattern of a large batch: an earlier large tensor raised glibc's dynamic mmap threshold; the batch's 8 MB
# activations are freed, a small tensor allocated after each of them lives on (a cached result, a metric).
_FRAGMENT = textwrap.dedent(
    """
    import sys
    from spikeformer.runtime.memory import configure_allocator
    if sys.argv[1] == "configured":
        configure_allocator(128 * 1024, huge_pages=False)
    import torch

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    first = torch.ones(20 * 2**20 // 4)
    del first
    before = rss_mb()
    batch, kept = [], []
    for _ in range(20):
        batch.append(torch.ones(8 * 2**20 // 4))
        kept.append(torch.ones(16 * 1024 // 4))
    del batch
    print(rss_mb() - before)
    """
)


def _retained_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _FRAGMENT, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip())


@pytest.mark.security
@glibc
def test_freed_batch_tensors_leave_the_resident_set():
    assert _retained_mb("default") > 100  # glibc's dynamic threshold: the 160 MB of freed activations stay resident
    assert _retained_mb("configured") < 20  # fixed threshold: they were mapped on their own and went back


@pytest.mark.security
@glibc
def test_release_free_memory_and_invalid_thresholds():
    assert isinstance(memory.release_free_memory(), bool)
    with pytest.raises(ValueError, match="between 0 and"):
        memory.configure_allocator(memory.MAX_MMAP_THRESHOLD + 1, huge_pages=False)
    assert memory.configure_allocator(0, huge_pages=False).mmap_threshold_bytes is None  # glibc's default stays


@pytest.mark.security
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_configure_the_allocator_from_settings(command, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(memory, "configure_allocator", lambda threshold, huge: calls.append((threshold, huge)))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    monkeypatch.setenv("SPIKEFORMER_MALLOC_MMAP_THRESHOLD_BYTES", "65536")
    monkeypatch.setenv("SPIKEFORMER_HUGE_PAGES", "false")
    args = [command, "--model-repository", str(tmp_path), "--database-url", f"sqlite:///{tmp_path}/s.db"]
    if command == "worker":
        args += ["--max-jobs", "0", "--idle-exit", "0"]
    result = CliRunner().invoke(app, args)
    assert calls == [(65536, False)], result.output

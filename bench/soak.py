"""Soak benchmark of ``spikeformer serve`` (not a test): saturating load for a bounded time, resident memory sampled.

A server process is started as in ``bench/load.py`` (whose client this script imports). ``--concurrency`` closed-loop
clients send Open Inference Protocol requests of a mix of batch sizes (1 to ``--max-images`` images, drawn
log-uniformly, always including 1 and the maximum) for ``--seconds``; the server's resident set (``VmRSS``) is sampled
every ``--sample-s`` seconds and printed with the progress. After the load, the server idles ``--idle-s`` seconds and
is sampled once more.

The verdict: the peak RSS of the second half of the time after the warm-up (``--warmup-s``) may exceed the peak of the
first half by less than 10 % (``growth_after_warmup``, ``growth_ok``). Peaks are compared because a 256-image batch
lifts the RSS for a moment: the peaks of the two halves contain such batches alike, and a leak or an allocator that
keeps what it freed shows as a higher peak later.

Usage: ``python bench/soak.py [--seconds 600] [--concurrency 8] [--max-images 256] [--json] [--plot soak_rss.png]
[--set NAME=VALUE ...]``; ``--set`` passes a service setting to the server (``--set malloc_mmap_threshold_bytes=0
--set huge_pages=false``: glibc's and PyTorch's defaults, for comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Connection, _address, raw_request, rss_mb, start_server  # noqa: E402 - the load benchmark's client

ROOT = Path(__file__).resolve().parents[1]


def batch_sizes(max_images: int, kinds: int = 12) -> list[int]:
    """``kinds`` distinct batch sizes from 1 to ``max_images``, spaced log-uniformly."""
    sizes = np.unique(np.round(np.geomspace(1, max_images, kinds)).astype(int))
    return [int(s) for s in sizes]


def _body(n: int, shape: list[int], seed: int) -> dict:
    img = np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype(np.uint8)
    return {
        "inputs": [{"name": "images", "shape": [n, *shape], "datatype": "UINT8", "data": img.flatten().tolist()}],
        "outputs": [{"name": "class"}],
    }


async def soak(
    url: str, model: str, shape: list[int], pid: int, args: argparse.Namespace
) -> tuple[list[list[float]], dict]:
    """Run the load; return the RSS samples ``[[seconds, MB], ...]`` and the counts."""
    sizes = batch_sizes(args.max_images)
    requests = [(n, raw_request(url, model, _body(n, shape, n))) for n in sizes]
    codes: dict[str, int] = {}
    done = {"requests": 0, "images": 0}
    start = time.perf_counter()
    stop = start + args.seconds
    samples: list[list[float]] = [[0.0, round(rss_mb(pid), 1)]]

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = Connection(*_address(url))
        while time.perf_counter() < stop:
            n, raw = rng.choice(requests)
            try:
                code, _ = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError) as e:
                code = type(e).__name__
            codes[str(code)] = codes.get(str(code), 0) + 1
            if code == 200:
                done["requests"] += 1
                done["images"] += n
        conn.close()

    async def sampler() -> None:
        last, last_t = dict(done), 0.0
        while (now := time.perf_counter()) < stop:
            await asyncio.sleep(min(args.sample_s, max(0.0, stop - now)))
            t = time.perf_counter() - start
            samples.append([round(t, 1), round(rss_mb(pid), 1)])
            rate = (done["images"] - last["images"]) / max(t - last_t, 1e-9)
            last, last_t = dict(done), t
            print(
                f"{t:6.0f} s  rss {samples[-1][1]:7.1f} MB  {done['requests']:6d} requests  {rate:6.0f} images/s  "
                f"codes {codes}",
                file=sys.stderr,
                flush=True,
            )

    await asyncio.gather(sampler(), *(client(i) for i in range(args.concurrency)))
    elapsed = time.perf_counter() - start
    counts = {
        "batch_sizes": sizes,
        "codes": dict(sorted(codes.items())),
        "ok_requests": done["requests"],
        "ok_images": done["images"],
        "ok_per_s": round(done["requests"] / elapsed, 1),
        "images_per_s": round(done["images"] / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
    }
    return samples, counts


def verdict(samples: list[list[float]], warmup_s: float) -> dict:
    """Peak RSS of the first and second halves after the warm-up and the growth between them."""
    after = [s for s in samples if s[0] >= warmup_s]
    if len(after) < 2:
        return {"growth_after_warmup": None, "growth_ok": None}
    mid = after[0][0] + (after[-1][0] - after[0][0]) / 2
    first = max(mb for t, mb in after if t <= mid)
    second = max(mb for t, mb in after if t > mid)
    growth = second / first - 1
    return {
        "rss_peak_first_half_mb": first,
        "rss_peak_second_half_mb": second,
        "growth_after_warmup": round(growth, 4),
        "growth_ok": growth < 0.10,
    }


def plot(samples: list[list[float]], warmup_s: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    t, mb = zip(*samples, strict=True)
    ax.plot(t, mb, marker=".", lw=1)
    ax.axvspan(0, warmup_s, color="0.9", label="warm-up")
    ax.set_xlabel("seconds of load")
    ax.set_ylabel("server RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-repository", default=str(ROOT / "models"))
    ap.add_argument("--model", default=None, help="model name (default: the first in the repository)")
    ap.add_argument("--seconds", type=float, default=600, help="load duration (default 10 minutes)")
    ap.add_argument("--warmup-s", type=float, default=None, help="excluded from the verdict (default: a fifth, <= 60)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-images", type=int, default=256, help="largest batch per request (the service's default)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle time after the load before the last sample")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a service setting (repeatable)")
    ap.add_argument("--plot", default="soak_rss.png", help="PNG of RSS over time")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    warmup_s = args.warmup_s if args.warmup_s is not None else min(60.0, args.seconds / 5)
    server_settings = dict(s.split("=", 1) for s in args.set)
    repo = Path(args.model_repository)
    model = args.model or sorted(p.name for p in repo.iterdir() if p.is_dir())[0]
    results: dict = {
        "model": model,
        "seconds": args.seconds,
        "warmup_s": warmup_s,
        "concurrency": args.concurrency,
        "max_images": args.max_images,
        "server_settings": server_settings,
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(repo, f"sqlite:///{tmp}/soak.db", server_settings)
        try:
            meta = httpx.get(f"{url}/v2/models/{model}").json()
            shape = meta["inputs"][0]["shape"][1:]
            results["rss_ready_mb"] = round(rss_mb(proc.pid), 1)
            samples, counts = asyncio.run(soak(url, model, shape, proc.pid, args))
            time.sleep(args.idle_s)
            results["rss_idle_after_mb"] = round(rss_mb(proc.pid), 1)
            results["server_alive"] = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    results.update(counts)
    results["rss_mb_samples"] = samples
    results["rss_peak_mb"] = max(mb for _, mb in samples)
    results.update(verdict(samples, warmup_s))
    settings_text = ", ".join(f"{k}={v}" for k, v in server_settings.items()) or "service defaults"
    title = f"{model}: {args.concurrency} clients, 1-{args.max_images} images per request, {settings_text}"
    plot(samples, warmup_s, title, Path(args.plot))
    results["plot"] = str(args.plot)
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

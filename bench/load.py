"""Load benchmark of ``spikeformer serve`` (not a test): batch-1 requests from this process to a server process.

Three runs against the same model repository:
1. closed loop, ``--concurrency`` clients, dynamic batching ON: throughput, p50, p99;
2. the same with dynamic batching OFF (each request runs alone);
3. open loop at twice the saturating rate measured in run 1: only 200 and 503 may come back, no 500, the server
   must stay up, and its resident memory is sampled to show it stays bounded.

Usage: ``python bench/load.py [--model-repository models] [--seconds 15] [--concurrency 32] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, db_url: str, env_settings: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, **{f"SPIKEFORMER_{k.upper()}": v for k, v in env_settings.items()}}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spikeformer.cli",
            "serve",
            "--port",
            str(port),
            "--model-repository",
            str(repo),
            "--database-url",
            db_url,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _body(url_model: dict) -> dict:
    c, h, w = url_model["shape"]
    img = np.random.default_rng(0).integers(0, 256, size=(1, c, h, w)).astype(np.uint8)
    return {
        "inputs": [{"name": "images", "shape": [1, c, h, w], "datatype": "UINT8", "data": img.flatten().tolist()}],
        "outputs": [{"name": "class"}],
    }


async def closed_loop(url: str, model: str, body: dict, seconds: float, concurrency: int) -> dict:
    lat, codes = [], {}
    stop = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            r = await c.post(f"{url}/v2/models/{model}/infer", json=body)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 200:
                lat.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary(lat, codes, elapsed)


async def open_loop(url: str, model: str, body: dict, seconds: float, rate: float, pid: int) -> dict:
    lat, codes, tasks, rss = [], {}, [], []

    async def one(c: httpx.AsyncClient) -> None:
        t = time.perf_counter()
        try:
            r = await c.post(f"{url}/v2/models/{model}/infer", json=body)
            code = r.status_code
        except httpx.HTTPError as e:
            code = type(e).__name__
        codes[code] = codes.get(code, 0) + 1
        if code == 200:
            lat.append(time.perf_counter() - t)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000)) as c:
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) * rate)
            while n < due:
                tasks.append(asyncio.ensure_future(one(c)))
                n += 1
            if int(now - start) > len(rss) - 1:
                rss.append(rss_mb(pid))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    out = _summary(lat, codes, elapsed)
    out.update(offered_rate=rate, sent=n, rss_mb_samples=[round(x, 1) for x in rss])
    return out


def _summary(lat: list[float], codes: dict, elapsed: float) -> dict:
    lat_ms = sorted(x * 1e3 for x in lat)
    pct = (lambda q: round(lat_ms[min(len(lat_ms) - 1, int(q * len(lat_ms)))], 2)) if lat_ms else (lambda q: None)
    return {
        "ok_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(lat_ms), 2) if lat_ms else None,
        "codes": {str(k): v for k, v in sorted(codes.items(), key=str)},
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-repository", default=str(ROOT / "models"))
    ap.add_argument("--model", default=None, help="model name (default: the first in the repository)")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    repo = Path(args.model_repository)
    model = args.model or sorted(p.name for p in repo.iterdir() if p.is_dir())[0]
    results: dict = {
        "model": model,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "batching_on": {"dynamic_batching": "true", "max_batch_size": "32", "max_queue_delay_ms": "5"},
            "batching_off": {"dynamic_batching": "false"},
        }
        for label, env in runs.items():
            proc, url = start_server(repo, f"sqlite:///{tmp}/{label}.db", env)
            meta = httpx.get(f"{url}/v2/models/{model}").json()
            body = _body({"shape": meta["inputs"][0]["shape"][1:]})
            asyncio.run(closed_loop(url, model, body, 2, args.concurrency))  # warm-up
            results[label] = asyncio.run(closed_loop(url, model, body, args.seconds, args.concurrency))
            print(f"{label}: {results[label]}", file=sys.stderr)
            if label == "batching_on":
                rate = 2 * results[label]["ok_per_s"]
                results["overload_2x"] = asyncio.run(open_loop(url, model, body, args.seconds, rate, proc.pid))
                results["overload_2x"]["server_alive"] = (
                    proc.poll() is None and httpx.get(f"{url}/v2/health/live").status_code == 200
                )
                print(f"overload_2x: {results['overload_2x']}", file=sys.stderr)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    on, off = results["batching_on"], results["batching_off"]
    results["throughput_ratio"] = round(on["ok_per_s"] / max(off["ok_per_s"], 1e-9), 2)
    results["p99_ratio"] = round(on["p99_ms"] / off["p99_ms"], 2) if on["p99_ms"] and off["p99_ms"] else None
    codes = results["overload_2x"]["codes"]
    results["overload_only_200_503"] = set(codes) <= {"200", "503"}
    if args.json:
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Load benchmark of ``spikeformer serve`` (not a test): batch-1 requests from this process to a server process.

Three runs against the same model repository:
1. closed loop, ``--concurrency`` clients, dynamic batching ON: throughput, p50, p99;
2. the same with dynamic batching OFF (each request runs alone);
3. open loop at twice the saturating rate measured in run 1: only 200 and 503 may come back, no 500, the server
   must stay up, and its resident memory is sampled to show it stays bounded.

Usage: ``python bench/load.py [--model-repository models] [--seconds 15] [--concurrency 32] [--max-batch-size 32]
[--json]``. The requests are prepared once as bytes and sent over keep-alive connections by a minimal HTTP/1.1
client (``Connection``), so that the load generator takes little of the CPU it shares with the server.
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
MAX_CONNECTIONS = 1000  # open-loop client connections at most (a client-side pool, as httpx's)


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


class Connection:
    """One keep-alive HTTP/1.1 connection sending a request prepared once as bytes (``raw_request``).

    The load generator shares the machine with the server; a general-purpose client such as httpx spends as much CPU
    per request (building and serializing the 784-value body each time, parsing the response) as the server's own
    work per request when batching (docs/benchmarks.md). This client only writes the bytes and reads the status line,
    the headers and ``Content-Length`` bytes of body, so nearly all the CPU goes to the server. A connection the server
    closes is reopened.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(raw)
            status = await self.reader.readline()
            if not status:
                raise ConnectionResetError("server closed the connection")
            code, length, close = int(status.split()[1]), 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return code, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def raw_request(url: str, model: str, body: dict) -> bytes:
    host = url.split("//", 1)[1]
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


async def closed_loop(url: str, model: str, body: dict, seconds: float, concurrency: int) -> dict:
    lat, codes = [], {}
    raw = raw_request(url, model, body)
    stop = time.perf_counter() + seconds

    async def client() -> None:
        conn = Connection(*_address(url))
        while time.perf_counter() < stop:
            reply = await _timed(conn, raw, lat, codes)
            if reply is not None and len(lat) == 1:
                _check_reply(reply)
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return _summary(lat, codes, elapsed)


async def _timed(conn: Connection, raw: bytes, lat: list[float], codes: dict) -> bytes | None:
    """Send one request; count its status (or the connection error), time it if 200 and return its body then."""
    t = time.perf_counter()
    try:
        code, reply = await conn.request(raw)
    except (OSError, asyncio.IncompleteReadError) as e:
        code, reply = type(e).__name__, None
    codes[code] = codes.get(code, 0) + 1
    if code != 200:
        return None
    lat.append(time.perf_counter() - t)
    return reply


def _check_reply(reply: bytes) -> None:
    """The first 200 must be a real inference answer (the benchmark must not time error pages)."""
    outputs = {o["name"] for o in json.loads(reply)["outputs"]}
    if "class" not in outputs:
        raise SystemExit(f"unexpected inference reply: {reply[:200]!r}")


async def open_loop(url: str, model: str, body: dict, seconds: float, rate: float, pid: int) -> dict:
    lat, codes, tasks, rss = [], {}, [], []
    raw = raw_request(url, model, body)
    idle: list[Connection] = []  # connections between requests
    inflight = [0]  # at most MAX_CONNECTIONS requests (connections) at once; later ones wait for a free one

    async def one() -> None:
        inflight[0] += 1
        conn = idle.pop() if idle else Connection(*_address(url))
        await _timed(conn, raw, lat, codes)
        idle.append(conn)
        inflight[0] -= 1

    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while n < due and inflight[0] < MAX_CONNECTIONS:
            tasks.append(asyncio.ensure_future(one()))
            n += 1
        if int(now - start) > len(rss) - 1:
            rss.append(rss_mb(pid))
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
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
    ap.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="the server's max_batch_size with batching on (default: the service's default, 32)",
    )
    ap.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    repo = Path(args.model_repository)
    model = args.model or sorted(p.name for p in repo.iterdir() if p.is_dir())[0]
    results: dict = {
        "model": model,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "batching_on": {
                "dynamic_batching": "true",
                "max_batch_size": str(args.max_batch_size),
                "max_queue_delay_ms": str(args.max_queue_delay_ms),
            },
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

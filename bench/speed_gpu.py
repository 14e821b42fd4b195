"""GPU speed against SpikingJelly 2.0 (not a test; run it on a lent GPU): the issue-6 GPU figures in one run.

Same Spikformer-4-384 (CIFAR geometry, T=4, 32x32), same weights (``from_spikingjelly``), alternating the two
frameworks in one process, medians of ``--repeats``:

- training throughput at batch 128 (images/s), float32 and bf16 autocast;
- inference throughput at batch 256 (images/s) and batch-1 latency (ms), ours through ``Runner`` (bf16 on CUDA);
- one multi-step LIF layer, T=500, B=16, 16,384 neurons, forward + backward (ms), and the memory bandwidth it
  reaches (bytes moved by the minimum traffic: read x, write s and h, read h and grad s, write grad x) against a
  device-to-device copy measured in the same run.

Usage: ``python bench/speed_gpu.py [--device cuda] [--repeats 10] [--json]``; ``--device cpu --small`` is a smoke
run of the script itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_s(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import neuron as sjn
    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    from spikeformer.interop import from_spikingjelly
    from spikeformer.nn import LIF
    from spikeformer.runtime import Runner

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dev = torch.device(args.device)
    train_b, infer_b, lif_t, lif_n = (4, 8, 20, 1024) if args.small else (128, 256, 500, 16384)

    spec = importlib.util.spec_from_file_location("speed_cpu", Path(__file__).with_name("speed_cpu.py"))
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    sj = spikformer_cifar10()
    speed._randomize(sj)
    ours = from_spikingjelly(sj.eval())
    sj = sj.to(dev)
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__}

    # training throughput
    x = torch.rand(train_b, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (train_b,), device=dev)
    ours_t = from_spikingjelly(spikformer_cifar10()).to(dev).train()
    for m in ours_t.modules():
        if hasattr(m, "backend"):
            m.backend = "fused"
    sj_t = spikformer_cifar10().to(dev).train()
    opt_o, opt_s = torch.optim.AdamW(ours_t.parameters()), torch.optim.AdamW(sj_t.parameters())

    def step(model, opt, amp, sj_style):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            if sj_style:
                sjf.reset_net(model)
                out = model(x).mean(0)
            else:
                out = model(x)
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for amp in (False, True):
        t_s = _median_s(lambda a=amp: step(sj_t, opt_s, a, True), dev, args.repeats)
        t_o = _median_s(lambda a=amp: step(ours_t, opt_o, a, False), dev, args.repeats)
        key = f"train_b{train_b}_{'bf16' if amp else 'fp32'}"
        res[key] = {"spikingjelly_img_s": train_b / t_s, "ours_img_s": train_b / t_o, "speedup": t_s / t_o}
        print(key, res[key], file=sys.stderr)

    # inference
    runner = Runner(ours, device=dev, precision="auto")

    def sj_infer(inp):
        with torch.inference_mode():
            sjf.reset_net(sj)
            return sj(inp).mean(0)

    for b in (infer_b, 1):
        xi = torch.rand(b, 3, 32, 32, device=dev)
        t_s = _median_s(lambda xi=xi: sj_infer(xi), dev, args.repeats)
        t_o = _median_s(lambda xi=xi: runner.run(xi), dev, args.repeats)
        res[f"infer_b{b}"] = {
            "spikingjelly_ms": 1e3 * t_s,
            "ours_ms": 1e3 * t_o,
            "speedup": t_s / t_o,
            "ours_img_s": b / t_o,
            "precision": runner.precision,
        }
        print(f"infer_b{b}", res[f"infer_b{b}"], file=sys.stderr)

    # one LIF layer, forward + backward
    xs = torch.randn(lif_t, 16, lif_n, device=dev, requires_grad=True)
    ours_lif = LIF(tau=2.0, backend="fused")
    sj_lif = sjn.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
    for backend in ("triton", "cupy", "torch"):
        try:
            sj_lif.backend = backend
            sjf.reset_net(sj_lif)
            sj_lif(xs).sum().backward()
            break
        except Exception:  # noqa: BLE001 - take the fastest backend this install has
            continue

    def lif_ours():
        ours_lif.reset()
        ours_lif(xs).sum().backward()

    def lif_sj():
        sjf.reset_net(sj_lif)
        sj_lif(xs).sum().backward()

    t_o, t_s = _median_s(lif_ours, dev, args.repeats), _median_s(lif_sj, dev, args.repeats)
    n_bytes = 6 * xs.numel() * 4  # x, s, h, h, grad s, grad x (float32)
    buf = torch.empty(64 * 2**20, device=dev)
    t_copy = _median_s(lambda: buf.clone(), dev, args.repeats)
    bw = 2 * buf.numel() * 4 / t_copy
    res["lif_fwd_bwd"] = {
        "ours_ms": 1e3 * t_o,
        "spikingjelly_ms": 1e3 * t_s,
        "spikingjelly_backend": sj_lif.backend,
        "ours_gb_s": n_bytes / t_o / 1e9,
        "copy_gb_s": bw / 1e9,
        "fraction_of_copy": n_bytes / t_o / bw,
    }
    print("lif", res["lif_fwd_bwd"], file=sys.stderr)
    print(json.dumps(res) if args.json else json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

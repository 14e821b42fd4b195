"""CPU speed against SpikingJelly 2.0 (not a test): the same Spikformer-4-384 (CIFAR geometry, T=4, 32x32), the same
weights, in one process, alternating the two frameworks; prints medians and the speed-up (SpikingJelly / ours).

Measured: inference at batch 1 and batch 8 through ``spikeformer.runtime.Runner``: ``fp32`` (everything on: BatchNorm
folded, compiled neurons and pooling, event-driven layers, oneDNN products), ``fp32_dense`` (without the
event-driven layers), ``int8`` (int8 spikes x int8 weights) and ``bf16`` (autocast); and one training step at batch 8
(forward + backward + AdamW) in float32 and with bf16 autocast (``--no-low-precision`` skips int8/bf16). The weights
are random but scaled so that every layer fires (``mean_input_density``: the mean non-zero fraction of the inputs of
the linear and conv layers); trained Spikformers fire less, which favours the event-driven path.

Usage: ``python bench/speed_cpu.py [--repeats 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights that make every layer spike (trained networks fire; the default init is nearly silent)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear):
            m.weight.data.normal_(0, 2.5 / math.sqrt(m.weight[0].numel()))
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.6)


def _input_density(runner, x) -> float:
    """Mean non-zero fraction of the inputs of every linear/conv layer but the first (which sees the image)."""
    dens = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, a: dens.append(float((a[0] != 0).float().mean())))
        for m in runner.model.modules()
        if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)
    ]
    runner.run(x)
    for h in hooks:
        h.remove()
    return statistics.fmean(dens[1:])


def _cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on Linux) and the ISA features the kernels probe."""
    try:
        info = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return platform.processor()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_vpopcntdq", "amx_tile")
    return f"{name} ({' '.join(f for f in wanted if f in flags) or 'no AVX2'})"


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    from spikeformer.interop import from_spikingjelly
    from spikeformer.runtime import Runner
    from spikeformer.train import prepare_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-low-precision", dest="low_precision", action="store_false")
    args = ap.parse_args()

    sj = spikformer_cifar10()
    _randomize(sj)
    sj.eval()
    ours = from_spikingjelly(sj)
    runners = {"fp32": Runner(ours, precision="fp32"), "fp32_dense": Runner(ours, precision="fp32", event_driven=False)}
    if args.low_precision:
        runners["int8"] = Runner(ours, precision="int8")
        runners["bf16"] = Runner(ours, precision="bf16")

    def sj_infer(x):
        with torch.inference_mode():
            sjf.reset_net(sj)
            return sj(x).mean(0)

    results: dict = {
        "machine": platform.platform(),
        "processor": _cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "inference": {},
    }
    for batch in (1, 8):
        x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        ref = sj_infer(x)
        for r in runners.values():  # warm-up; the event layers time both paths on their first calls
            for _ in range(4):
                r.run(x)
        row = {"mean_input_density": _input_density(runners["fp32_dense"], x)}
        t_sj = []
        t_ours = {k: [] for k in runners}
        for _ in range(args.repeats):  # alternate the frameworks so drift hits both
            t_sj.append(_time(lambda x=x: sj_infer(x), 1))
            for k, r in runners.items():
                t_ours[k].append(_time(lambda x=x, r=r: r.run(x), 1))
        row["spikingjelly_ms"] = 1e3 * statistics.median(t_sj)
        for k, r in runners.items():
            ms = 1e3 * statistics.median(t_ours[k])
            agree = float((r.run(x).argmax(1) == ref.argmax(1)).float().mean())
            row[f"ours_{k}_ms"] = ms
            row[f"speedup_{k}"] = row["spikingjelly_ms"] / ms
            row[f"agreement_{k}"] = agree
        results["inference"][f"batch_{batch}"] = row
        print(f"inference batch {batch}: {json.dumps(row)}", file=sys.stderr)

    # training step, batch 8
    x = torch.rand(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    sj_train = spikformer_cifar10()
    ours_train = prepare_model(from_spikingjelly(sj_train).train(), torch.device("cpu"))  # as `spikeformer train`
    opt_sj = torch.optim.AdamW(sj_train.parameters())
    opt_ours = torch.optim.AdamW(ours_train.parameters())

    def step_sj():
        sjf.reset_net(sj_train)
        loss = torch.nn.functional.cross_entropy(sj_train(x).mean(0), y)
        opt_sj.zero_grad()
        loss.backward()
        opt_sj.step()

    def step_ours(amp: bool = False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(ours_train(x).float(), y)
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()

    ts, to, ta = [], [], []
    for _ in range(args.repeats):
        ts.append(_time(step_sj, 1))
        to.append(_time(step_ours, 1))
        if args.low_precision:
            ta.append(_time(lambda: step_ours(amp=True), 1))
    results["train_step_batch_8"] = {
        "spikingjelly_ms": 1e3 * statistics.median(ts),
        "ours_ms": 1e3 * statistics.median(to),
        "speedup": statistics.median(ts) / statistics.median(to),
        **(
            {
                "ours_bf16_amp_ms": 1e3 * statistics.median(ta),
                "speedup_bf16_amp": statistics.median(ts) / statistics.median(ta),
            }
            if ta
            else {}
        ),
    }
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

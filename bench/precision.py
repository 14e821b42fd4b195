"""Which precisions agree with float32 (not a test): the evidence behind ``Runner(precision="auto")``.

For the bundled Fashion-MNIST model (all 10,000 test images) and for random-weight Spikformers whose every layer
fires (CIFAR geometry, random images), run the plain float32 reference (``Runner(optimize=False)``) and the optimized
runner at each precision (``fp32``: BatchNorm folded, compiled neurons, event-driven layers, oneDNN products), and
print test top-1, the fraction of predictions equal to the reference ("agreement"; the rule for ``auto`` is at
least 99.5 %) and the time.

Usage: ``python bench/precision.py [--checkpoint models/spikformer-fmnist/1] [--random-models 3] [--json]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

PRECISIONS = ("fp32", "int8", "bf16")  # compared with the plain float32 model (no folding, no fast paths)


def _run(runner, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    logits = torch.cat([runner.run(images[i : i + batch]) for i in range(0, len(images), batch)])
    return logits, time.perf_counter() - t


def _compare(model, images: torch.Tensor, labels: torch.Tensor | None) -> dict:
    from spikeformer.runtime import Runner

    out = {}
    logits, seconds = _run(Runner(model, precision="fp32", optimize=False), images)
    ref = logits.argmax(1)
    out["reference"] = {"seconds": round(seconds, 2)}
    if labels is not None:
        out["reference"]["top1"] = float((ref == labels).float().mean())
    for p in PRECISIONS:
        logits, seconds = _run(Runner(model, precision=p), images)
        pred = logits.argmax(1)
        row = {"agreement": float((pred == ref).float().mean()), "seconds": round(seconds, 2)}
        if labels is not None:
            row["top1"] = float((pred == labels).float().mean())
        out[p] = row
        print(f"  {p}: {row}", file=sys.stderr)
    return out


def main() -> None:
    from spikeformer.checkpoint import load_checkpoint
    from spikeformer.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="models/spikformer-fmnist/1")
    ap.add_argument("--random-models", type=int, default=3)
    ap.add_argument("--random-images", type=int, default=500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    model, manifest = load_checkpoint(args.checkpoint)
    test = load_dataset(manifest.dataset, "test")
    images = manifest.preprocess(test.images)
    print(f"{args.checkpoint} on {len(test)} {manifest.dataset} test images:", file=sys.stderr)
    results = {"bundled": {"checkpoint": args.checkpoint, **_compare(model, images, test.labels)}, "random": []}

    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    from spikeformer.interop import from_spikingjelly

    spec = importlib.util.spec_from_file_location("speed_cpu", Path(__file__).with_name("speed_cpu.py"))
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    for seed in range(args.random_models):
        sj = spikformer_cifar10()
        torch.manual_seed(seed)
        speed._randomize(sj, seed=seed)
        x = torch.rand(args.random_images, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
        print(f"random-weight Spikformer-4-384 (seed {seed}) on {len(x)} random images:", file=sys.stderr)
        results["random"].append({"seed": seed, **_compare(from_spikingjelly(sj.eval()), x, None)})
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Compare ``SpikeformerConverter`` with SpikingJelly's ``ann2snn.Converter`` (rate-coding recipe).

``python -m spikeformer.convert.spikingjelly_compare --json [--vit-checkpoint DIR]``

1. Where SpikingJelly's converter applies: a plain CNN (Conv-BN-ReLU-AvgPool x2, Linear-ReLU-Linear) trained here
   on Fashion-MNIST for ``--epochs`` epochs (seeded), converted by both with max and 99.9th-percentile thresholds and
   evaluated at every T on the first ``--limit-test`` test images.
2. On a convertible ViT checkpoint (``--vit-checkpoint``): what SpikingJelly's converter does with it (it traces the
   model with torch.fx and replaces ``nn.ReLU`` modules; QCFS activations and the attention products are left as
   they are).

Prints one JSON object with ``--json``; writes ``spikingjelly_compare.png`` and ``.json`` into ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["main", "small_cnn"]


def small_cnn() -> nn.Sequential:
    """28x28x1 -> 10: two Conv3x3-BN-ReLU-AvgPool2 stages (16, 32 channels), Linear(1568, 128)-ReLU-Linear(128, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def _train_cnn(train_x: torch.Tensor, train_y: torch.Tensor, epochs: int, seed: int, log) -> nn.Sequential:
    torch.manual_seed(seed)
    net = small_cnn()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * (len(train_x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=gen)
        for i in range(len(train_x) // 128):
            idx = order[i * 128 : (i + 1) * 128]
            loss = nn.functional.cross_entropy(net(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(f"CNN epoch {epoch + 1}/{epochs}: last loss {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([model(c).argmax(1) for c in x.split(batch)])


@torch.no_grad()
def _predict_sj(snn: nn.Module, x: torch.Tensor, steps: int, batch: int = 500) -> torch.Tensor:
    """SpikingJelly's converted models are single-step: feed the image ``steps`` times, sum the outputs."""
    from spikingjelly.activation_based import functional

    preds = []
    for c in x.split(batch):
        functional.reset_net(snn)
        out = sum(snn(c) for _ in range(steps))
        preds.append(out.argmax(1))
    functional.reset_net(snn)
    return torch.cat(preds)


def _sj_convert(ann: nn.Module, calib: torch.Tensor, mode: str) -> nn.Module:
    import copy

    from spikingjelly.activation_based.ann2snn import Converter, RateCodingRecipe

    loader = [c for c in calib.split(128)]
    return Converter(RateCodingRecipe(loader, mode=mode)).convert(copy.deepcopy(ann).eval())


class _Tokens(nn.Module):
    """The ViT for one step without input validation (torch.fx cannot trace it): ``[B, C, H, W] -> logits``."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.vit.forward_features(x.unsqueeze(0)))[0]


def _vit_with_spikingjelly(
    path: str, calib: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, ts: list[int], log
) -> dict[str, Any]:
    """What SpikingJelly's converter does with the ViT checkpoint (never raises: errors are reported).

    1. The model as it is. 2. Its step path (``_Tokens``), which fx can trace. 3. The step path with every QCFS
    replaced by ``nn.ReLU``, so that SpikingJelly finds activations to replace: it then inserts IF neurons, but the
    attention products stay per-step products of spike trains (no expectation compensation).
    """
    import copy

    from spikingjelly.activation_based import neuron as sj_neuron

    from spikeformer.checkpoint import load_checkpoint
    from spikeformer.nn.quant import QCFS

    ann, manifest = load_checkpoint(path)
    out: dict[str, Any] = {"checkpoint": path, "model": manifest.model_name, "attempts": []}

    def attempt(label: str, model: nn.Module) -> nn.Module | None:
        rec: dict[str, Any] = {"what": label, "nn_relu_modules": sum(isinstance(m, nn.ReLU) for m in model.modules())}
        out["attempts"].append(rec)
        try:
            snn = _sj_convert(model, calib[:256], "Max")
        except Exception as e:  # noqa: BLE001 - the point is to report what SpikingJelly does
            rec.update(converted=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            return None
        rec.update(converted=True, spiking_neurons=sum(isinstance(m, sj_neuron.BaseNode) for m in snn.modules()))
        return snn

    attempt("the checkpoint's model as is", ann)
    attempt("its one-step path (fx-traceable wrapper), QCFS activations", _Tokens(ann))
    relu = copy.deepcopy(ann)
    for m in list(relu.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, QCFS):
                setattr(m, child_name, nn.ReLU())
            elif isinstance(child, nn.Linear) and type(child) is not nn.Linear:  # a kernel wrapper fx cannot trace
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(m, child_name, plain)
    snn = attempt("one-step path with every QCFS replaced by nn.ReLU", _Tokens(relu))
    if snn is None:  # SpikingJelly rejects the graph; try once more with the attention products as plain matmuls
        import spikeformer.models.vit_relu as family

        ecm = family.expectation_matmul
        family.expectation_matmul = torch.matmul
        try:
            snn = attempt("as above, attention products as plain torch.matmul (no compensation)", _Tokens(relu))
        finally:
            family.expectation_matmul = ecm
    if snn is not None:
        rec = out["attempts"][-1]
        rec["ann_top1_relu_variant"] = float((_predict(_Tokens(relu).eval(), test_x) == test_y).float().mean())
        rec["results"] = []
        for t in ts:
            pred = _predict_sj(snn, test_x, t, batch=200)
            rec["results"].append({"timesteps": t, "top1": float((pred == test_y).float().mean())})
            log(f"SpikingJelly on the ReLU ViT, T={t}: top-1 {100 * rec['results'][-1]['top1']:.2f}%")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", default="4,8,16,32,64")
    parser.add_argument("--epochs", type=int, default=2, help="CNN training epochs")
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--limit-train", type=int, default=None, help="train the CNN on the first N images only")
    parser.add_argument("--calibration-samples", type=int, default=512)
    parser.add_argument("--vit-checkpoint", default=None)
    parser.add_argument("--limit-test-vit", type=int, default=1000, help="test images for the ViT attempts")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/spikingjelly-compare")
    parser.add_argument("--json", action="store_true", dest="as_json")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def fail(msg: str) -> int:
        if args.as_json:
            print(json.dumps({"ok": False, "error": msg}))
        else:
            log(f"error: {msg}")
        return 2

    from spikeformer.convert.converter import SpikeformerConverter, parse_timesteps
    from spikeformer.data import DatasetNotFoundError, Preprocess, load_dataset

    try:
        ts = parse_timesteps(args.timesteps)
        if args.epochs < 1 or args.limit_test < 1 or args.calibration_samples < 1:
            raise ValueError("--epochs, --limit-test and --calibration-samples must be >= 1")
        train = load_dataset("fashion-mnist", "train", args.data_root)
        test = load_dataset("fashion-mnist", "test", args.data_root)
    except (ValueError, DatasetNotFoundError) as e:
        return fail(str(e))
    try:
        import spikingjelly
    except ImportError:
        return fail("SpikingJelly is not installed (pip install spikingjelly)")
    pre = Preprocess.for_dataset("fashion-mnist")
    n_train = len(train) if args.limit_train is None else max(128, args.limit_train)
    train_x, train_y = pre(train.images[:n_train]), train.labels[:n_train]
    test_x, test_y = pre(test.images[: args.limit_test]), test.labels[: args.limit_test]
    calib = train_x[: args.calibration_samples]

    t0 = time.perf_counter()
    cnn = _train_cnn(train_x, train_y, args.epochs, args.seed, log)
    train_seconds = time.perf_counter() - t0
    ann_pred = _predict(cnn, test_x)
    ann_top1 = float((ann_pred == test_y).float().mean())
    log(f"CNN top-1 {100 * ann_top1:.2f}% ({train_seconds:.0f} s)")

    curves: dict[str, list[dict[str, float]]] = {}
    for label, method, sj_mode in (("max", "max", "Max"), ("p99.9", "percentile", "99.9%")):
        ours = SpikeformerConverter(ts[0], method=method, percentile=99.9)
        ours.calibrate(cnn, calib)
        sj = _sj_convert(cnn, calib, sj_mode)
        for name in (f"spikeformer {label}", f"spikingjelly {label}"):
            curves[name] = []
        for t in ts:
            conv = SpikeformerConverter(t, method=method, percentile=99.9)
            conv.statistics = ours.statistics
            for name, pred in (
                (f"spikeformer {label}", _predict(conv.convert(cnn), test_x)),
                (f"spikingjelly {label}", _predict_sj(sj, test_x, t)),
            ):
                row = {
                    "timesteps": t,
                    "top1": float((pred == test_y).float().mean()),
                    "agreement": float((pred == ann_pred).float().mean()),
                }
                curves[name].append(row)
                log(f"{name} T={t}: top-1 {100 * row['top1']:.2f}%, agreement {100 * row['agreement']:.2f}%")

    vit = None
    if args.vit_checkpoint:
        n = min(len(test_x), args.limit_test_vit)
        vit = _vit_with_spikingjelly(args.vit_checkpoint, calib, test_x[:n], test_y[:n], ts, log)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, rows in curves.items():
        ax.plot(
            [r["timesteps"] for r in rows],
            [100 * r["top1"] for r in rows],
            "o-" if "spikeformer" in name else "s--",
            label=name,
        )
    ax.axhline(100 * ann_top1, color="k", ls=":", label=f"ANN (CNN) {100 * ann_top1:.2f}%")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts, [str(t) for t in ts])
    ax.set_xlabel("timesteps T")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"CNN conversion on Fashion-MNIST (first {len(test_x)} test images)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "spikingjelly_compare.png", dpi=110)
    plt.close(fig)
    result = {
        "ok": True,
        "spikingjelly": spikingjelly.__version__ if hasattr(spikingjelly, "__version__") else "unknown",
        "cnn": {"epochs": args.epochs, "train_seconds": round(train_seconds, 1), "ann_top1": ann_top1},
        "num_test": len(test_x),
        "curves": curves,
        "vit": vit,
        "files": {"png": str(out / "spikingjelly_compare.png"), "json": str(out / "spikingjelly_compare.json")},
    }
    (out / "spikingjelly_compare.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.as_json:
        print(json.dumps(result))
    else:
        log(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""The whole ANN -> SNN sweep from a checkpoint: convert at every T, evaluate (top-1, agreement with the ANN), profile
the energy per inference, save each converted model as a checkpoint and plot the curve (``spikeformer convert``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["plot_conversion", "probe_thresholds", "run_conversion"]


def plot_conversion(
    results: list[dict[str, Any]], ann_top1: float, ann_energy: float | None, path: Path, title: str
) -> Path:
    """Plot top-1 and agreement with the ANN (left) and energy per inference (right) against T; returns the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = [r["timesteps"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ts, [100 * r["top1"] for r in results], "o-", label="converted SNN top-1")
    a.plot(ts, [100 * r["agreement"] for r in results], "s--", label="agreement with the ANN")
    a.axhline(100 * ann_top1, color="k", ls=":", label=f"ANN top-1 {100 * ann_top1:.2f}%")
    a.axhline(99 * ann_top1, color="r", ls=":", lw=0.8, label="99 % of the ANN")
    a.set_xscale("log", base=2)
    a.set_xticks(ts, [str(t) for t in ts])
    a.set_xlabel("timesteps T")
    a.set_ylabel("%")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.plot(ts, [1e6 * r["energy_j"] for r in results], "o-", label="SNN (cmos45nm)")
    if ann_energy:
        b.axhline(1e6 * ann_energy, color="k", ls=":", label="ANN, same architecture")
    b.set_xscale("log", base=2)
    b.set_xticks(ts, [str(t) for t in ts])
    b.set_xlabel("timesteps T")
    b.set_ylabel("energy per inference (uJ)")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_conversion(
    checkpoint: str,
    timesteps: list[int],
    dataset: str = "fashion-mnist",
    data_root: str | None = None,
    method: str = "qcfs",
    percentile: float = 99.9,
    calibration_samples: int = 512,
    limit_test: int | None = None,
    energy_samples: int = 16,
    output: str | None = None,
    save: bool = True,
    progress: bool = True,
    neuron: str = "st-bif",
) -> dict[str, Any]:
    """Convert the ANN checkpoint at every T, evaluate and profile each converted model, save and plot the sweep.

    Args:
        checkpoint: ANN checkpoint folder (e.g. a vit-relu-fmnist run).
        timesteps: T values, ascending.
        dataset: fashion-mnist, digits or folder:PATH (test split evaluated, train split calibrates).
        data_root: Where the data set's files are.
        method: Thresholds: ``qcfs`` (trained), ``max`` or ``percentile`` (calibrated).
        percentile: Percentile of ``method="percentile"``.
        calibration_samples: Training images used to calibrate.
        limit_test: Evaluate the first N test images only.
        energy_samples: Test images profiled for energy.
        output: Folder for ``conversion.png``, ``conversion.json`` and the checkpoints
            (default: ``runs/convert-<checkpoint folder name>``).
        save: Save each converted model as ``OUTPUT/snn-tT``.
        progress: Show progress bars on stderr.
        neuron: ``st-bif`` (signed neurons; exact once settled) or ``if`` (rate-coded IF).

    Returns:
        The JSON-ready summary (also written as ``conversion.json``): ANN top-1 and energy, and per T top-1,
        agreement with the ANN, energy (cmos45nm), operation counts and the checkpoint written.

    Raises:
        ConversionError: The ANN has layers that cannot be converted.
        ValueError: Bad arguments, or the data set's images do not fit the model.
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from spikeformer.checkpoint import load_checkpoint, save_checkpoint
    from spikeformer.convert.converter import ConversionError, SpikeformerConverter, find_unconvertible
    from spikeformer.convert.energy import profile_converted
    from spikeformer.data import load_dataset
    from spikeformer.runtime import Runner
    from spikeformer.runtime.evaluate import evaluate_model

    ann, manifest = load_checkpoint(checkpoint)
    problems = find_unconvertible(ann)
    if problems:
        raise ConversionError(problems)
    probe = SpikeformerConverter(timesteps[0], method, percentile)
    test = load_dataset(dataset, "test", data_root)
    if limit_test is not None:
        if limit_test < 1:
            raise ValueError(f"--limit-test must be >= 1, got {limit_test}")
        test = test.subset(range(min(limit_test, len(test))))
    expected = tuple(ann.input_shape)
    if tuple(test.image_shape) != expected:
        raise ValueError(
            f"{dataset} images are {list(test.image_shape)} (C, H, W); the checkpoint's model takes {list(expected)}"
        )
    preprocess = manifest.preprocess
    out = Path(output) if output else Path("runs") / f"convert-{Path(checkpoint).resolve().name}"
    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]

    def evaluate(model: torch.nn.Module, label: str, batch: int):
        with Progress(*columns, console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task(label, total=len(test))
            return evaluate_model(
                Runner(model, precision="fp32"), test, preprocess, batch, progress=lambda n: bar.update(task, advance=n)
            )

    ann_eval = evaluate(ann, "ANN", 500)
    ann_pred = torch.tensor(ann_eval.predictions)
    calib = load_dataset(dataset, "train", data_root)
    calib_x = preprocess(calib.images[: max(1, calibration_samples)])
    probe.calibrate(ann, calib_x)
    energy_x = preprocess(test.images[: max(1, energy_samples)])

    def converted(t: int) -> torch.nn.Module:
        conv = SpikeformerConverter(t, method, percentile, neuron)
        conv.statistics, conv.calibration_samples = probe.statistics, probe.calibration_samples
        return conv.convert(ann)

    predictions = _sweep_predictions(converted, timesteps, test, preprocess, evaluate, progress, console, columns)
    labels = test.labels
    results, ann_energy = [], None
    for t in timesteps:
        snn = converted(t)
        pred = predictions[t]
        top1 = float((pred == labels).float().mean())
        agreement = float((pred == ann_pred).float().mean())
        report = profile_converted(snn, energy_x)
        ann_energy = report.ann_energy("cmos45nm")
        row: dict[str, Any] = {
            "timesteps": t,
            "top1": top1,
            "agreement": agreement,
            "energy_j": report.energy("cmos45nm"),
            "kept_of_ann": top1 / ann_eval.top1 if ann_eval.top1 else None,
            "sops": report.total_sops,
            "macs": report.total_macs,
            "spikes": report.total_spikes,
        }
        if save:
            folder = out / f"snn-t{t}"
            save_checkpoint(
                snn,
                folder,
                preprocess,
                manifest.class_names,
                manifest.dataset,
                {
                    "top1": top1,
                    "agreement_with_ann": agreement,
                    "ann_top1": ann_eval.top1,
                    "energy_j_cmos45nm": row["energy_j"],
                    "evaluated_on": f"{dataset} test ({len(test)})",
                },
                training={
                    "converted_from": str(checkpoint),
                    "ann_sha256": manifest.sha256,
                    "method": method,
                    "neuron": neuron,
                    "percentile": percentile if method == "percentile" else None,
                    "calibration_samples": probe.calibration_samples,
                    "thresholds": probe_thresholds(probe, ann),
                },
                samples=manifest.samples,  # the ANN's reference images, for the service's smoke checks
            )
            row["checkpoint"] = str(folder)
        results.append(row)
        console.print(
            f"T={t}: top-1 {100 * top1:.2f}% (ANN {100 * ann_eval.top1:.2f}%), agreement {100 * agreement:.2f}%, "
            f"{1e6 * row['energy_j']:.2f} uJ/inference",
            highlight=False,
        )
    title = f"{manifest.model_name} -> SNN ({method}, {neuron} neurons) on {dataset} test ({len(test)} images)"
    png = plot_conversion(results, ann_eval.top1, ann_energy, out / "conversion.png", title)
    summary = {
        "ok": True,
        "checkpoint": str(checkpoint),
        "model": manifest.model_name,
        "dataset": dataset,
        "num_test": len(test),
        "method": method,
        "neuron": neuron,
        "ann_top1": ann_eval.top1,
        "ann_energy_j": ann_energy,
        "results": results,
        "files": {"png": str(png), "json": str(out / "conversion.json")},
    }
    (out / "conversion.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def probe_thresholds(conv: Any, ann: Any) -> dict[str, float]:
    """The converter's thresholds for ``ann`` (module path -> lambda), for the manifest."""
    return {k: round(v, 6) for k, v in conv.thresholds(ann).items()}


def _sweep_predictions(converted, timesteps, test, preprocess, evaluate, progress, console, columns):
    """Predictions ``{T: [N]}`` of the converted model at every T.

    A converted ``ReLUViT`` is causal (no layer depends on the total T), so one run at the largest T gives every
    smaller T: the model run for ``t`` steps returns the mean (rate coding) or the sum (``st-bif``) of the first ``t``
    step logits, whose argmax is the argmax of their sum (``tests/convert/test_converter.py`` checks this).
    Other models are evaluated once per T through the ``Runner``.
    """
    import torch
    from rich.progress import Progress

    from spikeformer.data import iterate_batches
    from spikeformer.models.vit_relu import ReLUViT
    from spikeformer.nn.neuron import set_backend

    tmax = max(timesteps)
    snn = converted(tmax)
    if not isinstance(snn, ReLUViT):
        return {t: torch.tensor(evaluate(converted(t), f"SNN T={t}", max(4, 4096 // t)).predictions) for t in timesteps}
    set_backend(snn, "fused")  # the Runner's kernel
    preds: dict[int, list[torch.Tensor]] = {t: [] for t in timesteps}
    with Progress(*columns, console=console, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"SNN, T = {', '.join(map(str, timesteps))} in one run", total=len(test))
        with torch.inference_mode():
            for x, _ in iterate_batches(test, max(4, 2048 // tmax), preprocess=preprocess):
                running = snn.forward_steps(x).cumsum(0)  # [T, B, classes]: sums of the first t step logits
                for t in timesteps:
                    preds[t].append(running[t - 1].argmax(1))
                bar.update(task, advance=len(x))
    return {t: torch.cat(p) for t, p in preds.items()}

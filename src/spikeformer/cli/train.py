"""``spikeformer train``, ``spikeformer evaluate`` and ``spikeformer profile``."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from spikeformer.cli._output import JsonFlag, console, emit_json, fail, parse_pairs

if TYPE_CHECKING:
    from spikeformer.data import ArrayDataset

__all__ = ["evaluate", "parse_model_args", "profile", "register", "train"]


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``["embed_dim=128", "pool_stages=[false,true,true,false]"]`` -> dict; values are JSON, else strings.

    Raises:
        ValueError: A pair is not ``KEY=VALUE``.
    """
    return parse_pairs(
        pairs,
        _json_or_text,
        "--arg expects KEY=VALUE (VALUE in JSON, e.g. depth=2 or pool_stages=[0,1,1,0])",
    )


def _json_or_text(_key: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def train(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "spikformer-4-384",
    arg: Annotated[list[str], typer.Option("--arg", help="Model override KEY=VALUE (repeatable).")] = [],  # noqa: B006
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or folder:PATH.")] = "fashion-mnist",
    data_root: Annotated[str | None, typer.Option(help="Where the data set's files are.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: float = 2e-3,
    min_lr: float = 1e-5,
    warmup_epochs: float = 1.0,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    amp: Annotated[bool, typer.Option(help="bf16 autocast (CPUs with AMX, CUDA).")] = False,
    grad_clip: float = 1.0,
    cuda_graphs: Annotated[bool, typer.Option(help="On one CUDA GPU, replay each step as a captured graph.")] = True,
    augment: Annotated[bool, typer.Option(help="Random crop + horizontal flip.")] = True,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    output: Annotated[str, typer.Option(help="Run folder.")] = "runs/latest",
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT/last when present.")] = True,
    stop_after: Annotated[int | None, typer.Option(help="End after N epochs of this run; resume later.")] = None,
    limit_train: Annotated[int | None, typer.Option(help="Use the first N training images.")] = None,
    limit_test: Annotated[int | None, typer.Option(help="Use the first N test images.")] = None,
    init_from: Annotated[str | None, typer.Option(help="Checkpoint whose weights initialise the model.")] = None,
    distill: Annotated[str | None, typer.Option(help="Teacher checkpoint for knowledge distillation.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a model; writes OUTPUT/metrics.jsonl, OUTPUT/curves.png and the checkpoint OUTPUT/checkpoint."""
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError
    from spikeformer.train import TrainConfig, fit

    try:
        cfg = TrainConfig(
            model=model,
            model_args=parse_model_args(arg),
            dataset=dataset,
            data_root=data_root,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_lr=min_lr,
            warmup_epochs=warmup_epochs,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
            amp=amp,
            grad_clip=grad_clip,
            cuda_graphs=cuda_graphs,
            augment=augment,
            seed=seed,
            device=device,
            output=output,
            resume=resume,
            limit_train=limit_train,
            limit_test=limit_test,
            init_from=init_from,
            distill_from=distill,
        )
        result = fit(cfg, progress=not as_json)
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    summary = {
        "checkpoint": str(result.checkpoint),
        "top1": result.top1,
        "epochs": result.epochs,
        "seconds": round(result.seconds, 1),
        "output": output,
    }
    if as_json:
        emit_json(summary)
    else:
        console.print(
            f"checkpoint {result.checkpoint}: test top-1 {100 * result.top1:.2f}% "
            f"after {result.epochs} epochs ({result.seconds / 60:.1f} min)",
            highlight=False,
        )


def evaluate(
    checkpoint: Annotated[str, typer.Option(help="Checkpoint folder.")],
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or folder:PATH.")] = "fashion-mnist",
    split: Annotated[str, typer.Option(help="test, train, or all (every image of a folder data set).")] = "test",
    data_root: str | None = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N images only.")] = None,
    batch_size: int = 500,
    output: Annotated[str | None, typer.Option(help="Folder for confusion.png (default: the checkpoint's).")] = None,
    backend: Annotated[
        str, typer.Option(help="torch (the float model), or a fixed-point chip emulator: loihi2-emu, spinnaker2-emu.")
    ] = "torch",
    weight_splits: Annotated[int, typer.Option(help="Emulators: synapse groups per weight (see compile).")] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Top-1 and per-class accuracy on a data set split; writes a confusion-matrix PNG.

    With an emulator backend the compiled integer network runs instead, and the report adds its agreement with the
    float model's predictions."""
    from pathlib import Path

    from spikeformer import load_pipeline
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError
    from spikeformer.train import evaluate_model, load_evaluation_data, plot_confusion

    try:
        pipe = load_pipeline(checkpoint)
        data = load_evaluation_data(dataset, split, data_root, limit, pipe.input_shape)
        if backend != "torch":
            return _evaluate_emulated(checkpoint, backend, data, dataset, split, batch_size, weight_splits, as_json)
        t0 = time.perf_counter()
        result = evaluate_model(pipe.runner, data, pipe.preprocess, batch_size)
        seconds = time.perf_counter() - t0
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    png = plot_confusion(
        result,
        data.classes,
        Path(output or checkpoint) / "confusion.png",
        title=f"{pipe.manifest.model_name} on {dataset} {split}: top-1 {100 * result.top1:.2f}%",
    )
    report = {
        "checkpoint": checkpoint,
        "dataset": dataset,
        "split": split,
        **result.to_dict(),
        "seconds": round(seconds, 2),
        "confusion_png": str(png),
    }
    if as_json:
        emit_json(report)
        return
    table = Table("class", "accuracy")
    for name, acc in result.per_class.items():
        table.add_row(name, f"{100 * acc:.2f}%")
    Console().print(table)
    Console().print(
        f"top-1: {100 * result.top1:.2f}% on {result.num_samples} images ({seconds:.1f}s); confusion matrix: {png}",
        highlight=False,
    )


def _evaluate_emulated(
    checkpoint: str,
    backend: str,
    data: ArrayDataset,
    dataset: str,
    split: str,
    batch_size: int,
    weight_splits: int,
    as_json: bool,
) -> None:
    """``evaluate --backend loihi2-emu|spinnaker2-emu``: the compiled integer network against the float model."""
    from rich.progress import Progress

    from spikeformer.hardware import evaluate_emulated, prepare_emulator

    emu = prepare_emulator(checkpoint, backend, weight_splits)
    t0 = time.perf_counter()
    with Progress(console=console, transient=True, disable=not sys.stderr.isatty() and as_json) as bar:
        task = bar.add_task(f"{backend}", total=len(data))
        res = evaluate_emulated(
            emu.program, emu.model, data, emu.preprocess, batch_size, progress=lambda n: bar.advance(task, n)
        )
    seconds = time.perf_counter() - t0
    report = {
        "checkpoint": checkpoint,
        "dataset": dataset,
        "split": split,
        "backend": backend,
        "quantization": emu.quantization,
        **res,
        "seconds": round(seconds, 2),
    }
    if as_json:
        emit_json(report)
        return
    console.print(
        f"{backend}: top-1 {100 * res['top1']:.2f}% (float model {100 * res['float_top1']:.2f}%), predictions agree "
        f"with the float model on {100 * res['agreement']:.2f}% of {res['num_samples']} images ({seconds:.0f}s)",
        highlight=False,
    )


def profile(
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint folder (trained weights).")] = None,
    model: Annotated[str | None, typer.Option(help="Registered model name instead (random weights).")] = None,
    arg: Annotated[list[str], typer.Option("--arg", help="Override KEY=VALUE for --model (repeatable).")] = [],  # noqa: B006
    dataset: Annotated[
        str | None, typer.Option(help="Profile the first N test images of fashion-mnist, digits or folder:PATH.")
    ] = None,
    data_root: Annotated[str | None, typer.Option(help="Where the data set's files are.")] = None,
    samples: Annotated[int, typer.Option(min=1, help="N: images profiled (random ones without --dataset).")] = 4,
    hardware: Annotated[
        str, typer.Option(help="Comma-separated: cmos45nm, loihi, loihi2, spinnaker2, gpu-measured.")
    ] = "cmos45nm,loihi,loihi2,spinnaker2",
    integer_inputs: Annotated[
        str, typer.Option(help="Integer non-binary inputs: accumulate (value n = n ACs) or mac.")
    ] = "accumulate",
    seed: Annotated[int, typer.Option(help="Seed of the random images.")] = 0,
    output: Annotated[str, typer.Option(help="Folder for profile.json, firing_rates.png, energy.png.")] = "profile",
    as_json: JsonFlag = False,
) -> None:
    """Count SOPs, MACs and spikes of one run; energy per inference by hardware model, next to the ANN."""
    from spikeformer import create_model, load_pipeline
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.data import DatasetNotFoundError
    from spikeformer.energy import get_hardware, profile_inputs, profile_run

    try:
        if (checkpoint is None) == (model is None):
            raise ValueError("give exactly one of --checkpoint PATH (trained weights) or --model NAME (random weights)")
        names = [h.strip() for h in hardware.split(",") if h.strip()]
        if not names:
            raise ValueError("--hardware needs at least one name, e.g. cmos45nm,loihi")
        models = [get_hardware(n) for n in names]
        if checkpoint is not None:
            if arg:
                raise ValueError("--arg applies to --model only: a checkpoint's architecture is fixed")
            pipe = load_pipeline(checkpoint)
            net, preprocess, shape = pipe.model, pipe.preprocess, tuple(pipe.input_shape)
            weights = f"checkpoint {checkpoint}"
        else:
            net = create_model(model, **parse_model_args(arg)).eval()
            preprocess, shape = None, tuple(net.input_shape)
            weights = f"{model}: RANDOM weights (untrained; firing rates and energy are not a trained network's)"
            console.print(f"note: {weights}", highlight=False)
        x, inputs = profile_inputs(shape, preprocess, dataset=dataset, data_root=data_root, samples=samples, seed=seed)
        result, report = profile_run(
            net, x, models, output, integer_inputs=integer_inputs, weights=weights, inputs=inputs
        )
    except (ValueError, RuntimeError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(result)
        return
    out = Console()
    (out if out.is_terminal else Console(width=200)).print(report.table(models))
    console.print(f"inputs: {inputs}; wrote {', '.join(result['files'].values())}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands (``train``, ``evaluate``, ``profile``) to the root ``app``."""
    app.command()(train)
    app.command()(evaluate)
    app.command()(profile)

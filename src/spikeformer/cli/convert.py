"""``spikeformer convert --checkpoint ANN --timesteps 4,8,16,32,64``: convert, evaluate at every T (top-1, agreement
with the ANN, energy per inference), save each converted model as a checkpoint and plot the curve.

The sweep itself is :func:`spikeformer.convert.run_conversion`; this module parses the options and prints.
"""

from __future__ import annotations

from typing import Annotated

import typer

from spikeformer._deprecation import moved_names
from spikeformer.cli._output import JsonFlag, console, emit_json, fail

__all__ = ["convert", "register"]

# Names this module exported before the sweep moved into the library: name -> module that holds it now.
_MOVED = {
    "parse_timesteps": "spikeformer.convert.converter",
    "probe_thresholds": "spikeformer.convert.run",
    "run_conversion": "spikeformer.convert.run",
}


__getattr__ = moved_names(__name__, _MOVED)


def convert(
    checkpoint: Annotated[str, typer.Option(help="ANN checkpoint folder (e.g. a vit-relu-fmnist run).")],
    timesteps: Annotated[str, typer.Option(help="Comma-separated T values.")] = "4,8,16,32,64",
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or folder:PATH.")] = "fashion-mnist",
    data_root: Annotated[str | None, typer.Option(help="Where the data set's files are.")] = None,
    method: Annotated[str, typer.Option(help="Thresholds: qcfs (trained), max or percentile (calibrated).")] = "qcfs",
    percentile: Annotated[float, typer.Option(help="Percentile of --method percentile.")] = 99.9,
    neuron: Annotated[
        str, typer.Option(help="st-bif (signed neurons, SpikeZIP-TF; exact once settled) or if (rate-coded IF).")
    ] = "st-bif",
    calibration_samples: Annotated[int, typer.Option(min=1, help="Training images used to calibrate.")] = 512,
    limit_test: Annotated[int | None, typer.Option(help="Evaluate the first N test images only.")] = None,
    energy_samples: Annotated[int, typer.Option(min=1, help="Test images profiled for energy.")] = 16,
    output: Annotated[str | None, typer.Option(help="Folder for the plot, results and checkpoints.")] = None,
    save: Annotated[bool, typer.Option(help="Save each converted model as OUTPUT/snn-tT.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Convert an ANN checkpoint to spiking networks; report top-1, agreement and energy per T, plot the curve."""
    from spikeformer.checkpoint import CheckpointError
    from spikeformer.convert import run_conversion
    from spikeformer.convert.converter import parse_timesteps
    from spikeformer.data import DatasetNotFoundError

    try:
        ts = parse_timesteps(timesteps)
        if method not in ("qcfs", "max", "percentile"):
            raise ValueError(f"unknown --method {method!r}; accepted: qcfs, max, percentile")
        if not 0 < percentile <= 100:
            raise ValueError(f"--percentile must be in (0, 100], got {percentile}")
        if neuron not in ("if", "st-bif"):
            raise ValueError(f"unknown --neuron {neuron!r}; accepted: if, st-bif")
        summary = run_conversion(
            checkpoint,
            ts,
            dataset=dataset,
            data_root=data_root,
            method=method,
            percentile=percentile,
            calibration_samples=calibration_samples,
            limit_test=limit_test,
            energy_samples=energy_samples,
            output=output,
            save=save,
            progress=not as_json,
            neuron=neuron,
        )
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(summary)
        return
    console.print(f"ANN top-1 {100 * summary['ann_top1']:.2f}%; wrote {summary['files']['png']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's top-level command (``convert``) to the root ``app``."""
    app.command("convert")(convert)

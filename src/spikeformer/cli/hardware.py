"""``spikeformer compile``: quantize, partition and place a checkpoint on a neuromorphic target.

The compiler is :mod:`spikeformer.hardware`; this module parses the options, calls it and prints the placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from spikeformer.cli._output import JsonFlag, console, emit_json, fail, parse_pairs

if TYPE_CHECKING:
    from spikeformer.hardware import CompileResult

__all__ = ["compile_cmd", "parse_limits", "register"]


def parse_limits(pairs: list[str]) -> dict[str, int]:
    """``["neurons_per_core=4096", ...]`` -> ``{"neurons_per_core": 4096}``.

    Raises:
        ValueError: A pair is not ``NAME=INTEGER``.
    """
    limits = parse_pairs(pairs, _integer, "--limit takes NAME=VALUE")
    return {key.replace("-", "_"): v for key, v in limits.items()}


def _integer(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"--limit {key}: {raw!r} is not an integer") from None


def _print_table(result: CompileResult) -> None:
    from rich.console import Console
    from rich.table import Table

    from spikeformer.hardware.compiler import placement_table
    from spikeformer.hardware.report import PLACEMENT_COLUMNS

    table = Table(*PLACEMENT_COLUMNS)
    for row in placement_table(result):
        table.add_row(*row)
    Console().print(table)


def compile_cmd(
    target: Annotated[str, typer.Option(help="loihi2 or spinnaker2.")],
    checkpoint: Annotated[str, typer.Option(help="Checkpoint folder.")],
    chips: Annotated[int | None, typer.Option(help="Chips available (fail when the model needs more).")] = None,
    output: Annotated[str | None, typer.Option(help="Folder for report.json, placement.txt, the program.")] = None,
    weight_bits: Annotated[int | None, typer.Option(help="Weight mantissa bits (default: the target's).")] = None,
    exponent: Annotated[str, typer.Option(help="Weight exponent shared per 'layer' or per 'channel'.")] = "layer",
    weight_splits: Annotated[int, typer.Option(help="Synapse groups per weight (2: ~15-bit weights).")] = 2,
    limit: Annotated[list[str] | None, typer.Option(help="Override a target limit: NAME=VALUE.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Quantize, partition and place a checkpoint on Loihi 2 or SpiNNaker2; write the placement report."""
    from spikeformer.checkpoint import CheckpointError, load_checkpoint
    from spikeformer.hardware.compiler import compile_model, quant_config_for
    from spikeformer.hardware.graph import UnsupportedLayerError
    from spikeformer.hardware.quantize import QuantizationError
    from spikeformer.hardware.report import report_text, write_compile_outputs
    from spikeformer.hardware.targets import get_target

    try:
        if chips is not None and chips < 1:
            raise ValueError(f"--chips must be >= 1, got {chips}")
        spec = get_target(target, **parse_limits(limit or []))
        model, manifest = load_checkpoint(checkpoint)
        cfg = quant_config_for(manifest, weight_bits, exponent, weight_splits)
        samples = manifest.sample_images()
        x = manifest.preprocess(samples[0]) if samples else None
        result = compile_model(model, spec, cfg, samples=x, chips=chips)
    except UnsupportedLayerError as e:
        fail(f"unsupported layer: {e}", as_json=as_json)
    except (QuantizationError, CheckpointError, ValueError) as e:
        fail(str(e), as_json=as_json)
    report = {"checkpoint": checkpoint, **result.to_dict()}
    if output:
        report["output"] = str(write_compile_outputs(result, report, output))
    if as_json:
        emit_json(report)
    else:
        _print_table(result)
        console.print(report_text(report), highlight=False, markup=False)
    raise typer.Exit(0 if result.ok else 1)


def register(app: typer.Typer) -> None:
    """Add this module's top-level command (``compile``) to the root ``app``."""
    app.command("compile")(compile_cmd)

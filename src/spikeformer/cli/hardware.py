"""`spikeformer compile`: quantize, partition and place a checkpoint on a neuromorphic target (spikeformer.hardware)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "parse_limits"]


def parse_limits(pairs: list[str]) -> dict[str, int]:
    """``["neurons_per_core=4096", ...]`` -> ``{"neurons_per_core": 4096}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--limit takes NAME=VALUE, got {pair!r}")
        try:
            out[key.strip().replace("-", "_")] = int(value)
        except ValueError:
            raise ValueError(f"--limit {key}: {value!r} is not an integer") from None
    return out


def _table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from spikeformer.hardware.compiler import placement_table

    table = Table("layer", "op", "where", "neurons", "cores", "memory/core", "spikes or ops", "why")
    for row in placement_table(result):
        table.add_row(*row)
    Console().print(table)


def _plain_table(result) -> str:
    from spikeformer.hardware.compiler import placement_table

    head = ("layer", "op", "where", "neurons", "cores", "memory/core", "spikes or ops", "why")
    rows = [head, *placement_table(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows)


def _text_report(report: dict) -> str:
    lines = [
        f"target {report['target']}: {report['cores_used']} cores on {report['chips_used']} chip(s) "
        f"({report['cores_per_chip']} cores per chip); model {report['model']}, T = {report['timesteps']}",
        "on cores: " + ", ".join(report["summary"]["cores"]),
        "on the embedded CPU: " + (", ".join(report["summary"]["embedded"]) or "nothing"),
        "on the host: " + (", ".join(report["summary"]["host"]) or "nothing"),
    ]
    joules = report["energy"]["joules_per_inference"]
    lines.append(
        f"energy per inference: {'not estimated' if joules is None else f'{joules * 1e6:.1f} uJ (estimate)'}; "
        f"{report['energy']['note']}"
    )
    for line in report["energy"]["lines"]:
        lines.append(
            f"  {line['component']}: {line['count']:.4g} x {line['pj_per_op']} pJ = {line['joules'] * 1e6:.2f} uJ "
            f"[{line['source']}]"
        )
    lat = report["latency"]
    s = lat.get("seconds_per_inference")
    lines.append(f"latency per inference: {'not estimated' if s is None else f'{s * 1e6:.1f} us'} ({lat['note']})")
    t = report["traffic"]
    lines.append(
        f"traffic per inference: {t['spikes_per_inference']:.0f} spikes, "
        f"{t['core_to_core_spike_messages_per_inference']:.4g} core-to-core messages, "
        f"{t['processor_to_core_values_per_inference']} graded values from processors ({t['note']})"
    )
    lines.append("assumptions:")
    lines += [f"  - {a}" for a in report["assumptions"]]
    lines += [f"  - {n}" for n in report["quantization"]["notes"]]
    for v in report["violations"]:
        lines.append(f"DOES NOT FIT: {v}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this subpackage's commands to ``app`` (called once by ``spikeformer.cli``)."""

    @app.command("compile")
    def compile_cmd(
        target: Annotated[str, typer.Option(help="loihi2 or spinnaker2.")],
        checkpoint: Annotated[str, typer.Option(help="Checkpoint folder.")],
        chips: Annotated[int | None, typer.Option(help="Chips available (fail when the model needs more).")] = None,
        output: Annotated[str | None, typer.Option(help="Folder for report.json, placement.txt, the program.")] = None,
        weight_bits: Annotated[int | None, typer.Option(help="Weight mantissa bits (default: the target's).")] = None,
        exponent: Annotated[str, typer.Option(help="Weight exponent shared per 'layer' or per 'channel'.")] = "layer",
        weight_splits: Annotated[int, typer.Option(help="Synapse groups per weight (2: ~15-bit weights).")] = 2,
        limit: Annotated[list[str] | None, typer.Option(help="Override a target limit: NAME=VALUE.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")] = False,
    ) -> None:
        """Quantize, partition and place a checkpoint on Loihi 2 or SpiNNaker2; write the placement report."""
        from safetensors.torch import save_file

        from spikeformer.checkpoint import CheckpointError, load_checkpoint
        from spikeformer.cli import _emit_json, console, fail
        from spikeformer.hardware.compiler import compile_model, quant_config_for
        from spikeformer.hardware.graph import UnsupportedLayerError
        from spikeformer.hardware.quantize import QuantizationError
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
            out = Path(output)
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
            (out / "placement.txt").write_text(_plain_table(result) + "\n\n" + _text_report(report) + "\n")
            save_file(result.program.tensors(), str(out / "program.safetensors"))
            (out / "program.json").write_text(json.dumps(result.program.describe(), indent=2, default=str) + "\n")
            report["output"] = str(out)
        if as_json:
            _emit_json(report)
        else:
            _table(result)
            console.print(_text_report(report), highlight=False, markup=False)
        raise typer.Exit(0 if result.ok else 1)

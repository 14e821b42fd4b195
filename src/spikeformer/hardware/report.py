"""The compiler's placement report as text, and the files ``spikeformer compile --output`` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spikeformer.hardware.compiler import CompileResult, placement_table

__all__ = ["PLACEMENT_COLUMNS", "placement_text", "report_text", "write_compile_outputs"]

PLACEMENT_COLUMNS = ("layer", "op", "where", "neurons", "cores", "memory/core", "spikes or ops", "why")
"""Column names of :func:`spikeformer.hardware.compiler.placement_table`."""


def placement_text(result: CompileResult) -> str:
    """The placement table as aligned plain text (the last column, the reason, is not padded)."""
    head = PLACEMENT_COLUMNS
    rows = [head, *placement_table(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows)


def report_text(report: dict[str, Any]) -> str:
    """A compile report (``CompileResult.to_dict()``) in plain text: where things run, energy, latency, traffic,
    assumptions and what does not fit."""
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


def write_compile_outputs(result: CompileResult, report: dict[str, Any], output: str | Path) -> Path:
    """Write ``report.json``, ``placement.txt``, ``program.safetensors`` and ``program.json`` into ``output``.

    Args:
        result: The compiler's result.
        report: The JSON-ready report written as ``report.json`` (``result.to_dict()`` plus what the caller adds).
        output: Folder (created).

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "placement.txt").write_text(placement_text(result) + "\n\n" + report_text(report) + "\n")
    save_file(result.program.tensors(), str(out / "program.safetensors"))
    (out / "program.json").write_text(json.dumps(result.program.describe(), indent=2, default=str) + "\n")
    return out

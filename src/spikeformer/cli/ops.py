"""Operations: ``spikeformer doctor``, ``spikeformer hardware status`` and ``spikeformer smoke``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spikeformer.cli._output import JsonFlag, console, emit_json, fail

__all__ = ["doctor", "hardware_app", "hardware_status_cmd", "register", "smoke"]

hardware_app = typer.Typer(help="Backends and their real telemetry.", no_args_is_help=True)


def doctor(
    url: Annotated[str | None, typer.Option(help="Service base URL to check.")] = "http://127.0.0.1:8000",
    model_repository: Annotated[
        str | None,
        typer.Option(
            help="Model repository folder (default: SPIKEFORMER_MODEL_REPOSITORY, else $SPIKEFORMER_HOME/models)."
        ),
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL (default: SPIKEFORMER_DATABASE_URL).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the runbook's investigation steps and rank what is wrong by severity (exit 1 when anything is)."""
    from pathlib import Path

    from spikeformer.ops.doctor import run_doctor
    from spikeformer.settings import get_settings

    report = run_doctor(
        url or None, Path(model_repository) if model_repository else get_settings().model_repository, database_url
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        table = Table("severity", "check", "finding")
        for f in report.ranked():
            table.add_row(f.sev or "ok", f.check, f.message)
        Console().print(table)
        console.print("all checks passed" if report.ok else f"worst: {report.worst}", highlight=False)
    raise typer.Exit(0 if report.ok else 1)


@hardware_app.command("status")
def hardware_status_cmd(as_json: JsonFlag = False) -> None:
    """Every backend with its availability and real readings (nothing is invented for absent hardware)."""
    from spikeformer.hardware import hardware_status

    status = hardware_status()
    if as_json:
        emit_json(status)
        return
    table = Table("backend", "device", "available", "temperature", "power", "memory", "note")
    for d in status["devices"]:
        temp = f"{d['temperature_c']:.0f} C" if d["temperature_c"] is not None else "-"
        power = f"{d['power_w']:.0f} W" if d["power_w"] is not None else "-"
        mem = f"{d['memory_used_mb']:.0f}/{d['memory_total_mb']:.0f} MB" if d["memory_total_mb"] else "-"
        table.add_row(
            d["backend"],
            d["device"],
            "yes" if d["available"] else "no",
            temp,
            power,
            mem,
            d["reason"] or d["details"].get("temperature", ""),
        )
    Console().print(table)


def smoke(
    url: Annotated[
        str, typer.Option(help="Base URL of the service.", envvar="SPIKEFORMER_SMOKE_URL")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer key; scope alerts or admin verifies the database round trip (skipped without a key).",
            envvar="SPIKEFORMER_API_KEY",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per HTTP request.", min=0.1)] = 10.0,
    record_wait: Annotated[
        float, typer.Option(help="Seconds to wait for the inference record to reach the database.", min=0.0)
    ] = 10.0,
    wait_ready: Annotated[
        float, typer.Option(help="First wait up to this many seconds for the service to become ready.", min=0.0)
    ] = 0.0,
    as_json: JsonFlag = False,
) -> None:
    """Check a running deployment end to end: health, models, inference, metrics, database. Exit 1 on a failure."""
    from spikeformer.ops.smoke import run_smoke

    try:
        result = run_smoke(url, api_key, timeout_s=timeout, record_wait_s=record_wait, wait_ready_s=wait_ready)
    except ValueError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(result.to_dict())
    else:
        for line in result.lines():
            print(line)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands (``doctor``, ``smoke``) to the root ``app``."""
    app.command()(doctor)
    app.command()(smoke)

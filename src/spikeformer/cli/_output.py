"""What every command module of the CLI shares: the stderr console, errors, JSON output and option types.

Commands that report results take ``--json`` (:data:`JsonFlag`) and then print exactly one JSON object on stdout
(:func:`emit_json`); everything meant for a person goes to stderr (:data:`console`), tables to stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from spikeformer.store import Database

__all__ = [
    "DatabaseUrl",
    "JsonFlag",
    "ModelRepository",
    "ServiceDatabaseUrl",
    "console",
    "database",
    "emit_json",
    "fail",
    "parse_duration",
    "parse_pairs",
]

V = TypeVar("V")

console = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]
"""``--json``: print exactly one JSON object on stdout."""

DatabaseUrl = Annotated[str | None, typer.Option(help="Database URL (default: SPIKEFORMER_DATABASE_URL or ./var).")]
"""``--database-url`` of the incident commands."""

ServiceDatabaseUrl = Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite under ./var).")]
"""``--database-url`` of ``serve`` and ``worker``."""

ModelRepository = Annotated[str | None, typer.Option(help="Folder of <model>/<version>/ checkpoints.")]
"""``--model-repository`` of ``serve`` and ``worker``."""


def emit_json(obj: dict[str, Any]) -> None:
    """Write ``obj`` as one line of JSON on stdout (values JSON cannot hold are written with ``str``)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def fail(message: str, code: int = 2, as_json: bool = False) -> NoReturn:
    """Print a clear error (no traceback) and exit non-zero.

    Args:
        message: What went wrong, for the person at the terminal.
        code: The exit status (2: bad input or an unavailable store, 1: the thing asked about is missing or broken).
        as_json: Print ``{"ok": false, "error": message}`` on stdout instead of the red line on stderr.

    Raises:
        typer.Exit: Always, with ``code``.
    """
    if as_json:
        emit_json({"ok": False, "error": message})
    else:
        console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h`` -> seconds.

    Raises:
        ValueError: The text is none of these forms.
    """
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise ValueError(f"cannot read duration {text!r}; accepted: seconds, or a number with s, m or h") from None


def parse_pairs(pairs: list[str], value: Callable[[str, str], V], malformed: str) -> dict[str, V]:
    """Repeated ``KEY=VALUE`` options -> ``{key: value(key, raw)}``.

    Args:
        pairs: the option's values as typed.
        value: turns one raw value into what the command takes (raises ``ValueError`` with a message).
        malformed: the message for a pair without ``=`` or key; ``{pair!r}`` is appended.

    Raises:
        ValueError: A malformed pair, or ``value`` refused one.
    """
    out: dict[str, V] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{malformed}, got {pair!r}")
        out[key.strip()] = value(key, raw)
    return out


def database(url: str | None) -> Database:
    """The database at ``url`` (None: the configured one, see ``spikeformer.settings``)."""
    from spikeformer.store import Database

    return Database(url)

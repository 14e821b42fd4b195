"""The ``spikeformer`` command line (typer). Commands that report results take ``--json`` and then print exactly one
JSON object on stdout.

One module per command group, each with its own ``typer.Typer``: sub-groups (``models``, ``keys``, ``db``,
``hardware``, ``incident``) are mounted here with ``app.add_typer``; the top-level commands of a module are added
by its ``register(app)``. Shared output helpers and option types live in ``spikeformer.cli._output``.
"""

from __future__ import annotations

import typer

from spikeformer._deprecation import moved_names
from spikeformer.cli import convert, db, hardware, incident, models, ops, serve, train

__all__ = ["app", "main"]

app = typer.Typer(
    help="Spikeformer Neuromorphic Kit: spiking transformers from training to serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Top-level commands, in the order `spikeformer --help` lists them (typer lists commands before groups).
for _module in (models, serve, db, ops, train, convert, hardware):
    _module.register(app)

app.add_typer(models.models_app, name="models")
app.add_typer(db.keys_app, name="keys")
app.add_typer(db.db_app, name="db")
app.add_typer(ops.hardware_app, name="hardware")
app.add_typer(incident.incident_app, name="incident")


def main() -> None:  # pragma: no cover
    """Run the command line (the ``spikeformer`` console script)."""
    app()


# Names this package defined before each command group got its own module: name -> the module that holds it now.
_MOVED = {
    "JsonFlag": "spikeformer.cli._output",
    "console": "spikeformer.cli._output",
    "fail": "spikeformer.cli._output",
    **dict.fromkeys(("demo", "models_app", "models_import", "models_list", "models_verify"), "spikeformer.cli.models"),
    "worker": "spikeformer.cli.serve",
    **dict.fromkeys(
        ("db_app", "db_long_queries", "db_upgrade", "keys_app", "keys_create", "keys_revoke", "maintenance"),
        "spikeformer.cli.db",
    ),
    **dict.fromkeys(("doctor", "hardware_app", "hardware_status_cmd", "smoke"), "spikeformer.cli.ops"),
    **dict.fromkeys(("evaluate", "profile"), "spikeformer.cli.train"),
    **dict.fromkeys((n for n in incident.__all__), "spikeformer.cli.incident"),
}


__getattr__ = moved_names(__name__, _MOVED)


if __name__ == "__main__":  # pragma: no cover
    main()

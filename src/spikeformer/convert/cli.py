"""Command-line commands of this subpackage; ``register(app)`` adds them to the ``spikeformer`` Typer app."""

import typer


def register(app: typer.Typer) -> None:
    """Add this subpackage's commands to ``app`` (called once by ``spikeformer.cli``)."""

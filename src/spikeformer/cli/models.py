"""``spikeformer models list|verify|import`` and ``spikeformer demo``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spikeformer.cli._output import JsonFlag, console, emit_json, fail

__all__ = ["demo", "models_app", "models_import", "models_list", "models_verify", "register"]

models_app = typer.Typer(help="List, inspect and verify models.", no_args_is_help=True)


@models_app.command("list")
def models_list(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'sdt-*'.")] = "*",
    as_json: JsonFlag = False,
) -> None:
    """Registered model names with their size."""
    from spikeformer.models import list_models, model_defaults

    rows = []
    for name in list_models(pattern):
        d = model_defaults(name)
        rows.append({"name": name, **{k: d[k] for k in ("embed_dim", "depth", "num_heads", "img_size")}})
    if as_json:
        emit_json({"models": rows})
        return
    table = Table("name", "embed_dim", "depth", "heads", "img_size")
    for r in rows:
        table.add_row(r["name"], str(r["embed_dim"]), str(r["depth"]), str(r["num_heads"]), str(r["img_size"]))
    Console().print(table)


@models_app.command("import")
def models_import(
    path: Annotated[str, typer.Argument(help="A SpikingJelly 2.0 / reference Spikformer .pth state dict.")],
    output: Annotated[str, typer.Option(help="Checkpoint folder to write.")],
    dataset: Annotated[
        str, typer.Option(help="Data set the weights were trained on (sets preprocessing).")
    ] = "cifar10",
    img_size: Annotated[int, typer.Option(help="Input size (32 for CIFAR checkpoints).")] = 32,
    num_heads: Annotated[int | None, typer.Option(help="Attention heads (not stored in a state dict).")] = None,
    timesteps: Annotated[int, typer.Option(min=1)] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Convert a Spikformer .pth (read with torch.load(weights_only=True): never unpickled) into a checkpoint."""
    from spikeformer.interop import import_pth

    try:
        manifest = import_pth(path, output, dataset, img_size=img_size, num_heads=num_heads, timesteps=timesteps)
    except ValueError as e:  # CheckpointError included
        fail(str(e), as_json=as_json)
    except OSError as e:
        fail(f"cannot write {output}: {e}", as_json=as_json)
    if as_json:
        emit_json({"ok": True, "output": output, "sha256": manifest.sha256, "config": manifest.config})
    else:
        console.print(
            f"wrote {output} (sha256 {manifest.sha256[:12]}); preprocessing is x/255 - set mean/std in "
            "the manifest if the weights expect normalised input",
            highlight=False,
        )


@models_app.command("verify")
def models_verify(
    path: Annotated[str, typer.Argument(help="Checkpoint folder.")],
    as_json: JsonFlag = False,
) -> None:
    """Check a checkpoint: its manifest against the schema, its weights' sha256 and format (exit 0 when intact, 1 when
    not; the error says what is wrong, e.g. a weights file that is a pickle)."""
    from spikeformer.checkpoint import CheckpointError, verify_checkpoint

    try:
        m = verify_checkpoint(path)
    except CheckpointError as e:
        fail(str(e), code=1, as_json=as_json)
    except OSError as e:
        fail(f"cannot read the checkpoint {path}: {e}", code=1, as_json=as_json)
    if as_json:
        emit_json({"ok": True, "path": path, "model_name": m.model_name, "sha256": m.sha256})
    else:
        console.print(f"OK {path}: {m.model_name}, sha256 {m.sha256}", highlight=False)


def demo(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "spikformer-2-384",
    batch: Annotated[int, typer.Option(min=1, max=64)] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Build a model, run one batch of random images and say what happened."""
    from spikeformer.models.demo import demo_run

    try:
        result = demo_run(model, batch)
    except ValueError as e:
        fail(str(e), as_json=as_json)
    if as_json:
        emit_json(result)
        return
    for k, v in result.items():
        console.print(f"{k:>14}: {v}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands (``demo``) to the root ``app``."""
    app.command()(demo)

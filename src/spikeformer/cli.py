"""The ``spikeformer`` command line (typer). Commands that report results take ``--json`` and then print exactly one
JSON object on stdout."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Spikeformer Neuromorphic Kit: spiking transformers from training to serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect and verify models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")]


def _emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def fail(message: str, code: int = 2, as_json: bool = False) -> None:
    """Print a clear error (no traceback) and exit non-zero."""
    if as_json:
        _emit_json({"ok": False, "error": message})
    else:
        console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@models_app.command("list")
def models_list(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. 'sdt-*'.")] = "*",
    as_json: JsonFlag = False,
) -> None:
    """Registered model names with their size."""
    import spikeformer
    from spikeformer.models import model_defaults

    rows = []
    for name in spikeformer.list_models(pattern):
        d = model_defaults(name)
        rows.append({"name": name, **{k: d[k] for k in ("embed_dim", "depth", "num_heads", "img_size")}})
    if as_json:
        _emit_json({"models": rows})
        return
    table = Table("name", "embed_dim", "depth", "heads", "img_size")
    for r in rows:
        table.add_row(r["name"], str(r["embed_dim"]), str(r["depth"]), str(r["num_heads"]), str(r["img_size"]))
    Console().print(table)


@app.command()
def demo(
    model: Annotated[str, typer.Option(help="Registered model name.")] = "spikformer-2-384",
    batch: Annotated[int, typer.Option(min=1, max=64)] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Build a model, run one batch of random images and say what happened."""
    import torch

    import spikeformer
    from spikeformer.nn import BaseNeuron

    try:
        net = spikeformer.create_model(model).eval()
    except ValueError as e:
        fail(str(e), as_json=as_json)
    spikes = [0]
    neurons = 0

    def count(_m, _i, out):
        spikes[0] += int(out.sum())

    for m in net.modules():
        if isinstance(m, BaseNeuron):
            neurons += 1
            m.register_forward_hook(count)
    x = torch.rand(batch, *net.input_shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits = net(x)
    dt = time.perf_counter() - t0
    params = sum(p.numel() for p in net.parameters())
    result = {
        "model": model,
        "parameters": params,
        "input_shape": [batch, *net.input_shape],
        "timesteps": net.timesteps,
        "logits_shape": list(logits.shape),
        "predictions": logits.argmax(1).tolist(),
        "spike_layers": neurons,
        "spikes": spikes[0],
        "seconds": round(dt, 4),
    }
    if as_json:
        _emit_json(result)
        return
    for k, v in result.items():
        console.print(f"{k:>14}: {v}", highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

"""Resumable training state without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_optimizer", "load_optimizer", "save_json", "load_json"]


def save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """``optimizer.safetensors`` (per-parameter state tensors) + ``optimizer.json`` (param groups, scalars)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    save_file(tensors, str(folder / "optimizer.tmp"))
    os.replace(folder / "optimizer.tmp", folder / "optimizer.safetensors")
    # tensor learning rates (captured steps, spikeformer.train.graphed) are saved as numbers
    groups = [{k: float(v) if isinstance(v, torch.Tensor) else v for k, v in g.items()} for g in sd["param_groups"]]
    save_json(folder / "optimizer.json", {"param_groups": groups, "scalars": scalars})


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    meta = load_json(folder / "optimizer.json")
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = meta["param_groups"]
    for saved, current in zip(groups, optimizer.param_groups, strict=False):
        if "capturable" in current:  # how the state is kept is this optimizer's choice, not the saved one's
            saved["capturable"] = current["capturable"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})

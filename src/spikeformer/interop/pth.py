"""A Spikformer ``.pth`` state dict (SpikingJelly 2.0 or the authors' code) turned into a checkpoint folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from spikeformer.checkpoint import Manifest, save_checkpoint
from spikeformer.data import Preprocess
from spikeformer.interop.spikingjelly import from_spikingjelly

__all__ = ["import_pth"]


def import_pth(
    path: str | Path,
    output: str | Path,
    dataset: str = "cifar10",
    img_size: int = 32,
    num_heads: int | None = None,
    timesteps: int = 4,
) -> Manifest:
    """Read ``path`` with ``torch.load(weights_only=True)`` (never unpickled) and write it as a checkpoint.

    The preprocessing written to the manifest is ``x / 255`` (mean 0, std 1 per channel): a state dict does not say
    how its inputs were normalised, so set mean and std in the manifest if the weights expect normalised input.

    Args:
        path: The ``.pth`` file (a state dict, or ``{"model": state_dict}``).
        output: Checkpoint folder to write.
        dataset: Data set the weights were trained on (recorded in the manifest).
        img_size: Input size in pixels (32 for CIFAR checkpoints).
        num_heads: Attention heads (a state dict does not store them; None: the usual count for the width).
        timesteps: Timesteps T of the imported model.

    Returns:
        The manifest written.

    Raises:
        ValueError: The file is not a tensor-only state dict, or its keys are not a Spikformer's.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected a .pth state dict written by torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as e:
        # an unreadable file surfaces as any of these (EOFError when truncated, KeyError on text)
        first = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise ValueError(
            f"{path} is not a torch.save file holding a tensor-only state dict (read with weights_only=True, nothing "
            f"unpickled): {type(e).__name__}: {first}"
        ) from None
    try:
        model = from_spikingjelly(state, img_size=img_size, num_heads=num_heads, timesteps=timesteps)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path} does not hold a Spikformer state dict: {type(e).__name__}: {e}") from None
    c = model.config.in_chans
    pre = Preprocess(mean=(0.0,) * c, std=(1.0,) * c, channels=c, image_size=model.config.img_size)
    return save_checkpoint(
        model,
        output,
        pre,
        [str(i) for i in range(model.config.num_classes)],
        dataset,
        {"note": "imported; accuracy not measured here"},
        training={"imported_from": str(path)},
    )

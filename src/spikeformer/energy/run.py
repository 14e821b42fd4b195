"""A profile run from images to files: what ``spikeformer profile`` does once it has a model.

``profile_inputs`` picks the images (the first test images of a data set, or seeded random ones) and preprocesses
them; ``profile_run`` counts one run, adds the measured hardware models and writes ``profile.json``,
``firing_rates.png`` and ``energy.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeformer.energy.counter import profile
from spikeformer.energy.hardware import HardwareModel
from spikeformer.energy.plots import plot_energy, plot_firing_rates
from spikeformer.energy.report import EnergyReport

__all__ = ["profile_inputs", "profile_run"]


def profile_inputs(
    shape: Sequence[int],
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    samples: int = 4,
    seed: int = 0,
) -> tuple[torch.Tensor, str]:
    """The model inputs of a profile run and a description of them.

    Args:
        shape: The model's input shape ``(C, H, W)``.
        preprocess: Turns uint8 images into model inputs; None: ``x / 255``.
        dataset: Take the first ``samples`` test images of this data set (fashion-mnist, digits or folder:PATH);
            None: ``samples`` uniform random uint8 images drawn with ``seed``.
        data_root: Where the data set's files are.
        samples: Number of images.
        seed: Seed of the random images.

    Returns:
        ``(x, description)`` with ``x`` of shape ``[samples, C, H, W]``.

    Raises:
        ValueError: The data set's images do not have the model's shape.
        spikeformer.data.DatasetNotFoundError: The data set's files are missing.
    """
    shape = tuple(shape)
    if dataset is not None:
        from spikeformer.data import load_dataset

        images = load_dataset(dataset, "test", data_root).images[:samples]
        if tuple(images.shape[1:]) != shape:
            raise ValueError(
                f"the data set's images are {list(images.shape[1:])} (C, H, W); the model takes {list(shape)}"
            )
        inputs = f"first {len(images)} test images of {dataset}"
    else:
        rng = np.random.default_rng(seed)
        images = torch.from_numpy(rng.integers(0, 256, size=(samples, *shape), dtype=np.uint8))
        inputs = f"{samples} random uniform images (seed {seed})"
    x = preprocess(images) if preprocess is not None else images.float() / 255.0
    return x, inputs


def profile_run(
    model: nn.Module,
    x: torch.Tensor,
    hardware: Sequence[HardwareModel],
    output: str | Path,
    *,
    integer_inputs: str = "accumulate",
    weights: str = "",
    inputs: str = "",
) -> tuple[dict[str, Any], EnergyReport]:
    """Profile one run of ``model`` on ``x`` and write the report files into ``output``.

    Hardware models that measure (``hw.measured``) run the model themselves and add their measurement.

    Args:
        model: The network.
        x: Its inputs ``[B, C, H, W]``.
        hardware: Energy models to report.
        output: Folder for ``profile.json``, ``firing_rates.png`` and ``energy.png`` (created).
        integer_inputs: How integer non-binary inputs count: ``accumulate`` (value n = n ACs) or ``mac``.
        weights: What the weights are (recorded in the result).
        inputs: What the inputs are (recorded in the result).

    Returns:
        The JSON-ready result (also written as ``profile.json``) and the report.
    """
    report = profile(model, x, integer_inputs=integer_inputs)
    for hw in hardware:
        if hw.measured:
            report.add_measurement(hw.name, hw.measure(model, x))
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "json": str(folder / "profile.json"),
        "firing_rates_png": str(plot_firing_rates(report, folder / "firing_rates.png")),
        "energy_png": str(plot_energy(report, folder / "energy.png", list(hardware))),
    }
    result = {"ok": True, "weights": weights, "inputs": inputs, "files": files, **report.to_dict(list(hardware))}
    Path(files["json"]).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result, report

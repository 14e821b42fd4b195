"""The Spikformer paper's energy formula and its ImageNet table, to check our 45 nm model against the literature.

Zhou et al., "Spikformer: When Spiking Neural Network Meets Transformer", ICLR 2023, ImageNet table (T = 4):
``E = E_MAC * FLOPs(first, image-encoding conv) + E_AC * SOPs`` with E_MAC = 4.6 pJ and E_AC = 0.9 pJ
(Horowitz, ISSCC 2014). ``paper_energy`` applies it with the first conv charged as MACs at each of the T steps
(the image is presented T times); ``docs/energy.md`` shows the reproduction and explains the differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikeformer.energy.counter import profile
from spikeformer.energy.hardware import HardwareModel, resolve_hardware
from spikeformer.energy.report import EnergyReport
from spikeformer.models import create_model

__all__ = [
    "PaperRow",
    "SPIKFORMER_ANN_8_512",
    "SPIKFORMER_IMAGENET",
    "encoding_layer_flops",
    "paper_energy",
    "reproduce_spikformer_imagenet",
    "spikformer_first_layer_flops",
]


@dataclass(frozen=True)
class PaperRow:
    """One published row: our registry name, SOPs per image and energy per image in mJ (T = 4)."""

    model: str
    sops: float
    energy_mj: float
    top1: float


# Zhou et al., ICLR 2023, ImageNet results (T = 4).
SPIKFORMER_IMAGENET: tuple[PaperRow, ...] = (
    PaperRow("spikformer-8-384", 6.82e9, 7.734, 70.24),
    PaperRow("spikformer-8-512", 11.09e9, 11.577, 73.38),
    PaperRow("spikformer-8-768", 22.09e9, 21.477, 74.81),
)
# Same table: ANN Transformer-8-512, 8.33G FLOPs, 38.340 mJ, 80.80% top-1.
SPIKFORMER_ANN_8_512 = PaperRow("transformer-8-512 (ANN)", 8.33e9, 38.340, 80.80)


def paper_energy(
    sops: float, first_layer_flops: float, timesteps: int, hardware: str | HardwareModel = "cmos45nm"
) -> float:
    """Joules per image under the papers' formula: ``E_AC * SOPs + E_MAC * FLOPs(first conv) * T``.

    Args:
        sops: synaptic operations per image (all layers but the first).
        first_layer_flops: dense MACs of the image-encoding conv for one step.
        timesteps: T; the first conv sees the (repeated) image at every step.
        hardware: a model with ``e_mac_pj`` and ``e_ac_pj`` (``cmos45nm``).
    """
    hw = resolve_hardware(hardware)
    if not (hasattr(hw, "e_mac_pj") and hasattr(hw, "e_ac_pj")):
        raise ValueError(f"paper_energy needs a MAC/AC model such as 'cmos45nm'; {hw.name!r} has no e_mac_pj/e_ac_pj")
    return (hw.e_ac_pj * sops + hw.e_mac_pj * first_layer_flops * timesteps) * 1e-12


def encoding_layer_flops(report: EnergyReport) -> int:
    """Dense MACs of one step of the first conv/linear that ran (the image-encoding layer)."""
    for row in report.layers:
        if row.kind in ("conv2d", "linear"):
            return int(row.flops)
    raise ValueError(f"no conv or linear layer in the report of {report.model_name}")


def spikformer_first_layer_flops(model_name: str) -> int:
    """First-layer FLOPs of a registered model at its own geometry, counted by ``profile``.

    Builds the model without transformer blocks (``depth=0``, ``timesteps=1``: the first conv does not depend on
    them) and profiles one random image.
    """
    model = create_model(model_name, depth=0, timesteps=1)
    x = torch.rand(1, *model.input_shape, generator=torch.Generator().manual_seed(0))
    return encoding_layer_flops(profile(model, x))


def reproduce_spikformer_imagenet(hardware: str | HardwareModel = "cmos45nm") -> list[dict[str, float | str]]:
    """Recompute the paper's mJ column from its SOPs and our first-layer FLOPs (T = 4).

    Returns one dict per row: ``model``, ``sops``, ``first_layer_flops``, ``paper_mj``, ``ours_mj`` (each model's
    own first conv) and ``ours_with_8_512_conv_mj`` (the 8-512 first conv for every width, which is what the
    published 8-384 and 8-768 figures match).
    """
    flops = {row.model: spikformer_first_layer_flops(row.model) for row in SPIKFORMER_IMAGENET}
    ref = flops["spikformer-8-512"]
    return [
        {
            "model": row.model,
            "sops": row.sops,
            "first_layer_flops": flops[row.model],
            "paper_mj": row.energy_mj,
            "ours_mj": paper_energy(row.sops, flops[row.model], 4, hardware) * 1e3,
            "ours_with_8_512_conv_mj": paper_energy(row.sops, ref, 4, hardware) * 1e3,
        }
        for row in SPIKFORMER_IMAGENET
    ]

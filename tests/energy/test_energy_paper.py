"""The Spikformer paper's ImageNet energy column, recomputed with our 45 nm model and our FLOP counter."""

from __future__ import annotations

import pytest

from spikeformer.energy import SPIKFORMER_IMAGENET, paper_energy, spikformer_first_layer_flops


def _paper(model: str):
    return next(row for row in SPIKFORMER_IMAGENET if row.model == model)


def test_first_conv_flops_counted_from_the_model():
    assert spikformer_first_layer_flops("spikformer-8-512") == 3 * 64 * 224 * 224 * 9  # 3 -> D/8 = 64, 3x3, 224^2


def test_reproduces_spikformer_8_512_energy():
    flops = spikformer_first_layer_flops("spikformer-8-512")
    row = _paper("spikformer-8-512")
    mj = paper_energy(row.sops, flops, 4, "cmos45nm") * 1e3
    assert mj == pytest.approx(11.576, abs=0.01)
    assert mj == pytest.approx(row.energy_mj, abs=0.01)


def test_other_rows_match_the_8_512_first_conv_not_their_own():
    """8-384 and 8-768 are reproduced only when the 8-512 first conv (3 -> 64) is charged for every width."""
    conv_8_512 = 3 * 64 * 224 * 224 * 9
    for model, width, own_mj in (("spikformer-8-384", 384, 7.335), ("spikformer-8-768", 768, 22.274)):
        row = _paper(model)
        own = 3 * (width // 8) * 224 * 224 * 9
        assert paper_energy(row.sops, own, 4) * 1e3 == pytest.approx(own_mj, abs=0.001)
        assert paper_energy(row.sops, conv_8_512, 4) * 1e3 == pytest.approx(row.energy_mj, abs=0.002)


def test_paper_energy_needs_a_mac_ac_model():
    with pytest.raises(ValueError, match="cmos45nm"):
        paper_energy(1e9, 1e6, 4, "loihi")

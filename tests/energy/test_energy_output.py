"""Report outputs: table text, JSON-ready dict, the two PNGs."""

from __future__ import annotations

import json

from spikeformer.energy import plot_energy, plot_firing_rates, profile

PNG = b"\x89PNG\r\n\x1a\n"


def test_table_dict_and_plots(tmp_path, small_model, images):
    model = small_model("spikformer-4-384")
    r = profile(model, images(model))
    text = r.to_text()
    for word in ("patch_embed.stages.0.conv", "blocks.0.attn.qkv", "energy: cmos45nm", "ANN/SNN", "ASSUMED"):
        assert word in text
    d = json.loads(json.dumps(r.to_dict(["cmos45nm", "loihi"]), allow_nan=False))
    assert set(d["energy"]) == {"cmos45nm", "loihi"}
    assert d["totals_per_inference"]["sops"] == r.total_sops
    assert d["mac_layers"][0]["name"] == "patch_embed.stages.0.conv" and d["mac_layers"][0]["reason"]
    assert len(d["layers"]) == len(r.layers)
    a = plot_firing_rates(r, tmp_path / "rates.png")
    b = plot_energy(r, tmp_path / "energy.png", ["cmos45nm", "loihi", "loihi2", "spinnaker2", "gpu-measured"])
    assert a.read_bytes()[:8] == PNG and b.read_bytes()[:8] == PNG

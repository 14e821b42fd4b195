"""Energy models: registry, cited constants, assumptions carried by every line, the GPU measurement's refusals."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from spikeformer.energy import HARDWARE_MODELS, GpuMeasured, OpCounts, get_hardware, profile

COUNTS = OpCounts(sops=1e9, macs=2e8, neuron_updates=5e7, spikes=1e7, ann_flops=3e9, attention_sops=1e8)


def test_registry_and_unknown_name():
    assert set(HARDWARE_MODELS) == {"cmos45nm", "loihi", "loihi2", "spinnaker2", "gpu-measured"}
    with pytest.raises(ValueError, match="cmos45nm.*loihi.*loihi2.*spinnaker2.*gpu-measured"):
        get_hardware("truenorth")
    with pytest.raises(ValueError, match="e_sop_pj"):
        get_hardware("cmos45nm", e_sop_pj=1.0)


def test_cmos45nm_is_the_papers_formula():
    hw = get_hardware("cmos45nm")
    assert (hw.e_mac_pj, hw.e_ac_pj) == (4.6, 0.9)
    assert hw.energy(COUNTS) == pytest.approx(4.6e-12 * 2e8 + 0.9e-12 * 1e9)
    assert hw.ann_energy(COUNTS) == pytest.approx(4.6e-12 * 3e9)
    assert not hw.is_assumed and not any(line.assumed for line in hw.lines(COUNTS))


def test_loihi_published_constants():
    hw = get_hardware("loihi")
    expected = 23.6e-12 * 1e9 + 81e-12 * 1e7 + 52e-12 * (5e7 - 1e7) + 4.6e-12 * 2e8
    assert hw.energy(COUNTS) == pytest.approx(expected)
    lines = {line.component: line for line in hw.lines(COUNTS)}
    chip = [lines[c] for c in ("synaptic op", "neuron update (active)", "neuron update (inactive)")]
    assert not any(line.assumed for line in chip) and all("Davies" in line.source for line in chip)
    assert lines["synaptic op"].count == 9e8 and lines["attention accumulate"].count == 1e8
    assert lines["attention accumulate"].assumed and "attention" in lines["attention accumulate"].note
    assert lines["host MAC"].assumed and "host" in lines["host MAC"].note


@pytest.mark.parametrize("name", ["loihi2", "spinnaker2"])
def test_unpublished_chips_are_assumed_on_every_line(name):
    hw = get_hardware(name)
    assert hw.is_assumed
    for line in hw.lines(COUNTS) + hw.ann_lines(COUNTS):
        assert line.assumed and "assumed" in line.note
    custom = get_hardware(name, e_sop_pj=1.0)
    assert custom.energy(COUNTS) < hw.energy(COUNTS)


def test_loihi2_defaults_equal_loihi1():
    assert get_hardware("loihi2").energy(COUNTS) == pytest.approx(get_hardware("loihi").energy(COUNTS))


def test_report_energy_uses_lines_and_ratio(small_model, images):
    model = small_model("sdt-8-384")
    r = profile(model, images(model))
    for name in ("loihi", "loihi2", "spinnaker2"):
        assert r.energy(name) == pytest.approx(sum(line.joules for line in r.energy_lines(name)))
        assert r.energy_ratio(name) == pytest.approx(r.ann_energy(name) / r.energy(name))
    assert r.to_dict()["energy"]["loihi2"]["assumed"] is True
    with pytest.raises(ValueError, match="measure"):
        r.energy("gpu-measured")
    r.add_measurement("gpu-measured", 0.25)
    assert r.energy("gpu-measured") == 0.25
    assert "gpu-measured" in r.to_dict()["energy"]


def test_gpu_measured_without_pynvml_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(RuntimeError, match="pynvml is not installed"):
        GpuMeasured().measure(torch.nn.Identity(), torch.zeros(1, 1))


def test_gpu_measured_without_cuda_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", types.ModuleType("pynvml"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        GpuMeasured().measure(torch.nn.Identity(), torch.zeros(1, 1))

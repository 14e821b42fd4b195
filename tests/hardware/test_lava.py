"""loihi2-emu against Lava's bit-accurate Loihi models (lava-nc 0.10, Loihi2SimCfg(select_tag="fixed_pt")).

Runs when the Lava environment exists (`make setup-lava`; `make test` creates it where Python 3.10 is available)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeformer.hardware import QuantConfig, get_target, lower_model, quantize_graph
from spikeformer.hardware.emulator import run_program
from spikeformer.hardware.lava_check import cross_check, lava_python, run_lava
from spikeformer.nn import LIF

pytestmark = pytest.mark.skipif(
    lava_python() is None, reason="no Lava environment (.venv-lava): run `make setup-lava` (needs Python 3.10)"
)


def _program():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(24, 16), LIF(tau=2.0), nn.Linear(16, 10), LIF(tau=4.0), nn.Linear(10, 6), LIF(v_threshold=0.5)
    ).eval()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(8)
                m.bias.uniform_(-0.1, 0.6)
    graph = lower_model(net, input_shape=(24,), timesteps=8)
    cfg = QuantConfig(weight_splits=1, input_bits=2, input_max_abs=1.0, threshold_bits=16)  # binary spikes in
    return quantize_graph(graph, get_target("loihi2"), cfg)


@pytest.fixture(scope="module")
def spikes():
    torch.manual_seed(1)
    return (torch.rand(8, 3, 24) < 0.3).float()  # [T, B, F]


def test_lava_fixed_point_spikes_match_loihi2_emu_exactly(spikes):
    report = cross_check(_program(), spikes)
    assert all(layer["spikes"] > 10 for layer in report["layers"]), report  # every layer is active
    assert report["exact"], report


def test_the_cross_check_detects_a_one_unit_difference(spikes):
    prog = _program()
    lava = run_lava(prog, spikes)
    name = next(n.name for n in prog.graph if n.op == "lif")
    prog.params[name]["vth"] += 64 * 200  # ours now differs from what Lava ran (threshold +20 %)
    ours = run_program(prog, spikes, record=(name,)).recorded[name]
    assert (ours != lava[0]).sum() > 0

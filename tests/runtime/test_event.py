import pytest
import torch
from torch import nn

from spikeformer.kernels import cpu as kernels
from spikeformer.runtime import Runner
from spikeformer.runtime.event import EventConv2d, EventLinear, event_layers, to_event_driven
from support import KERNELS_MISSING, firing_model

pytestmark = pytest.mark.skipif(
    not kernels.available(),
    reason=KERNELS_MISSING,
)


def _spikes(shape, rate=0.15, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < rate).float()


def test_event_layers_equal_the_dense_layers_and_switch_on_density():
    torch.manual_seed(0)
    lin, conv = nn.Linear(64, 96), nn.Conv2d(16, 40, 3, padding=1)
    elin, econv = EventLinear(lin), EventConv2d(conv)
    xs = {elin: _spikes((4, 10, 64)), econv: _spikes((3, 16, 9, 9))}
    with torch.inference_mode():
        for layer, dense in ((elin, lin), (econv, conv)):
            x = xs[layer]
            for _ in range(layer.calibration_calls):  # the first calls time both paths
                layer(x)
            assert layer.crossover is not None and 0 < layer.crossover <= 0.9
            layer.crossover, layer.active = 0.5, True  # pin it: 15 % density is below, a dense input above
            before = dict(layer.calls)
            torch.testing.assert_close(layer(x), dense(x), rtol=1e-4, atol=1e-4)
            assert layer.calls["event"] == before["event"] + 1
            full = torch.rand_like(x) + 0.1
            torch.testing.assert_close(layer(full), dense(full))
            assert layer.calls["dense"] == before["dense"] + 1
            layer.crossover = 0.0  # 0 turns the event path off
            layer(x)
            assert layer.calls["event"] == before["event"] + 1


def test_a_layer_whose_inputs_are_far_denser_than_its_crossover_stops_checking():
    lin = nn.Linear(32, 16)
    elin = EventLinear(lin)
    with torch.inference_mode():
        for _ in range(elin.calibration_calls):
            elin(torch.rand(4, 32) + 0.5)  # dense inputs: the event path is never timed
    assert elin.crossover == 0.0 and not elin.active
    with torch.inference_mode():
        elin(_spikes((4, 32)))
    assert elin.calls == {"event": 0, "dense": elin.calibration_calls}  # inactive layers don't count either


def test_training_and_gradients_use_the_dense_path():
    lin = nn.Linear(8, 4)
    elin = EventLinear(lin)
    x = _spikes((5, 8), 0.3)
    out = elin(x)  # grad mode: dense, differentiable
    out.sum().backward()
    assert lin.weight.grad is not None and elin.calls == {"event": 0, "dense": 0}


def test_only_supported_convolutions_are_replaced():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Linear(4, 2))
    to_event_driven(model)
    assert [type(m).__name__ for m in model] == ["EventConv2d", "Conv2d", "EventLinear"]
    with pytest.raises(ValueError, match="3x3/stride 1"):
        EventConv2d(nn.Conv2d(3, 4, 5, padding=2))


def test_runner_event_path_agrees_with_the_reference():
    model = firing_model()
    x = torch.rand(24, 1, 28, 28) * 3
    with torch.no_grad():
        ref = model(x)
    runner = Runner(model, max_batch_size=8)
    assert runner.event_driven
    for layer in event_layers(runner.model):
        layer.crossover, layer._samples = 0.9, [0.9] * layer.calibration_calls  # every sparse input: event path
        layer.active = True
    out = runner.run(x)
    assert sum(layer.calls["event"] for layer in event_layers(runner.model)) > 0
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0)
    assert not Runner(model, event_driven=False).event_driven


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_energy_profiler_sees_the_fast_layers_as_the_layers_they_replace(precision):
    from spikeformer.energy import profile

    model = firing_model()
    x = torch.rand(4, 1, 28, 28) * 3
    runner = Runner(model, precision=precision)
    for layer in event_layers(runner.model):
        layer.crossover, layer._samples, layer.active = 0.9, [0.9] * layer.calibration_calls, True
    fast, plain = profile(runner.model, x), profile(Runner(model, optimize=False).model, x)
    assert [r.name for r in fast.layers] == [r.name for r in plain.layers]
    assert fast.total_sops > 0 and fast.total_macs > 0
    assert fast.total_sops == pytest.approx(plain.total_sops, rel=0.02)  # a flipped spike may move a few events
    assert fast.total_macs == pytest.approx(plain.total_macs, rel=0.02)


def test_each_range_of_input_sizes_is_calibrated_on_its_own():
    """A crossover measured at batch 1 is not used at batch 64 (the dense product gains more from the batch): each
    range of sizes (rows in powers of 4) times both paths on its own first calls; pinning by hand covers all."""
    torch.manual_seed(0)
    elin = EventLinear(nn.Linear(64, 96))
    small, large = _spikes((1, 64)), _spikes((64, 64))
    with torch.inference_mode():
        for _ in range(elin.calibration_calls):
            elin(small)
        assert len(elin._samples) == elin.calibration_calls
        elin(large)  # a new size range: calibration starts over for it
        assert len(elin._samples) == 1 and elin.calls["dense"] == elin.calibration_calls + 1
        for _ in range(elin.calibration_calls):
            elin(large)
        elin(small)  # back to the first range: its calibration is kept
        assert len(elin._samples) == elin.calibration_calls
        elin.crossover = 0.0  # by hand: the event path is off for every size
        before = elin.calls["event"]
        elin(large)
        elin(small)
        assert elin.calls["event"] == before and elin.crossover == 0.0

"""SpikeformerConverter: spiking twins that converge to the ANN, exact products in expectation, clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeformer import load_pipeline
from spikeformer.checkpoint import save_checkpoint
from spikeformer.convert import (
    ConversionError,
    GatedMaxPool2d,
    SpikeformerConverter,
    SpikingSequential,
    find_unconvertible,
    profile_converted,
)
from spikeformer.data import Preprocess
from spikeformer.models.vit_relu import ReLUViT, cumulative_matmul, expectation_matmul
from spikeformer.nn import QCFS, STBIF, QuantIF, reset_states


def test_expectation_matmul_running_mean_is_product_of_running_means():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(12, 2, 3, 5, 4, generator=g) < 0.4).float()  # spikes [T, B, H, N, K]
    b = (torch.rand(12, 2, 3, 4, 6, generator=g) < 0.6).float()
    out = expectation_matmul(a, b)
    t = torch.arange(1, 13).reshape(-1, 1, 1, 1, 1).float()
    running_out = out.cumsum(0) / t
    expected = (a.cumsum(0) / t) @ (b.cumsum(0) / t)
    assert torch.allclose(running_out, expected, atol=1e-5)
    assert not torch.allclose(running_out, ((a @ b).cumsum(0) / t), atol=1e-3)  # the naive product is biased
    assert torch.equal(expectation_matmul(a[:1], b[:1]), a[:1] @ b[:1])  # one step: the plain product


@pytest.mark.parametrize("x", [0.0, 0.3, 1.1, 2.0, 3.7, -0.5])
def test_quant_if_counts_spikes_like_qcfs(x):
    lam, steps = 2.0, 16
    n = QuantIF(lam)
    spikes = n(torch.full((steps, 1), x))
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    expected = min(max(int(torch.floor(torch.tensor(steps * x / lam + 0.5))), 0), steps)
    assert int(spikes.sum()) == expected
    assert n.state_dict()["threshold"] == lam and n.v_threshold == lam


def test_quant_if_starts_at_half_threshold_and_resets_by_subtraction():
    n = QuantIF(2.0)
    s = n(torch.tensor([[1.2], [0.0]]))  # v0 = 1.0; 1.0 + 1.2 = 2.2 fires and keeps 0.2
    assert s.flatten().tolist() == [1.0, 0.0] and float(n.v) == pytest.approx(0.2)
    n.reset()
    assert n.v is None


def test_vit_twin_converges_to_the_ann(tiny_vit):
    ann = tiny_vit(levels=1024)  # near-continuous activations: the spiking twin converges as 1/T
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        ref = ann(x)
    errors = {}
    for t in (8, 64, 512):
        snn = SpikeformerConverter(t).convert(ann)
        assert isinstance(snn, ReLUViT) and snn.config.spiking and snn.config.timesteps == t
        with torch.no_grad():
            errors[t] = float((snn(x) - ref).abs().mean())
    scale = float(ref.abs().mean())
    assert errors[512] < 0.02 * scale, (errors, scale)
    assert errors[512] < errors[64] < errors[8]


def test_step_logits_of_the_longest_run_give_every_shorter_run(tiny_vit):
    ann = tiny_vit()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        steps = SpikeformerConverter(16).convert(ann).forward_steps(x)  # [16, 4, 10]
        assert steps.shape == (16, 4, 10)
        for t in (1, 3, 8, 16):
            assert torch.allclose(steps[:t].mean(0), SpikeformerConverter(t).convert(ann)(x), atol=1e-5)


def test_vit_twin_linears_read_binary_spikes_and_the_ann_is_untouched(tiny_vit):
    ann = tiny_vit()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = SpikeformerConverter(4).convert(ann)
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in snn.modules())
    x = torch.rand(2, 1, 8, 8)
    report = profile_converted(snn, x)
    rows = {r.name: r for r in report.layers}
    assert rows["patch_embed.stem.conv"].input_kind == "real"  # the image: MACs at every step
    weight_rows = [r for r in report.layers if r.kind in ("linear", "conv2d") and r.name != "patch_embed.stem.conv"]
    assert weight_rows and all(r.input_kind == "binary" and r.macs == 0 for r in weight_rows)
    qk, sv = rows["blocks.0.attn.qk"], rows["blocks.0.attn.sv"]
    assert qk.kind == "ecm:q k^T" and qk.sops > 0 and sv.sops > 0
    assert report.energy("cmos45nm") == pytest.approx(4.6e-12 * report.total_macs + 0.9e-12 * report.total_sops)
    with torch.no_grad():
        assert torch.equal(report.output, snn(x))  # counting hooks leave the outputs unchanged


def test_converted_vit_saves_and_loads_as_a_checkpoint(tiny_vit, tmp_path):
    snn = SpikeformerConverter(6).convert(tiny_vit())
    save_checkpoint(snn, tmp_path / "snn", Preprocess.for_dataset("digits"), [str(i) for i in range(10)], "digits")
    pipe = load_pipeline(tmp_path / "snn")
    assert pipe.manifest.config["spiking"] is True and pipe.manifest.timesteps == 6
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    x = Preprocess.for_dataset("digits")(images)
    with torch.no_grad():
        direct = snn(x)
    assert torch.allclose(pipe.predict_logits(images), direct, atol=1e-4)
    thresholds = [float(m.threshold) for m in pipe.model.modules() if isinstance(m, QuantIF)]
    assert thresholds == [float(m.threshold) for m in snn.modules() if isinstance(m, QuantIF)]


def test_cumulative_matmul_sum_is_product_of_sums():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-1, 2, (9, 2, 3, 5, 4), generator=g).float()  # signed spikes [T, B, H, N, K]
    b = torch.randint(-1, 2, (9, 2, 3, 4, 6), generator=g).float()
    out = cumulative_matmul(a, b)
    assert torch.allclose(out.cumsum(0), a.cumsum(0) @ b.cumsum(0), atol=1e-5)
    assert not torch.allclose(out.cumsum(0), (a @ b).cumsum(0), atol=1e-3)
    assert torch.equal(cumulative_matmul(a[:1], b[:1]), a[:1] @ b[:1])


def test_st_bif_cumulative_output_is_the_qcfs_level_of_the_accumulated_input():
    """Reference: the ANN's QCFS of the summed input. Inputs arrive over 6 steps (some overshoot, then pull back),
    then stop; L steps later theta * (spike count) is the QCFS output exactly, and -1 spikes did the undoing."""
    levels, lam = 8, 2.0
    g = torch.Generator().manual_seed(0)
    drive = torch.randn(6, 500, generator=g) * 1.5
    drive[1] += 2.0  # an early burst ...
    drive[3] -= 2.0  # ... taken back later: an IF neuron would stay over-fired
    x = torch.cat([drive, torch.zeros(levels + 1, 500)])
    n = STBIF(lam / levels, levels)
    spikes = n(x)
    assert set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0} and bool((spikes == -1).any())
    count = spikes.cumsum(0)
    assert bool((count >= 0).all() and (count <= levels).all())  # the tracer keeps the count in [0, L]
    expected = QCFS(levels, lam)(drive.sum(0)).detach()
    assert torch.allclose(count[-1] * (lam / levels), expected, atol=1e-6)
    assert torch.equal(count[-1], n.count)
    n.reset()
    assert n.v is None and n.count is None


def test_st_bif_twin_equals_the_ann_once_settled(tiny_vit):
    ann = tiny_vit()  # L = 8
    x = torch.rand(8, 1, 8, 8)
    conv = SpikeformerConverter(24, neuron="st-bif")
    snn = conv.convert(ann)
    assert snn.config.neuron == "st-bif" and snn.config.cumulative
    neurons = [m for m in snn.modules() if isinstance(m, STBIF)]
    lam = conv.thresholds(ann)
    assert len(neurons) == len(lam) and all(m.levels == 8 for m in neurons)
    assert sorted(float(m.threshold) for m in neurons) == pytest.approx(sorted(v / 8 for v in lam.values()))
    with torch.no_grad():
        ref = ann(x)
        running = snn.forward_steps(x).cumsum(0)  # [24, 8, 10]
        assert torch.allclose(snn(x), running[-1], atol=1e-5)  # the twin's output is the sum over steps
        for t in (2, 5):  # the sum of the first t step logits is the twin run for t steps
            assert torch.allclose(running[t - 1], SpikeformerConverter(t, neuron="st-bif").convert(ann)(x), atol=1e-5)
    assert float((running[1] - ref).abs().max()) > 0.1  # not settled after 2 steps
    assert torch.allclose(running[-1], ref, atol=1e-4)  # settled: the ANN's logits


def test_st_bif_twin_saves_loads_and_charges_spike_driven_operations(tiny_vit, tmp_path):
    snn = SpikeformerConverter(12, neuron="st-bif").convert(tiny_vit())
    pre = Preprocess.for_dataset("digits")
    save_checkpoint(snn, tmp_path / "snn", pre, [str(i) for i in range(10)], "digits")
    pipe = load_pipeline(tmp_path / "snn")
    assert pipe.manifest.config["neuron"] == "st-bif" and isinstance(pipe.model.blocks[0].attn.act_s, STBIF)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(pipe.predict_logits(images), snn(pre(images)), atol=1e-4)
    x = torch.rand(2, 1, 8, 8)
    report = profile_converted(snn, x)
    rows = {r.name: r for r in report.layers}
    stem = rows["patch_embed.stem.conv"]
    assert stem.input_kind == "real" and stem.macs == stem.dense_macs and stem.calls == 1  # the image, read once
    rate = profile_converted(SpikeformerConverter(12).convert(tiny_vit()), x)
    assert {r.name: r for r in rate.layers}["patch_embed.stem.conv"].macs == 12 * stem.macs
    weight_rows = [r for r in report.layers if r.kind in ("linear", "conv2d") and r.name != "patch_embed.stem.conv"]
    assert weight_rows and all(r.input_kind in ("binary", "count", "mixed") and r.macs == 0 for r in weight_rows)
    qk, sv = rows["blocks.0.attn.qk"], rows["blocks.0.attn.sv"]
    assert qk.kind == "sum:q k^T" and qk.macs == 0 and qk.sops > 0 and sv.macs == 0 and sv.sops > 0
    assert all(r.macs == 0 for r in report.layers if r is not stem)  # every other operation is driven by spikes


def test_st_bif_needs_a_vit(tiny_vit):
    with pytest.raises(ValueError, match="accepted: if, st-bif"):
        SpikeformerConverter(4, neuron="lif")
    with pytest.raises(ValueError, match="ReLU ViTs only"):
        SpikeformerConverter(4, method="max", neuron="st-bif").convert(_cnn())


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(8 * 2 * 2, 10),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("method", ["max", "percentile"])
def test_sequential_cnn_converts_and_converges(method):
    net = _cnn()
    x = torch.rand(32, 1, 8, 8)
    conv = SpikeformerConverter(256, method=method, percentile=99.0)
    conv.calibrate(net, x)
    stats = conv.statistics
    assert set(stats) == {"2", "5"} and all(s["percentile"] <= s["max"] for s in stats.values())
    snn = conv.convert(net)
    assert isinstance(snn, SpikingSequential)
    assert sum(isinstance(m, QuantIF) for m in snn.modules()) == 2
    assert sum(isinstance(m, GatedMaxPool2d) for m in snn.modules()) == 1
    with torch.no_grad():
        ref, out = net(x), snn(x)
    agreement = float((ref.argmax(1) == out.argmax(1)).float().mean())
    if method == "max":
        assert float((out - ref).abs().mean()) < 0.05 * float(ref.abs().mean())
        assert agreement >= 0.9
    else:
        assert agreement >= 0.7  # clipping the top 1 % costs a little


def test_gated_max_pool_follows_the_highest_rate():
    # two inputs in one 1x2 window: rate 0.75 and rate 0.25, never firing together
    a = torch.tensor([1.0, 1.0, 0.0, 1.0] * 4)
    b = torch.tensor([0.0, 0.0, 1.0, 0.0] * 4)
    x = torch.stack([a, b], -1).reshape(16, 1, 1, 2, 1).transpose(3, 4)  # [T, B, C, 1, 2]
    pool = GatedMaxPool2d((1, 2))
    out = pool(x)
    assert out.shape == (16, 1, 1, 1, 1)
    assert float(out.mean()) == pytest.approx(0.75, abs=0.07)
    naive = x.amax(-1).mean()
    assert float(naive) == 1.0  # the per-step max of the spikes overestimates max(0.75, 0.25)
    reset_states(pool)
    assert pool.count is None


@pytest.mark.parametrize(
    "layers,expected",
    [
        ([nn.Linear(4, 4), nn.Softmax(dim=-1)], [("1", "Softmax", "softmax")]),
        (
            [nn.Linear(4, 4), nn.LayerNorm(4), nn.GELU()],
            [("1", "LayerNorm", "LayerNorm"), ("2", "GELU", "clipped ReLU")],
        ),
        ([nn.Sequential(nn.Linear(4, 4), nn.Tanh())], [("0.1", "Tanh", "clipped ReLU")]),
        ([nn.Linear(4, 4), nn.Bilinear(4, 4, 4)], [("1", "Bilinear", "unknown module type")]),
    ],
)
def test_unconvertible_layers_are_named_with_a_reason(layers, expected):
    net = nn.Sequential(*layers)
    with pytest.raises(ConversionError) as e:
        SpikeformerConverter(8, method="max").convert(net)
    problems = [(p.path, p.kind) for p in e.value.problems]
    assert problems == [(path, kind) for path, kind, _ in expected]
    for path, kind, why in expected:
        assert f"{path} ({kind})" in str(e.value) and why in str(e.value)


def test_softmax_layernorm_vit_is_refused_layer_by_layer(tiny_vit):
    problems = find_unconvertible(tiny_vit(block="softmax"))
    paths = {p.path: p.kind for p in problems}
    assert paths["blocks.0.attn.softmax"] == "Softmax"
    assert paths["blocks.0.attn.norm"] == "LayerNorm" and paths["blocks.0.mlp.norm"] == "LayerNorm"
    assert paths["blocks.0.mlp.act"] == "GELU" and paths["patch_embed.stem_act"] == "GELU"
    assert paths["head_act"] == "LayerNorm"


def test_custom_modules_and_spiking_models_are_refused(tiny_vit):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).relu()

    with pytest.raises(ConversionError, match="own forward"):
        SpikeformerConverter(4, method="max").convert(Net())
    snn = SpikeformerConverter(4).convert(tiny_vit())
    with pytest.raises(ConversionError, match="already a spiking model"):
        SpikeformerConverter(4).convert(snn)


def test_method_needs_what_it_uses():
    net = _cnn()
    with pytest.raises(ValueError, match="'max' or 'percentile'"):
        SpikeformerConverter(4, method="qcfs").convert(net)
    with pytest.raises(ValueError, match="calibrate"):
        SpikeformerConverter(4, method="max").convert(net)
    for kwargs, match in [
        ({"timesteps": 0}, "timesteps"),
        ({"method": "robust"}, "accepted"),
        ({"percentile": 0}, "percentile"),
    ]:
        with pytest.raises(ValueError, match=match):
            SpikeformerConverter(**{"timesteps": 4, **kwargs})
    with pytest.raises(ValueError, match="empty"):
        SpikeformerConverter(4, method="max").calibrate(net, torch.empty(0, 1, 8, 8))


def test_calibrated_thresholds_replace_trained_ones(tiny_vit):
    ann = tiny_vit()
    x = torch.rand(16, 1, 8, 8)
    conv = SpikeformerConverter(4, method="max")
    conv.calibrate(ann, x)
    lam = conv.thresholds(ann)
    snn = conv.convert(ann)
    assert float(snn.blocks[0].mlp.act_h.threshold) == pytest.approx(lam["blocks.0.mlp.act_h"])
    assert lam["blocks.0.mlp.act_h"] != pytest.approx(float(ann.blocks[0].mlp.act_h.threshold.detach()))

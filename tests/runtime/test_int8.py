import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.functional import kernels
from spikeformer.runtime import Runner, int8
from spikeformer.runtime.int8 import Int8Conv2d, Int8Linear, quantize_per_channel
from support import KERNELS_MISSING, firing_model, tiny_model


def _ints(shape, seed=0, low=0, high=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=g).float()


def _dequantized(layer) -> torch.Tensor:
    """The weights the integer product really uses, as float64 ``[K, O]``."""
    return sum(q.double() * s.double() for q, s in zip(layer.qweight, layer.scales, strict=True))


@pytest.fixture(params=["kernels", "torch"])
def path(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setattr(kernels, "get", lambda: None)
    elif not kernels.available():
        pytest.skip(KERNELS_MISSING)
    return request.param


def test_int8_linear_is_the_exact_product_with_the_quantized_weights(path):
    torch.manual_seed(0)
    lin = nn.Linear(70, 33)
    layer = Int8Linear(lin)
    x = _ints((2, 5, 70), low=-3, high=4)  # sums of spikes, negative values included
    with torch.inference_mode():
        out = layer(x)
    exact = (x.double().reshape(-1, 70) @ _dequantized(layer) + lin.bias.double()).reshape(2, 5, 33)
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)  # only float32 rounding of the epilogue
    assert layer.calls == {"int8": 1, "float": 0}
    # and the quantized weights are within half a step of the float ones
    assert ((_dequantized(layer).t().float() - lin.weight).abs() <= layer.scales[0][:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (4, 4, 0)])
def test_int8_conv_is_the_exact_product_with_the_quantized_weights(path, k, s, p):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 12, k, stride=s, padding=p)
    layer = Int8Conv2d(conv)
    x = _ints((3, 5, 9, 8), seed=k + s)
    with torch.inference_mode():
        out = layer(x)
    w = _dequantized(layer).t().reshape(12, k, k, 5).permute(0, 3, 1, 2)  # back to [O, C, kh, kw]
    exact = F.conv2d(x.double(), w, conv.bias.double(), stride=s, padding=p)
    torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5)
    assert layer.calls["int8"] == 1


def test_inputs_that_are_not_small_integers_take_the_float_path(path):
    torch.manual_seed(2)
    lin, conv = nn.Linear(8, 4), nn.Conv2d(2, 3, 3, padding=1)
    ilin, iconv = Int8Linear(lin), Int8Conv2d(conv)
    with torch.inference_mode():
        for x in (torch.rand(3, 8), torch.full((3, 8), 200.0)):  # fractions; integers beyond int8
            torch.testing.assert_close(ilin(x), lin(x))  # float32 (oneDNN: same up to summation order)
        img = torch.rand(1, 2, 5, 5)
        assert torch.equal(iconv(img), conv(img))
    assert ilin.calls == {"int8": 0, "float": 2} and iconv.calls == {"int8": 0, "float": 1}


def test_a_second_weight_term_shrinks_the_error():
    w = torch.randn(16, 64)
    errs = []
    for terms in (1, 2):
        q, s = quantize_per_channel(w, terms)
        approx = sum(qq.float().t() * ss[:, None] for qq, ss in zip(q, s, strict=True))
        errs.append(float((approx - w).abs().max()))
    assert errs[1] < errs[0] / 50


def test_runner_int8_agrees_with_float32():
    model = firing_model()
    x = torch.rand(48, 1, 28, 28) * 3
    ref = Runner(model, precision="fp32").run(x)
    runner = Runner(model, precision="int8", max_batch_size=16)
    assert runner.backend == "cpu-int8"
    out = runner.run(x)
    used = [m.calls["int8"] for m in runner.model.modules() if isinstance(m, int8._Int8Layer)]
    assert used and sum(used) > 0
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    with pytest.raises(ValueError, match="int8"):
        Runner(model, precision="int8", device="cuda" if torch.cuda.is_available() else "meta")


def test_auto_precision_with_calibration_images_applies_the_agreement_rule(monkeypatch):
    from spikeformer.runtime import runner as runner_mod

    model = tiny_model()
    x = torch.rand(16, 1, 28, 28) * 3
    precision, report = runner_mod.select_precision(model, x)
    assert set(report) == {"int8", "bf16", "fp32"} and precision in report
    assert all(0.0 <= r["agreement"] <= 1.0 and r["seconds"] > 0 for r in report.values())
    qualifying = [p for p, r in report.items() if r["agreement"] >= runner_mod.AUTO_MIN_AGREEMENT or p == "fp32"]
    assert precision == min(qualifying, key=lambda p: report[p]["seconds"])
    # a precision that disagrees is never chosen, however fast
    assert runner_mod.select_precision(model, x, min_agreement=1.01)[0] == "fp32"
    runner = Runner(model, precision="auto", calibration=x)
    assert runner.precision_report is not None and runner.precision in runner.precision_report


def test_auto_precision_without_calibration_measures_the_first_inputs(monkeypatch):
    """No calibration images: float32 until AUTO_SAMPLES inputs have been run, then the agreement rule on exactly
    those inputs picks the precision (and a precision that disagrees is never chosen)."""
    from spikeformer.runtime import runner as runner_mod

    monkeypatch.setattr(runner_mod, "AUTO_SAMPLES", 24)
    model = tiny_model()
    runner = Runner(model, precision="auto")
    batches = [torch.rand(10, 1, 28, 28) * 3 for _ in range(3)]
    ref = Runner(model, precision="fp32").run(batches[0])
    assert torch.allclose(runner.run(batches[0]), ref, atol=1e-4)  # float32 while measuring
    runner.run_with_stats(batches[1])
    assert runner.precision == "fp32" and runner.precision_report is None  # 20 < 24 inputs so far
    runner.run(batches[2])
    report = runner.precision_report
    assert report is not None and set(report) == {"int8", "bf16", "fp32"}
    qualifying = [p for p, r in report.items() if r["agreement"] >= runner_mod.AUTO_MIN_AGREEMENT or p == "fp32"]
    assert runner.precision in qualifying
    assert runner.run(batches[0]).shape == (10, 10)  # the chosen path runs
    strict = Runner(model, precision="auto")
    monkeypatch.setattr(runner_mod, "AUTO_MIN_AGREEMENT", 1.01)  # nothing but float32 can qualify
    for b in batches:
        strict.run(b)
    assert strict.precision == "fp32" and strict.precision_report is not None


def test_int8_runner_passes_spikes_as_int8_and_converts_shared_inputs_once(monkeypatch):
    """In the int8 runner the neurons that only int8 products read (the MLP's hidden neuron, the attention output)
    write int8 spikes, the neurons after proj/fc1/fc2 read those products' int32 accumulators (scale and bias applied
    as they read, rounded as the dequantize kernel rounds), and Q, K and V convert their common input once per forward
    pass; the logits are identical to the unfused int8 path."""
    from spikeformer.nn.neuron import BaseNeuron
    from spikeformer.runtime import int8 as int8_mod

    model = firing_model()
    fast = Runner(model, precision="int8")
    marked = [m for m in fast.model.modules() if isinstance(m, BaseNeuron) and m.int8_spikes]
    stages = model.patch_embed.int8_consumed_neurons()  # stage neurons that only the next convolution reads
    assert len(stages) == 2  # (the tiny model pools after its third and fourth stages' neurons)
    assert len(marked) == 2 * model.config.depth + len(stages)  # and fc1_neuron and attn_neuron of every block
    fused = [m for m in fast.model.modules() if isinstance(m, int8_mod.Int8Linear) and m.raw_out]
    assert len(fused) == 3 * model.config.depth  # proj, fc1 and fc2 hand their int32 accumulators to their neurons
    plain = Runner(model, precision="int8")
    for m in plain.model.modules():
        if isinstance(m, BaseNeuron):
            m.int8_spikes, m.int32_scale, m.int32_bias = False, None, None
        if isinstance(m, int8_mod.Int8Linear | int8_mod.Int8Conv2d):
            m.raw_out = False
    counts = {}
    real = int8_mod._convert
    x = torch.rand(5, 1, 28, 28) * 3
    for name, runner in (("fast", fast), ("plain", plain)):
        calls = []
        monkeypatch.setattr(int8_mod, "_convert", lambda t, calls=calls: calls.append(t.shape) or real(t))
        counts[name] = (runner.run(x), len(calls))
    assert torch.equal(counts["fast"][0], counts["plain"][0])
    linears = sum(isinstance(m, int8_mod.Int8Linear) for m in plain.model.modules())
    assert counts["plain"][1] <= linears - 2 * model.config.depth  # Q, K, V: one conversion per block, not three
    assert counts["fast"][1] == counts["plain"][1] - 2 * model.config.depth  # int8 spikes need no conversion
    assert not getattr(int8_mod._cache, "on", False)  # the cache only lives within a forward pass


@pytest.mark.skipif(not kernels.available(), reason=KERNELS_MISSING)
@pytest.mark.parametrize("k,s,p,hw", [(3, 2, 1, (9, 8)), (3, 2, 1, (8, 8)), (2, 2, 0, (7, 6))])
def test_int8_conv_pools_its_accumulators_like_the_float_pooling(k, s, p, hw):
    """A conv with fused max-pooling (int32 accumulators pooled, then scaled) gives exactly the pooled dequantized
    output, with negative weights (BatchNorm folded with negative scales) and padding windows included."""
    torch.manual_seed(3)
    conv = nn.Conv2d(6, 20, 3, padding=1)
    with torch.no_grad():
        conv.weight[:7] *= -1
    layer = Int8Conv2d(conv)
    x = _ints((3, 6, *hw), seed=7, low=0, high=3)
    with torch.inference_mode():
        ref = F.max_pool2d(layer(x), k, s, p)
        layer.pool = (k, s, p)
        out = layer(x)
        floats = layer(x + 0.5)  # not integers: the float path pools too
    assert torch.equal(out, ref)
    assert torch.allclose(floats, F.max_pool2d(F.conv2d(x + 0.5, conv.weight, conv.bias, padding=1), k, s, p))


def test_int8_runner_pools_inside_the_convolutions_before_the_neuron():
    """SpikingJelly's Spikformer max-pools the BatchNorm output (before the neuron): in the int8 runner those convs
    pool their accumulators themselves and the stage's pooling is gone; the logits equal the unfused int8 path's."""
    from spikeformer.nn.layers import ConvBN2d

    torch.manual_seed(4)
    model = firing_model()
    sj_style = type(model)(**{**model.config.to_dict(), "pool_position": "before_neuron"})
    sj_style.load_state_dict(model.state_dict())
    fast = Runner(sj_style.eval(), precision="int8")
    fused = [m.conv for m in fast.model.modules() if isinstance(m, ConvBN2d) and m.conv.pool is not None]
    assert len(fused) == sum(sj_style.config.pool_stages) and kernels.available()
    plain = Runner(sj_style.eval(), precision="int8")
    for stage in plain.model.modules():
        if isinstance(stage, ConvBN2d) and stage.conv.pool is not None:
            stage.pool, stage.conv.pool = nn.MaxPool2d(*stage.conv.pool), None
    x = torch.rand(4, 1, 28, 28) * 3
    assert torch.equal(fast.run(x), plain.run(x))
    assert all(c.calls["int8"] > 0 for c in fused)


def test_int8_runner_keeps_the_residual_stream_in_int8():
    """With the pooling before the neuron (SpikingJelly's Spikformer) the whole residual stream is a sum of spikes: the
    int8 runner keeps it in int8 (no float32 -> int8 pass before Q/K/V and fc1) and the logits are those of the float
    stream."""
    from spikeformer.nn.neuron import BaseNeuron
    from spikeformer.runtime import int8 as int8_mod

    model = firing_model()
    sj_style = type(model)(**{**model.config.to_dict(), "pool_position": "before_neuron"})
    sj_style.load_state_dict(model.state_dict())
    sj_style.eval()
    stream = sj_style.int8_consumed_neurons()
    assert len(stream) == 2 + 2 * sj_style.config.depth
    assert model.int8_consumed_neurons() == []  # pooling after the last stage's neuron: a float stream
    fast = Runner(sj_style, precision="int8")
    plain = Runner(sj_style, precision="int8")
    for m in plain.model.int8_consumed_neurons():
        m.int8_spikes = False
    assert all(m.int8_spikes for m in fast.model.int8_consumed_neurons())
    x = torch.rand(4, 1, 28, 28) * 3
    conversions = {}
    real = int8_mod._convert
    for name, runner in (("fast", fast), ("plain", plain)):
        calls = []
        int8_mod._convert = lambda t, calls=calls: calls.append(t.shape) or real(t)
        try:
            conversions[name] = (runner.run(x), len(calls))
        finally:
            int8_mod._convert = real
    assert torch.equal(conversions["fast"][0], conversions["plain"][0])
    assert conversions["fast"][1] == conversions["plain"][1] - 2 * sj_style.config.depth
    assert sum(isinstance(m, BaseNeuron) and m.int8_spikes for m in fast.model.modules()) > len(stream)


def test_int8_conv_reads_int8_spikes_like_float_ones(path):
    """Spikes from an int8-spiking neuron go into the convolution as they are (im2col reads int8)."""
    torch.manual_seed(5)
    layer = Int8Conv2d(nn.Conv2d(7, 9, 3, padding=1))
    x = _ints((2, 7, 6, 5), seed=8)
    with torch.inference_mode():
        assert torch.equal(layer(x.to(torch.int8)), layer(x))
    assert layer.calls == {"int8": 2, "float": 0}


def test_int8_runner_hands_conv_accumulators_to_the_neurons_in_channels_last_memory():
    """The patch-splitting convolutions hand their int32 accumulators (channels-last) to their neurons, whose int8
    spikes stay channels-last into the next im2col; the logits equal the unfused int8 path's."""
    from spikeformer.nn.layers import ConvBN2d

    model = firing_model()
    sj_style = type(model)(**{**model.config.to_dict(), "pool_position": "before_neuron"})
    sj_style.load_state_dict(model.state_dict())
    fast, plain = Runner(sj_style.eval(), precision="int8"), Runner(sj_style.eval(), precision="int8")
    pairs = fast.model.patch_embed.conv_neuron_pairs()
    assert kernels.available() and all(stage.conv.raw_out for stage, _ in pairs)
    for stage, neuron in plain.model.patch_embed.conv_neuron_pairs():
        stage.conv.raw_out, neuron.int32_scale, neuron.int32_bias = False, None, None
    seen = []
    hook = fast.model.patch_embed.neurons[1].register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    x = torch.rand(4, 1, 28, 28) * 3
    assert torch.equal(fast.run(x), plain.run(x))
    hook.remove()
    acc, spikes = seen[0]
    assert acc.dtype == torch.int32 and acc.permute(0, 1, 3, 4, 2).is_contiguous()
    assert spikes.dtype == torch.int8 and spikes.permute(0, 1, 3, 4, 2).is_contiguous()
    assert isinstance(fast.model.patch_embed.stages[2], ConvBN2d)


def test_int8_conv_reads_channels_last_int8_spikes():
    torch.manual_seed(6)
    layer = Int8Conv2d(nn.Conv2d(6, 8, 3, padding=1))
    x = _ints((2, 6, 5, 7), seed=9).to(torch.int8)
    with torch.inference_mode():
        assert torch.equal(layer(x.contiguous(memory_format=torch.channels_last)), layer(x))

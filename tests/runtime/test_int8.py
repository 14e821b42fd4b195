import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeformer.kernels import cpu as kernels
from spikeformer.runtime import Runner, int8
from spikeformer.runtime.int8 import Int8Conv2d, Int8Linear, quantize_per_channel
from support import KERNELS_MISSING, firing_model, tiny_model

NO_ONEDNN = (
    "this torch build has no oneDNN int8 convolution (torch.ops.onednn.qconv2d_pointwise, x86 builds with mkldnn); "
    "the int8 convolutions take the im2col path, which is tested"
)


def _ints(shape, seed=0, low=0, high=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=g).float()


def _dequantized(layer) -> torch.Tensor:
    """The weights the integer product really uses, as float64 ``[K, O]``."""
    return sum(q.double() * s.double() for q, s in zip(layer.qweight, layer.scales, strict=True))


@pytest.fixture(params=["onednn", "kernels", "torch"])
def path(request, monkeypatch):
    """The int8 layers' paths: oneDNN's int8 convolution (where torch has it) with the compiled kernels, im2col and
    products with the compiled kernels, plain torch."""
    if request.param == "torch":
        monkeypatch.setattr(kernels, "get", lambda: None)
    elif not kernels.available():
        pytest.skip(KERNELS_MISSING)
    elif request.param == "onednn" and not int8.onednn_conv_available():
        pytest.skip(NO_ONEDNN)
    if request.param != "onednn":
        monkeypatch.setattr(int8, "onednn_conv_available", lambda: False)
    return request.param


def _only_the_fusions_under_test(monkeypatch) -> None:
    """Runners built after this leave out the fused attention block and oneDNN's convolutions (tests of the other
    fusions count conversions and look at the tensors between the layers they replace)."""
    from spikeformer.runtime import runner

    monkeypatch.setattr(runner, "fuse_spiking_attention", lambda model: 0)
    monkeypatch.setattr(int8, "onednn_conv_available", lambda: False)


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

    _only_the_fusions_under_test(monkeypatch)
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


def test_int8_runner_keeps_the_residual_stream_in_int8(monkeypatch):
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
    _only_the_fusions_under_test(monkeypatch)
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


def test_int8_runner_hands_conv_accumulators_to_the_neurons_in_channels_last_memory(monkeypatch):
    """The patch-splitting convolutions hand their int32 accumulators (channels-last) to their neurons, whose int8
    spikes stay channels-last into the next im2col; the logits equal the unfused int8 path's."""
    from spikeformer.nn.layers import ConvBN2d

    _only_the_fusions_under_test(monkeypatch)
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


@pytest.fixture(params=["onednn", "im2col"])
def conv_path(request, monkeypatch):
    """The two compiled int8 convolution paths (set before the layers are built)."""
    if not kernels.available():
        pytest.skip(KERNELS_MISSING)
    if request.param == "onednn" and not int8.onednn_conv_available():
        pytest.skip(NO_ONEDNN)
    if request.param == "im2col":
        monkeypatch.setattr(int8, "onednn_conv_available", lambda: False)
    return request.param


@pytest.mark.skipif(not kernels.available(), reason=KERNELS_MISSING)
@pytest.mark.skipif(not int8.onednn_conv_available(), reason=NO_ONEDNN)
@pytest.mark.parametrize(
    "c,o,k,s,p,hw,bias,pool",
    [
        (6, 20, 3, 1, 1, (9, 8), True, None),
        (5, 12, 3, 2, 1, (9, 8), False, None),
        (16, 32, 1, 1, 0, (7, 7), True, None),
        (4, 8, 4, 4, 0, (8, 12), True, None),
        (6, 20, 3, 1, 1, (9, 8), True, (3, 2, 1)),
        (3, 7, 3, 1, 1, (8, 8), True, (2, 2, 0)),
    ],
)
def test_onednn_int8_conv_equals_im2col_and_the_product(c, o, k, s, p, hw, bias, pool):
    """oneDNN's int8 convolution gives exactly the im2col path's float32 outputs (same scale-then-bias rounding),
    pooled or not, and hands them over in channels-last memory; a negative int8 input takes the im2col path."""
    torch.manual_seed(5)
    conv = nn.Conv2d(c, o, k, stride=s, padding=p, bias=bias)
    with torch.no_grad():
        conv.weight[: o // 3] *= -1
    dnn, ref = Int8Conv2d(conv), Int8Conv2d(conv)
    ref.use_onednn = False
    assert dnn.use_onednn
    dnn.pool = ref.pool = pool
    x = _ints((3, c, *hw), seed=c + k, low=0, high=4)
    with torch.inference_mode():
        out, expected = dnn(x), ref(x)
        assert torch.equal(out, expected)
        assert out.permute(0, 2, 3, 1).is_contiguous()
        assert torch.equal(dnn(x.to(torch.int8)), expected)  # int8 spikes as they come from an int8-spiking neuron
        signed = x - 1  # sums of spikes can be negative elsewhere: the im2col path reads them
        assert torch.equal(dnn(signed), ref(signed))
    assert len(dnn._packed) == 1  # one input shape, one packing of the weights


def test_onednn_int8_conv_keeps_a_bounded_number_of_packings(conv_path):
    layer = Int8Conv2d(nn.Conv2d(3, 4, 3, padding=1))
    with torch.inference_mode():
        for b in range(1, int8.PACKED_SHAPES + 4):
            layer(_ints((b, 3, 5, 5), seed=b))
    assert len(layer._packed) == (int8.PACKED_SHAPES if conv_path == "onednn" else 0)


def test_int8_runner_convolutions_hand_channels_last_outputs_to_the_neurons(conv_path):
    """Whichever convolution path runs, the patch-splitting neurons read its output in channels-last memory (int32
    accumulators from im2col, float32 from oneDNN) and write channels-last int8 spikes; logits are identical."""
    model = firing_model()
    sj_style = type(model)(**{**model.config.to_dict(), "pool_position": "before_neuron"})
    sj_style.load_state_dict(model.state_dict())
    fast = Runner(sj_style.eval(), precision="int8")
    plain = Runner(sj_style.eval(), precision="int8", optimize=False)  # no fusions, im2col or not
    seen = []
    hook = fast.model.patch_embed.neurons[1].register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    x = torch.rand(4, 1, 28, 28) * 3
    assert torch.equal(fast.run(x), plain.run(x))
    hook.remove()
    given, spikes = seen[0]
    assert given.dtype == (torch.float32 if conv_path == "onednn" else torch.int32)
    assert given.permute(0, 1, 3, 4, 2).is_contiguous()
    assert spikes.dtype == torch.int8 and spikes.permute(0, 1, 3, 4, 2).is_contiguous()


def _attention_model(embed_dim: int, heads: int, img: int, variant: str) -> nn.Module:
    """``firing_model()``-like Spikformer; ``variant`` changes the attention block's four neurons."""
    from spikeformer.nn.neuron import IF
    from support import tiny_model

    scale = 0.3 if variant == "if_and_plain_input" else 0.125  # 0.3: the float32 rounding of count * scale matters
    model = tiny_model(embed_dim=embed_dim, num_heads=heads, img_size=img, depth=2, attn_scale=scale)
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.weight.data.uniform_(1.0, 4.0)
            m.bias.data.uniform_(-0.3, 0.5)
    for block in model.blocks:
        a = block.attn
        if variant == "soft_reset":
            for n in (a.q_neuron, a.k_neuron, a.v_neuron, a.attn_neuron):
                n.v_reset = None
        elif variant == "if_and_plain_input":
            a.q_neuron = IF(v_threshold=1.5, backend=a.q_neuron.backend)
            a.k_neuron.decay_input, a.k_neuron.tau = False, 3.0
            a.attn_neuron.v_reset = -0.25
    return model.eval()


@pytest.mark.skipif(not kernels.available(), reason=KERNELS_MISSING)
@pytest.mark.parametrize(
    "embed_dim,heads,img,variant",
    [
        (64, 2, 28, "lif"),  # head width 32, 49 tokens (not a multiple of 8)
        (64, 4, 32, "soft_reset"),  # 16, 64 tokens
        (64, 1, 28, "if_and_plain_input"),  # 64
        (48, 2, 28, "lif"),  # 24: the portable loop
        (32, 4, 36, "soft_reset"),  # 8, 81 tokens (two 64-bit words of token bits): the portable loop
    ],
)
def test_fused_int8_attention_gives_the_unfused_spikes(monkeypatch, embed_dim, heads, img, variant):
    """Spikformer's attention block in the int8 runner (one Q/K/V product, one kernel for the four neurons and both
    products) gives identical logits and spike counts to the unfused int8 blocks, for several head widths, token
    counts and neuron settings; the same kernel after float32 products for an input that is not exact int8."""
    from spikeformer.runtime import runner as runner_mod

    model = _attention_model(embed_dim, heads, img, variant)
    fast = Runner(model, precision="int8")
    blocks = [m for m in fast.model.modules() if isinstance(m, int8.Int8SpikingSelfAttention)]
    assert len(blocks) == model.config.depth
    monkeypatch.setattr(runner_mod, "fuse_spiking_attention", lambda m: 0)
    plain = Runner(model, precision="int8")
    x = torch.rand(3, 1, img, img) * 3
    (fl, fs), (pl, ps) = fast.run_with_stats(x), plain.run_with_stats(x)
    assert torch.equal(fl, pl) and torch.equal(fs.spikes, ps.spikes)
    assert not any(b.count_spikes for b in blocks)  # counting is on only within run_with_stats

    block, reference = blocks[0], plain.model.blocks[0].attn
    tokens = torch.rand(4, 2, (img // 4) ** 2, embed_dim) + torch.randint(0, 3, (4, 2, (img // 4) ** 2, embed_dim))
    with torch.inference_mode():
        for inp in (tokens, tokens.floor(), tokens.floor().to(torch.int8)):  # float, exact int8 as float, int8
            for m in (block, reference):
                model_reset(m)
            assert torch.equal(block(inp).float(), reference(inp).float())


def model_reset(module: nn.Module) -> None:
    from spikeformer.nn.base import StatefulModule

    for m in module.modules():
        if isinstance(m, StatefulModule):
            m.reset()


@pytest.mark.skipif(not kernels.available(), reason=KERNELS_MISSING)
def test_fused_int8_attention_runs_the_block_as_written_for_hooks_and_state():
    """Forward hooks on its inner modules (the energy profiler's), a neuron not at rest or autograd: the block runs as
    ``SpikingSelfAttention`` (the hooks see every tensor) with the same outputs; ``count_spikes`` counts either way."""
    model = _attention_model(64, 2, 28, "lif")
    fused = Runner(model, precision="int8").model.modules()
    block = next(m for m in fused if isinstance(m, int8.Int8SpikingSelfAttention))
    x = torch.randint(0, 3, (4, 2, 49, 64)).to(torch.int8)
    with torch.inference_mode():
        model_reset(block)
        block.count_spikes = True
        fused = block(x)
        fused_counts = block.spike_counts
        seen = []
        hook = block.q_neuron.register_forward_hook(lambda m, i, o: seen.append(o))
        model_reset(block)
        hooked = block(x)
        hook.remove()
    assert len(seen) == 1 and torch.equal(fused, hooked)
    assert torch.equal(fused_counts, block.spike_counts) and int(fused_counts.sum()) > 0
    block.count_spikes = False

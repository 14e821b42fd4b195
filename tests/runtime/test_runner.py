import pytest
import torch

from spikeformer.runtime import Runner
from support import firing_model, tiny_model


def test_optimized_runner_matches_reference_and_leaves_model_alone():
    model = firing_model()
    x = torch.rand(40, 1, 28, 28) * 3
    with torch.no_grad():
        ref = model(x)
    fast = Runner(model, max_batch_size=16)
    out = fast.run(x)
    assert out.shape == (40, 10)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95
    assert torch.allclose(out, ref, atol=0.05)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # caller's model untouched
    plain = Runner(model, optimize=False).run(x)
    assert torch.equal(plain, ref)


def test_run_with_stats_counts_spikes_per_sample():
    model = firing_model()
    runner = Runner(model, optimize=False, max_batch_size=3)
    x = torch.rand(5, 1, 28, 28) * 3
    logits, stats = runner.run_with_stats(x)
    assert stats.spikes.shape == (5,) and (stats.spikes > 0).all()
    single = torch.stack([runner.run_with_stats(x[i : i + 1])[1].spikes[0] for i in range(5)])
    assert torch.equal(single, stats.spikes)  # counts are per sample, independent of batching
    assert torch.allclose(logits, runner.run(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="precision"):
        Runner(tiny_model(), precision="fp8")
    with pytest.raises(ValueError, match="max_batch_size"):
        Runner(tiny_model(), max_batch_size=0)
    with pytest.raises(ValueError, match="cuda_graphs"):
        Runner(tiny_model(), cuda_graphs=True)  # CUDA graphs need a CUDA device


def test_cpu_runner_takes_no_cuda_path_and_head_split_neurons_match():
    """On the CPU the CUDA-only steps stay off; the attention's neurons, which now run on head-split views, give the
    same logits as the unoptimized model (which runs the same views through the torch loop)."""
    model = firing_model()
    r = Runner(model)
    assert not r.cuda_graphs and not r.channels_last and not r.compiled
    assert all(m.input_bias is None for m in r._neurons)  # conv biases stay in the convs on the CPU
    x = torch.rand(6, 1, 28, 28)
    ref = Runner(model, optimize=False).run(x)
    assert torch.allclose(r.run(x), ref, atol=1e-4)


def test_the_default_precision_is_auto_and_starts_in_float32():
    """``auto`` is the default: float32 until ``AUTO_SAMPLES`` inputs were seen, then the measured rule."""
    r = Runner(firing_model())
    assert r.precision == "fp32" and r._auto_inputs == [] and r.precision_report is None
    r.run(torch.rand(2, 1, 28, 28))
    assert len(r._auto_inputs) == 1


def _snapshot(model: torch.nn.Module) -> dict:
    """What a runner must leave as it was: every module's type and training flag, every tensor's values and device."""
    return {
        "modules": [(name, type(m), m.training) for name, m in model.named_modules()],
        "tensors": {name: (t.device, t.detach().clone()) for name, t in model.state_dict(keep_vars=True).items()},
    }


def _same(a: dict, b: dict) -> bool:
    return (
        a["modules"] == b["modules"]
        and a["tensors"].keys() == b["tensors"].keys()
        and all(
            a["tensors"][k][0] == b["tensors"][k][0] and torch.equal(a["tensors"][k][1], b["tensors"][k][1])
            for k in a["tensors"]
        )
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(precision="fp32"),
        dict(precision="fp32", event_driven=True),
        dict(precision="bf16"),
        dict(precision="int8"),
        dict(precision="int8", optimize=False),
        dict(precision="fp32", optimize=False),
        dict(precision="fp32", optimize=False, event_driven=True, channels_last=True),
        dict(precision="auto"),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_the_runner_never_changes_the_callers_model(options):
    """Whatever the runner rewrites (folded BatchNorm, fused neurons, int8, event-driven layers, channels-last), it
    rewrites its own copy: the caller's modules keep their types, training flags, tensors and backends."""
    model = firing_model().train()
    before = _snapshot(model)
    backends = [getattr(m, "backend", None) for m in model.modules()]
    runner = Runner(model, **options)
    x = torch.rand(4, 1, 28, 28) * 3
    runner.run(x)
    runner.run_with_stats(x)
    assert runner.model is not model and not runner.model.training
    assert _same(_snapshot(model), before)
    assert [getattr(m, "backend", None) for m in model.modules()] == backends
    assert not any(m._forward_hooks for m in model.modules())


def test_an_unoptimized_runner_follows_in_place_weight_updates_and_an_optimized_one_keeps_its_snapshot():
    """``optimize=False`` in float32 shares the caller's tensors (only the module objects are its own), as it ran the
    caller's module before; the optimized runner folded the weights into its own copy at construction."""
    model = firing_model()
    x = torch.rand(6, 1, 28, 28) * 3
    plain, fast = Runner(model, precision="fp32", optimize=False), Runner(model, precision="fp32")
    before = fast.run(x)
    with torch.no_grad():
        model.head.weight.mul_(-2.0)
        ref = model(x)
    assert torch.equal(plain.run(x), ref)
    assert torch.equal(fast.run(x), before)
    assert all(p is q for p, q in zip(plain.model.parameters(), model.parameters(), strict=True))
    assert not any(p is q for p in fast.model.parameters() for q in model.parameters())

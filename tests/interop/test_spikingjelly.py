import math

import pytest
import torch

from spikeformer.interop import from_spikingjelly

sj_spikformer = pytest.importorskip(
    "spikingjelly.activation_based.model.spikformer", reason="SpikingJelly 2.0 is installed by `make setup`"
)
from spikingjelly.activation_based import functional as sj_functional  # noqa: E402


def _randomize(model: torch.nn.Module) -> None:
    """Weights large enough that every layer spikes (the default init of 0.02 std silences the network)."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear):
            m.weight.data.normal_(0, 2.5 / math.sqrt(m.weight[0].numel()))
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.6)


@pytest.fixture(scope="module")
def sj_model():
    model = sj_spikformer.spikformer_cifar10()
    _randomize(model)
    return model.eval()


def _sj_logits(model, x):
    sj_functional.reset_net(model)
    with torch.no_grad():
        return model(x).mean(0)  # SpikingJelly returns per-step logits [T, B, classes]


def test_module_import_gives_identical_logits(sj_model):
    ours = from_spikingjelly(sj_model)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = _sj_logits(sj_model, x)
    with torch.no_grad():
        got = ours(x)
    assert expected.abs().max() > 0.5  # the network is active, so the comparison means something
    assert (got - expected).abs().max() <= 1e-5
    assert ours.config.pool_position == "before_neuron" and ours.config.num_heads == 12


def test_state_dict_import_gives_identical_logits(sj_model):
    ours = from_spikingjelly({"model": {f"module.{k}": v for k, v in sj_model.state_dict().items()}})
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (ours(x) - _sj_logits(sj_model, x)).abs().max() <= 1e-5


def test_reference_layout_maps_to_paper_ordering():
    """The authors' key layout: separate q/k/v convs, biases on proj/MLP, pooling after the neuron."""
    sd = {}
    dims = [48, 96, 192, 384]
    for suffix, cin, cout in zip(("", "1", "2", "3"), [3, *dims[:-1]], dims, strict=True):
        sd[f"patch_embed.proj_conv{suffix}.weight"] = torch.randn(cout, cin, 3, 3)
        for n in ("weight", "bias", "running_mean", "running_var"):
            sd[f"patch_embed.proj_bn{suffix}.{n}"] = torch.rand(cout)
    sd["patch_embed.rpe_conv.weight"] = torch.randn(384, 384, 3, 3)
    for n in ("weight", "bias", "running_mean", "running_var"):
        sd[f"patch_embed.rpe_bn.{n}"] = torch.rand(384)
    for name, (o, i) in {"q": (384, 384), "k": (384, 384), "v": (384, 384), "proj": (384, 384)}.items():
        sd[f"block.0.attn.{name}_conv.weight"] = torch.randn(o, i, 1)
        for n in ("weight", "bias", "running_mean", "running_var"):
            sd[f"block.0.attn.{name}_bn.{n}"] = torch.rand(o)
    sd["block.0.attn.proj_conv.bias"] = torch.randn(384)
    for fc, (o, i) in {"fc1": (1536, 384), "fc2": (384, 1536)}.items():
        sd[f"block.0.mlp.{fc}_conv.weight"] = torch.randn(o, i, 1)
        sd[f"block.0.mlp.{fc}_conv.bias"] = torch.randn(o)
        for n in ("weight", "bias", "running_mean", "running_var"):
            sd[f"block.0.mlp.{fc}_bn.{n}"] = torch.rand(o)
    sd["head.weight"], sd["head.bias"] = torch.randn(10, 384), torch.randn(10)
    model = from_spikingjelly(sd)
    assert model.config.pool_position == "after_neuron" and model.config.proj_bias and model.config.depth == 1
    assert torch.equal(model.blocks[0].attn.k.linear.weight, sd["block.0.attn.k_conv.weight"][:, :, 0])


def test_unrecognised_state_dict_is_a_clear_error():
    with pytest.raises(ValueError, match="unrecognised Spikformer state dict"):
        from_spikingjelly({"foo.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="state dict"):
        from_spikingjelly(42)


def test_pth_import_command_reads_weights_only(sj_model, tmp_path):
    import json
    import pickle

    from typer.testing import CliRunner

    from spikeformer import load_pipeline
    from spikeformer.cli import app

    pth = tmp_path / "spikformer.pth"
    torch.save({"model": sj_model.state_dict()}, pth)
    r = CliRunner().invoke(app, ["models", "import", str(pth), "--output", str(tmp_path / "ckpt"), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["config"]["pool_position"] == "before_neuron"
    pipe = load_pipeline(tmp_path / "ckpt")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (pipe.model(x) - _sj_logits(sj_model, x)).abs().max() <= 1e-4

    class Evil:
        def __reduce__(self):
            return (print, ("this would run code",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    r = CliRunner().invoke(app, ["models", "import", str(bad), "--output", str(tmp_path / "x")])
    assert r.exit_code != 0 and "weights_only" in r.stderr and "this would run code" not in r.stdout

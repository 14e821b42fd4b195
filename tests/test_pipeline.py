from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikeformer import load_pipeline
from spikeformer.checkpoint import IntegrityError, load_checkpoint, save_checkpoint
from spikeformer.convert import profile_converted
from spikeformer.energy import profile
from spikeformer.hardware import UnsupportedLayerError, compile_model, lower_model, run_graph, to_nir


def test_pipeline_takes_raw_uint8_in_both_layouts(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint)
    assert pipe.input_shape == (1, 28, 28)
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    logits = pipe.predict_logits(images)
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    assert torch.equal(pipe.predict(images[:, None]), logits.argmax(1))
    # the manifest's preprocessing is applied: the model sees (x / 255 - mean) / std
    x = (torch.from_numpy(images).float()[:, None] / 255 - 0.2860) / 0.3530
    with torch.no_grad():
        assert torch.allclose(pipe.model(x), logits, atol=1e-5)


def test_wrong_image_size_is_a_clear_error(tiny_checkpoint):
    pipe = load_pipeline(tiny_checkpoint)
    with pytest.raises(ValueError, match="28"):
        pipe.predict(np.zeros((2, 32, 32), dtype=np.uint8))


def test_tampered_checkpoint_is_refused(tiny_checkpoint):
    w = tiny_checkpoint / "model.safetensors"
    b = bytearray(w.read_bytes())
    b[100] ^= 0xFF
    w.write_bytes(bytes(b))
    with pytest.raises(IntegrityError):
        load_pipeline(tiny_checkpoint)


BUNDLED = Path(__file__).resolve().parents[1] / "models" / "spikformer-fmnist" / "2"


@pytest.fixture(scope="module")
def bundled():
    """The bundled checkpoint after its runner ran (``run`` and ``run_with_stats``), with its module types before."""
    pipe = load_pipeline(BUNDLED)
    types = [(name, type(m)) for name, m in pipe.model.named_modules()]
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    logits = pipe.predict_logits(images)
    pipe.runner.run_with_stats(pipe.preprocess(images))
    return pipe, types, pipe.preprocess(images), logits


def _module_types(model: nn.Module) -> list[tuple[str, type]]:
    return [(name, type(m)) for name, m in model.named_modules()]


def test_the_pipelines_model_is_the_model_as_trained(bundled):
    pipe, types, x, logits = bundled
    fresh, _ = load_checkpoint(BUNDLED)
    assert _module_types(pipe.model) == types == _module_types(fresh)  # no Event*, Int8*, FastMaxPool2d, folded BN
    assert not any(type(m).__module__.startswith("spikeformer.runtime") for m in pipe.model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in pipe.model.modules())
    assert pipe.runner.model is not pipe.model and not pipe.model.training
    sd, ref = pipe.model.state_dict(), fresh.state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in sd)
    with torch.no_grad():  # the model as trained computes what the runner's optimized copy does
        assert torch.allclose(pipe.model(x), logits, atol=1e-4)


def test_every_exporter_profiler_and_compiler_takes_the_pipelines_model(bundled, tmp_path):
    pipe, types, x, logits = bundled
    fresh, _ = load_checkpoint(BUNDLED)
    # NIR: lowering reads every layer; only the parts NIR cannot express (attention products, readout) are refused,
    # exactly as for the checkpoint's own model
    with pytest.raises(UnsupportedLayerError, match="qkv_product") as ours:
        to_nir(pipe.model, torch.rand(1, 1, 28, 28))
    with pytest.raises(UnsupportedLayerError) as theirs:
        to_nir(fresh, torch.rand(1, 1, 28, 28))
    assert str(ours.value) == str(theirs.value)
    # the energy profiler
    report = profile(pipe.model, x)
    assert report.total_spikes > 0 and report.energy("cmos45nm") > 0
    assert torch.allclose(report.output, logits, atol=1e-4)
    assert report.total_spikes == profile(fresh, x).total_spikes
    assert profile_converted(pipe.model, x).total_spikes == report.total_spikes  # the converted-model profiler
    # the hardware graph and its float emulator, then the neuromorphic compiler for both targets
    assert torch.allclose(run_graph(lower_model(pipe.model), x), logits, atol=1e-4)
    for target in ("loihi2", "spinnaker2"):
        result = compile_model(pipe.model, target, samples=x[:2]).to_dict()
        where = {lp["name"]: lp["where"] for lp in result["layers"]}
        assert result["ok"] and result["cores_used"] > 0 and where["head"] == "host"
        assert where["blocks.0.attn.q_neuron"] == "cores" and "blocks.1.attn.qkv_product" in where
    # the checkpoint writer: the model saves and loads back as it was trained
    sd = pipe.model.state_dict()
    save_checkpoint(pipe.model, tmp_path / "again", pipe.preprocess, pipe.class_names, "fashion-mnist")
    again = load_pipeline(tmp_path / "again").model.state_dict()
    assert again.keys() == sd.keys() and all(torch.equal(again[k], sd[k]) for k in sd)
    assert _module_types(pipe.model) == types  # none of them changed the model either

"""Hybrid training: an ANN checkpoint initialises its converted spiking twin, which then trains with distillation."""

from __future__ import annotations

import pytest
import torch

import spikeformer
from spikeformer import load_pipeline
from spikeformer.checkpoint import save_checkpoint
from spikeformer.convert import SpikeformerConverter
from spikeformer.data import Preprocess
from spikeformer.nn.neuron import QuantIF
from spikeformer.train import TrainConfig, fit
from spikeformer.train.trainer import _init_from

ARCH = dict(patch_size=2, embed_dim=16, depth=1, num_heads=2)
DIGITS = dict(img_size=8, in_chans=1, num_classes=10)


@pytest.fixture
def ann_checkpoint(tmp_path):
    torch.manual_seed(0)
    ann = spikeformer.create_model("vit-relu-fmnist", **DIGITS, **ARCH).eval()
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(0.0, 0.5)
    folder = tmp_path / "ann"
    save_checkpoint(ann, folder, Preprocess.for_dataset("digits"), [str(i) for i in range(10)], "digits")
    return folder


def test_ann_checkpoint_initialises_the_twin_with_converted_weights(ann_checkpoint):
    twin = spikeformer.create_model("vit-relu-fmnist", **DIGITS, **ARCH, spiking=True, timesteps=3)
    _init_from(twin, str(ann_checkpoint), "the twin")
    ann, _ = spikeformer.checkpoint.load_checkpoint(ann_checkpoint)
    expected = SpikeformerConverter(timesteps=3).convert(ann).state_dict()
    got = twin.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)
    assert float(twin.blocks[0].mlp.act_h.threshold) == pytest.approx(float(ann.blocks[0].mlp.act_h.threshold.detach()))


def test_init_from_a_different_width_names_the_mismatch(ann_checkpoint):
    twin = spikeformer.create_model("vit-relu-fmnist", **DIGITS, **{**ARCH, "embed_dim": 32}, spiking=True, timesteps=2)
    with pytest.raises(ValueError, match="shape mismatch"):
        _init_from(twin, str(ann_checkpoint), "the twin")


def test_hybrid_fit_trains_the_twin_with_distillation(ann_checkpoint, tmp_path):
    cfg = TrainConfig(
        model="vit-relu-fmnist",
        model_args={**ARCH, "spiking": True, "timesteps": 2},
        dataset="digits",
        epochs=1,
        batch_size=32,
        limit_train=96,
        limit_test=32,
        augment=False,
        lr=1e-3,
        warmup_epochs=0,
        init_from=str(ann_checkpoint),
        distill_from=str(ann_checkpoint),
        output=str(tmp_path / "hybrid"),
        device="cpu",
    )
    result = fit(cfg, progress=False)
    pipe = load_pipeline(result.checkpoint)
    assert pipe.manifest.config["spiking"] is True and pipe.manifest.timesteps == 2
    assert any(isinstance(m, QuantIF) for m in pipe.model.modules())
    start = SpikeformerConverter(timesteps=2).convert(spikeformer.checkpoint.load_checkpoint(ann_checkpoint)[0])
    trained = pipe.model.state_dict()
    moved = [k for k, v in start.state_dict().items() if k.endswith("weight") and not torch.equal(v, trained[k])]
    assert moved  # surrogate gradients reached the weights
    assert pipe.manifest.training["config"]["distill_from"] == str(ann_checkpoint)

import json

import pytest
import torch

from spikeformer import load_pipeline
from spikeformer.train import TrainConfig, fit

TINY_ARGS = {"embed_dim": 32, "depth": 1, "num_heads": 4, "timesteps": 2}


def _cfg(tmp_path, **kw):
    base = dict(
        model="spikformer-4-384",
        model_args=TINY_ARGS,
        dataset="digits",
        epochs=2,
        batch_size=32,
        augment=False,
        lr=5e-3,
        warmup_epochs=0.5,
        output=str(tmp_path / "run"),
        device="cpu",
    )
    return TrainConfig(**{**base, **kw})


def test_fit_learns_digits_and_writes_run_folder(tmp_path):
    result = fit(_cfg(tmp_path, epochs=6, lr=0.02), progress=False)
    run = tmp_path / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert (run / "curves.png").stat().st_size > 1000
    assert result.top1 > 0.3  # chance is 0.1; six short epochs on 8x8 digits reach about 0.5
    pipe = load_pipeline(result.checkpoint)
    assert pipe.manifest.metrics["top1"] == pytest.approx(result.top1)
    assert pipe.manifest.samples["labels"] == list(range(10))
    assert pipe.manifest.training["config"]["epochs"] == 6


def test_same_seed_same_weights_and_resume_continues(tmp_path):
    a = fit(_cfg(tmp_path / "a", epochs=2), progress=False)
    # stop after one epoch, then resume to two: identical to the uninterrupted run
    fit(_cfg(tmp_path / "b", epochs=2, stop_after=1), progress=False)
    b = fit(_cfg(tmp_path / "b", epochs=2), progress=False)
    wa = load_pipeline(a.checkpoint).model.state_dict()
    wb = load_pipeline(b.checkpoint).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert len(b.history) == 2


def test_bad_configuration_is_refused(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        _cfg(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="unknown data set|accepted"):
        fit(_cfg(tmp_path, dataset="cifar-1000"), progress=False)

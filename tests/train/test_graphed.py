"""The CUDA-graph training step's CPU-side contract (the capture itself needs a GPU: bench/speed_gpu.py checks that a
captured step trains like the eager one)."""

import json

import pytest
import torch

from spikeformer.train.graphed import GraphedStep, set_lr, tensor_lr
from spikeformer.train.state import load_optimizer, save_optimizer


def _optimizer():
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def test_tensor_learning_rates_are_set_in_place():
    _, opt = _optimizer()
    tensor_lr(opt)
    lr = opt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and float(lr) == pytest.approx(1e-3)
    set_lr(opt, 5e-4)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(5e-4)  # the captured tensor, updated
    _, plain = _optimizer()
    set_lr(plain, 2e-4)
    assert plain.param_groups[0]["lr"] == 2e-4


def test_optimizer_state_with_tensor_learning_rates_saves_and_loads(tmp_path):
    model, opt = _optimizer()
    tensor_lr(opt)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_optimizer(opt, tmp_path)
    saved = json.loads((tmp_path / "optimizer.json").read_text())
    assert saved["param_groups"][0]["lr"] == pytest.approx(1e-3)  # a number in the JSON, not a tensor
    saved["param_groups"][0]["capturable"] = True  # as written by a GPU run with captured steps
    (tmp_path / "optimizer.json").write_text(json.dumps(saved))
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1.0)
    load_optimizer(opt2, tmp_path)
    assert opt2.param_groups[0]["capturable"] is False  # resuming on a CPU keeps this optimizer's own choice
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    model2(torch.randn(4, 3)).sum().backward()
    opt2.step()  # the loaded state is usable


def test_graphed_step_refuses_cpu_tensors():
    step = GraphedStep(lambda x, y: (x.sum(),))
    with pytest.raises(ValueError, match="CUDA"):
        step(torch.zeros(2), torch.zeros(2))

import math

import pytest
import torch

from spikeformer.functional import if_multistep, lif_multistep, lif_step


def _lif_closed_form_hard(x: float, tau: float, v_th: float, steps: int) -> list[int]:
    """Constant input, hard reset to 0: the potential after k steps without a spike is x (1 - (1 - 1/tau)^k)."""
    spikes, k = [], 0
    for _ in range(steps):
        k += 1
        v = x * (1 - (1 - 1 / tau) ** k)
        if v >= v_th:
            spikes.append(1)
            k = 0
        else:
            spikes.append(0)
    return spikes


@pytest.mark.parametrize("x,tau", [(1.5, 2.0), (3.0, 4.0), (1.2, 1.5), (0.9, 2.0)])
def test_lif_matches_closed_form_with_constant_input(x, tau):
    T = 20
    s, _ = lif_multistep(torch.full((T, 1), x), tau=tau)
    assert s[:, 0].tolist() == _lif_closed_form_hard(x, tau, 1.0, T)


def test_lif_step_by_step_equation():
    torch.manual_seed(0)
    x = torch.randn(6, 5) * 2
    tau, v_th = 3.0, 1.0
    v = torch.zeros(5)
    s_seq, v_last = lif_multistep(x, tau=tau, v_threshold=v_th)
    for t in range(6):
        h = v + (x[t] - v) / tau
        s = (h >= v_th).float()
        assert torch.equal(s_seq[t], s)
        v = h * (1 - s)
    assert torch.allclose(v_last, v)


def test_lif_without_decay_input_and_soft_reset():
    x = torch.tensor([[0.8], [0.8], [0.8], [0.8]])
    s, v = lif_multistep(x, tau=2.0, v_reset=None, decay_input=False)
    # h1 = 0.8; h2 = 0.4 + 0.8 = 1.2 -> spike, v = 0.2; h3 = 0.1 + 0.8 = 0.9; h4 = 0.45 + 0.8 = 1.25 -> spike, v = 0.25
    assert s[:, 0].tolist() == [0, 1, 0, 1]
    assert v.item() == pytest.approx(0.25)


def test_if_integrates_and_soft_resets():
    s, v = if_multistep(torch.full((5, 1), 0.4), v_reset=None)
    # 0.4, 0.8, 1.2 -> spike (0.2), 0.6, 1.0 -> spike (0.0)
    assert s[:, 0].tolist() == [0, 0, 1, 0, 1]
    assert v.item() == pytest.approx(0.0, abs=1e-6)


def test_detach_reset_changes_gradient_path():
    x = torch.tensor([2.4, 0.2], requires_grad=True)
    v = torch.zeros(2)
    s, v1 = lif_step(x, v, detach_reset=True)
    v1.sum().backward()
    g_detached = x.grad.clone()
    x.grad = None
    s, v1 = lif_step(x, v, detach_reset=False)
    v1.sum().backward()
    assert not torch.allclose(g_detached, x.grad)
    # with a detached reset, d v1 / d x = (1 - s) / tau
    assert g_detached.tolist() == pytest.approx([0.0, 0.5])


def test_multistep_rest_potential_is_v_reset():
    s, v = lif_multistep(torch.zeros(3, 2), v_reset=-0.5, v_threshold=1.0)
    assert torch.allclose(v, torch.full((2,), -0.5)) and s.sum() == 0
    assert math.isfinite(v.sum().item())

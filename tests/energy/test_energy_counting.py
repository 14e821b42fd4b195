"""Exact operation counts on hand-built layers with known spike inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spikeformer
from spikeformer.energy import OpCounter, classify_input, profile
from spikeformer.nn import LIF, SeqToANN


def _binary(shape: tuple[int, ...], ones: int, seed: int = 0) -> torch.Tensor:
    """A 0/1 tensor with exactly ``ones`` ones at random positions."""
    x = torch.zeros(shape).flatten()
    x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(seed))[:ones]] = 1.0
    return x.reshape(shape)


def test_classify_by_values_not_names():
    assert classify_input(torch.tensor([0.0, 1.0, 1.0])).kind == "binary"
    info = classify_input(torch.tensor([0.0, 2.0, 1.0, -1.0]))
    assert (info.kind, info.events, info.nonzero, info.max_abs) == ("count", 4, 3, 2.0)
    assert classify_input(torch.tensor([0.0, 0.5])).kind == "real"
    assert classify_input(torch.tensor([True, False])).kind == "binary"


def test_linear_binary_input_exact_sops():
    layer = nn.Linear(6, 5, bias=False)
    x = _binary((2, 1, 3, 6), ones=7)  # T=2, B=1, N=3 tokens, 6 features: exactly 7 spikes
    r = profile(layer, x)
    row = r.layers[0]
    assert (row.kind, row.input_kind, row.events) == ("linear", "binary", 7)
    assert row.sops == 7 * 5 and row.macs == 0
    assert row.flops == 3 * 6 * 5  # dense MACs of one step, one sample
    assert row.dense_macs == 2 * 3 * 6 * 5
    assert row.rate_sops == pytest.approx(row.sops)  # fr * T * FLOPs = events * fan-out for a linear layer
    assert row.firing_rate == pytest.approx(7 / 36)
    assert r.total_sops == 35 and r.total_macs == 0 and r.ann_flops == 90


def test_linear_count_input_both_rules():
    layer = nn.Linear(4, 3, bias=False)
    x = torch.tensor([[[0.0, 2.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0]]])  # [T=1, B=2, 4]: values {0, 1, 2}, sum 6
    acc = profile(layer, x).layers[0]
    assert (acc.input_kind, acc.events, acc.sops, acc.macs) == ("count", 6, 6 * 3, 0)
    assert "value n = n ACs" in acc.reason
    mac = profile(layer, x, integer_inputs="mac").layers[0]
    assert (mac.sops, mac.macs) == (0, 2 * 4 * 3)
    assert "integer_inputs='mac'" in mac.reason


def test_linear_real_input_charged_macs_with_reason():
    layer = nn.Linear(4, 3)
    x = torch.tensor([[[0.0, 0.5, 1.0, 0.0]]])
    row = profile(layer, x).layers[0]
    assert (row.input_kind, row.sops, row.macs, row.firing_rate) == ("real", 0, 12, None)
    assert "real-valued" in row.reason
    with pytest.raises(ValueError, match="integer_inputs"):
        profile(layer, x, integer_inputs="round")


def _brute_force_conv_ops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """Count (input event, output tap) pairs by walking every output position and kernel tap."""
    n, c, h, w = x.shape
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    total = 0
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for u in range(kh):
                    for v in range(kw):
                        r, s = i * sh - ph + u, j * sw - pw + v
                        if 0 <= r < h and 0 <= s < w:
                            total += int(x[b, :, r, s].abs().sum())
    return total * conv.out_channels // conv.groups


@pytest.mark.parametrize(
    ("position", "stride", "expected"),
    [((0, 0), 1, 4 * 3), ((1, 1), 1, 9 * 3), ((0, 3), 1, 4 * 3), ((1, 1), 2, 4 * 3), ((3, 3), 2, 1 * 3)],
)
def test_conv_single_spike_reaches_exact_outputs(position, stride, expected):
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=1, bias=False)
    x = torch.zeros(1, 1, 2, 4, 4)  # [T, B, C, H, W]
    x[0, 0, 1, position[0], position[1]] = 1.0
    row = profile(SeqToANN(conv), x).layers[0]
    assert row.sops == expected and row.macs == 0
    ho = (4 + 2 - 3) // stride + 1
    assert row.flops == 3 * ho * ho * 2 * 9


def test_conv_random_spikes_match_brute_force():
    conv = nn.Conv2d(3, 4, 3, stride=1, padding=1, bias=False)
    x = _binary((2, 1, 3, 6, 5), ones=23, seed=3)
    row = profile(SeqToANN(conv), x).layers[0]
    assert row.sops == _brute_force_conv_ops(conv, x.flatten(0, 1))
    # the papers' fr * T * FLOPs also charges taps that fall on the zero padding: never below the exact count
    assert row.rate_sops >= row.sops
    padless = nn.Conv2d(3, 4, 3, padding=0, bias=False)
    assert profile(SeqToANN(padless), x).layers[0].sops == _brute_force_conv_ops(padless, x.flatten(0, 1))


def test_conv_real_input_charged_dense_macs_each_step():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.rand(4, 1, 3, 5, 5)  # T=4 presentations of a real-valued image
    row = profile(SeqToANN(conv), x).layers[0]
    assert row.flops == 8 * 25 * 3 * 9
    assert row.macs == 4 * row.flops and row.sops == 0


def _attention(name: str):
    model = spikeformer.create_model(name, img_size=32, embed_dim=16, depth=1, num_heads=2, timesteps=2)
    return model.blocks[0].attn.eval()


class _Gate(nn.Module):
    """``2 * x * mask``: an LIF (tau 2, threshold 1) fed it spikes exactly where ``x * mask`` is 1."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x * self.mask


def test_spikformer_attention_counts_k_then_q_events():
    attn = _attention("spikformer-4-384")  # D=16, 2 heads: d=8
    shape = (2, 1, 5, 16)  # [T, B, N, D]
    pattern = _binary(shape, ones=40, seed=1)
    mask_k, mask_v = _binary(shape[1:], 30, seed=2), _binary(shape[1:], 50, seed=3)
    attn.q, attn.k, attn.v = _Gate(torch.ones(shape[1:])), _Gate(mask_k), _Gate(mask_v)
    q, k = pattern, pattern * mask_k
    with OpCounter(attn) as counter:
        with torch.no_grad():
            attn(pattern)
    r = counter.report(timesteps=2, batch_size=1)
    kv, qkv = r.layer("spikingselfattention.kv"), r.layer("spikingselfattention.qkv")
    assert kv.sops == int(k.sum()) * 8 and kv.macs == 0  # each K spike adds a d-wide row of V
    assert qkv.sops == int(q.sum()) * 8 and qkv.macs == 0  # each Q spike adds a row of K^T V
    assert kv.flops == qkv.flops == 2 * 5 * 8 * 8  # heads * N * d * d per step
    assert kv.kind == "ssa:k^T v" and qkv.kind == "ssa:q(k^T v)"


def test_spike_driven_attention_masks_and_token_sum():
    attn = _attention("sdt-8-384")  # D=16, 2 heads
    shape = (2, 1, 5, 16)
    pattern = _binary(shape, ones=60, seed=4)
    mask_k, mask_v = _binary(shape[1:], 40, seed=5), _binary(shape[1:], 45, seed=6)
    attn.q, attn.k, attn.v = _Gate(torch.ones(shape[1:])), _Gate(mask_k), _Gate(mask_v)
    with torch.no_grad():
        r = profile(attn, 2.0 * pattern)  # the shortcut LIF turns 2.0 into exactly the pattern's spikes
    kv, qkv = r.layer("spikedrivenselfattention.kv"), r.layer("spikedrivenselfattention.q_kv")
    k_and_v = pattern * mask_k * mask_v
    assert kv.sops == int(k_and_v.sum()) and kv.mask_ops == pattern.numel() and kv.macs == 0
    assert qkv.sops == 0 and qkv.macs == 0 and qkv.mask_ops == pattern.numel()
    assert kv.flops == qkv.flops == 5 * 16


def test_neuron_updates_and_spikes():
    lif = LIF()
    x = 2.0 * _binary((3, 2, 10), ones=13)
    row = profile(nn.Sequential(lif), x).layers[0]
    assert (row.kind, row.neuron_updates, row.spikes) == ("neuron:lif", 60, 13)
    assert row.firing_rate == pytest.approx(13 / 60)

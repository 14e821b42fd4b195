"""The Triton kernels (the CUDA paths of the fused neurons and of max-pooling) against their references.

CI has no GPU, so the kernels run in Triton's interpreter on the CPU: ``TRITON_INTERPRET=1`` must be set before Triton
compiles anything, so the outer test re-runs this file in a fresh interpreter with it set, and the checks below exist
only there. The interpreter executes the same kernel code (masks, unrolled time loop, 64-bit offsets, dtype casts) with
numpy arithmetic. On a GPU machine ``SPIKEFORMER_TEST_CUDA=1 pytest tests/kernels/test_triton.py`` runs the same
checks on CUDA tensors, compiled (``bench/speed_gpu.py`` also checks spikes and gradients on the GPU before timing).
"""

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

from spikeformer.nn import IF, LIF, ATan, FastSigmoid, Sigmoid

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
ON_GPU = os.environ.get("SPIKEFORMER_TEST_CUDA") == "1"  # on a GPU machine: the same checks on CUDA tensors


if not (INTERPRETED or ON_GPU):

    def test_triton_kernels_under_the_interpreter():
        pytest.importorskip("triton", reason="Triton is not installed (make setup installs it for the tests)")
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-o",
                "addopts=",
                "-q",
                "-p",
                "no:cacheprovider",
                "--import-mode=importlib",
            ]
            + [__file__],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        passed = re.search(r"\b(\d+) passed", proc.stdout)
        assert passed and int(passed.group(1)) >= 40 and "skipped" not in proc.stdout, proc.stdout[-2000:]


if INTERPRETED or ON_GPU:
    import torch.nn.functional as F

    from spikeformer.functional import fused
    from spikeformer.kernels import triton_lif, triton_pool

    @pytest.fixture(autouse=True)
    def _device():
        torch.set_default_device("cuda" if ON_GPU else "cpu")  # every tensor below is made on it
        yield
        torch.set_default_device("cpu")

    def _pair(cls, **kw):
        return cls(**kw), cls(**kw, backend="fused")

    @pytest.mark.parametrize("cls", [LIF, IF])
    @pytest.mark.parametrize("v_reset", [0.0, None, -0.2])
    @pytest.mark.parametrize("detach_reset", [True, False])
    @pytest.mark.parametrize("surrogate", [Sigmoid, ATan, FastSigmoid])
    def test_triton_matches_reference(cls, v_reset, detach_reset, surrogate):
        torch.manual_seed(hash((cls.__name__, v_reset, detach_reset, surrogate.__name__)) % 2**31)
        kw = dict(v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate())
        if cls is LIF:
            kw.update(tau=3.0, decay_input=bool(v_reset is None))
        x = (torch.randn(11, 3, 70) * 1.5).requires_grad_(True)  # T = 11: one full unrolled block of 8 and a partial
        assert triton_lif.available(x)
        ref, fast = _pair(cls, **kw)
        s_ref, s_fast = ref(x), fast(x)
        assert torch.equal(s_ref, s_fast)
        assert torch.allclose(ref.v, fast.v, atol=1e-6)
        w = torch.randn_like(s_ref)
        (g_ref,) = torch.autograd.grad((s_ref * w).sum() + ref.v.sum(), x)
        (g_fast,) = torch.autograd.grad((s_fast * w).sum() + fast.v.sum(), x)
        assert torch.allclose(g_ref, g_fast, atol=1e-5, rtol=1e-5), (g_ref - g_fast).abs().max()

    def test_several_programs_and_a_given_state():
        """N larger than one block (3 programs, the last partial) and a non-uniform initial membrane with its grad."""
        torch.manual_seed(1)
        x = (torch.randn(5, 2, 600) * 2).requires_grad_(True)
        v0 = (torch.rand(2, 600) * 0.8).requires_grad_(True)
        ref, fast = _pair(LIF, tau=2.0)
        (s_ref, v_ref), (s_fast, v_fast) = ref(x, v0), fast(x, v0)
        assert torch.equal(s_ref, s_fast)
        assert torch.allclose(v_ref, v_fast, atol=1e-6)
        w = torch.randn_like(s_ref)
        g_ref = torch.autograd.grad((s_ref * w).sum() + (v_ref * 0.3).sum(), (x, v0))
        g_fast = torch.autograd.grad((s_fast * w).sum() + (v_fast * 0.3).sum(), (x, v0))
        for a, b in zip(g_ref, g_fast, strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)

    def test_bfloat16_inputs_integrate_in_float32():
        """bf16 in, exact bf16 spikes out; the membrane is the float32 reference run on the same (rounded) inputs."""
        torch.manual_seed(2)
        x = (torch.randn(6, 4, 300) * 1.5).to(torch.bfloat16).requires_grad_(True)
        ref, fast = _pair(LIF, tau=2.0)
        s_fast = fast(x)
        assert s_fast.dtype == torch.bfloat16
        s_ref = ref(x.detach().float().requires_grad_(True))
        assert torch.equal(s_ref, s_fast.float())
        (g,) = torch.autograd.grad(s_fast.float().sum(), x)
        assert g.dtype == torch.bfloat16 and torch.isfinite(g.float()).all()

    def test_channels_last_steps_keep_their_layout():
        """Conv outputs in channels-last memory go through without a copy and come out in the same layout."""
        torch.manual_seed(3)
        t, b, c, h, w = 3, 2, 8, 5, 5
        base = torch.randn(t * b, c, h, w).contiguous(memory_format=torch.channels_last) * 1.5
        x = base.reshape(t, b, c, h, w).requires_grad_(True)
        assert not x.is_contiguous()
        ref, fast = _pair(LIF, tau=2.0)
        s_fast = fast(x)
        assert s_fast.stride() == x.stride()
        s_ref = ref(x)
        assert torch.equal(s_ref, s_fast)
        gw = torch.randn_like(s_ref)
        (g_ref,) = torch.autograd.grad((s_ref * gw).sum(), x)
        (g_fast,) = torch.autograd.grad((s_fast * gw).sum(), x)
        assert torch.allclose(g_ref, g_fast, atol=1e-5)

    def test_inference_runs_without_an_autograd_node():
        x = torch.randn(4, 3, 50) * 2
        with torch.inference_mode():
            s, v = fused.fused_multistep(x, torch.zeros(()).expand(3, 50), 0.5)
        ref, _ = _pair(LIF, tau=2.0)
        assert s.grad_fn is None and torch.equal(s, ref(x))
        assert v.dtype == torch.float32 and torch.allclose(v, ref.v)

    def test_empty_and_single_step_inputs():
        _, fast = _pair(LIF, tau=2.0)
        assert fast(torch.randn(4, 0, 3)).shape == (4, 0, 3)
        ref, fast = _pair(LIF, tau=2.0)
        x = torch.randn(1, 7) * 3
        assert torch.equal(ref(x), fast(x))

    @pytest.mark.parametrize("layout", ["contiguous", "channels_last", "tokens"])
    def test_input_bias_is_added_per_channel(layout):
        """The conv bias the runtime moves into a neuron: the kernel adds it on the fly, per channel, in float32."""
        torch.manual_seed(4)
        if layout == "tokens":
            x, bias = torch.randn(3, 2, 5, 24) * 1.5, torch.randn(24)
            ref_in = x + bias
        else:
            base = torch.randn(3 * 2, 24, 4, 5)
            if layout == "channels_last":
                base = base.contiguous(memory_format=torch.channels_last)
            x, bias = base.reshape(3, 2, 24, 4, 5), torch.randn(24)
            ref_in = x + bias.view(-1, 1, 1)
        with torch.inference_mode():
            s, v = fused.fused_multistep(x, torch.zeros(()).expand(x.shape[1:]), 0.5, bias=bias)
            s_ref, v_ref = fused.fused_multistep(ref_in.contiguous(), torch.zeros(()).expand(x.shape[1:]), 0.5)
        assert torch.equal(s, s_ref)
        assert torch.allclose(v, v_ref, atol=1e-6)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize(("k", "stride", "pad", "hw"), [(3, 2, 1, (9, 8)), (3, 2, 1, (16, 16)), (2, 2, 0, (7, 6))])
    def test_max_pool_matches_torch(dtype, k, stride, pad, hw):
        torch.manual_seed(5)
        x = torch.randn(3, 80, *hw).to(dtype).contiguous(memory_format=torch.channels_last)
        y = triton_pool.max_pool2d_channels_last(x, k, stride, pad)
        ref = F.max_pool2d(x.float(), k, stride, pad).to(dtype)
        assert y.is_contiguous(memory_format=torch.channels_last) and y.dtype == dtype
        assert torch.equal(y, ref)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize(("k", "stride", "pad", "hw"), [(3, 2, 1, (9, 8)), (3, 2, 1, (8, 8)), (2, 2, 0, (7, 6))])
    def test_max_pool_gradient_matches_torch_with_ties(dtype, k, stride, pad, hw):
        """Spike maps are full of ties: the gradient goes to the first maximum in scan order, as in PyTorch."""
        torch.manual_seed(8)
        x = (torch.rand(2, 70, *hw) < 0.4).to(dtype).contiguous(memory_format=torch.channels_last)
        x = (x + torch.randint(0, 2, x.shape).to(dtype) * (torch.rand(x.shape) < 0.1).to(dtype)).requires_grad_(True)
        g = torch.randn(2, 70, (hw[0] + 2 * pad - k) // stride + 1, (hw[1] + 2 * pad - k) // stride + 1).to(dtype)
        y = triton_pool.max_pool2d_channels_last(x, k, stride, pad)
        (gx,) = torch.autograd.grad(y, x, g)
        xr = x.detach().float().contiguous().requires_grad_(True)
        yr = F.max_pool2d(xr, k, stride, pad)
        (gr,) = torch.autograd.grad(yr, xr, g.float())
        assert torch.equal(y.float(), yr)
        assert gx.is_contiguous(memory_format=torch.channels_last) and gx.dtype == dtype
        # the same windows pick the same inputs; a pixel that several windows picked sums their gradients in another
        # order than PyTorch: rounding only
        assert torch.equal(gx != 0, gr != 0)
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        assert torch.allclose(gx.float(), gr.to(dtype).float(), rtol=tol, atol=tol)

    def test_max_pool_refuses_other_layouts():
        with pytest.raises(ValueError, match="channels-last"):
            triton_pool.max_pool2d_channels_last(torch.randn(1, 4, 5, 5), 3, 2, 1)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_strided_views_are_gathered_without_a_copy(dtype):
        """Heads split off a [T, B, N, D] tensor (a transposed view): the kernel gathers the input through its strides
        and writes contiguous spikes, which is what the attention's batched products read."""
        torch.manual_seed(6)
        base = (torch.randn(3, 2, 10, 24) * 1.5).to(dtype).requires_grad_(True)
        view = base.view(3, 2, 10, 4, 6).transpose(2, 3)  # [T, B, H, N, d], not contiguous
        ref, fast = _pair(LIF, tau=2.0)
        s_fast = fast(view)
        assert s_fast.is_contiguous() and s_fast.shape == view.shape
        s_ref = ref(view.detach().float().requires_grad_(True))
        assert torch.equal(s_ref, s_fast.float())
        gw = torch.randn(s_ref.shape)
        (g_fast,) = torch.autograd.grad((s_fast.float() * gw).sum(), base)
        x32 = base.detach().float().requires_grad_(True)
        ref2 = LIF(tau=2.0)
        (g_ref,) = torch.autograd.grad((ref2(x32.view(3, 2, 10, 4, 6).transpose(2, 3)) * gw).sum(), x32)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        assert torch.allclose(g_ref, g_fast.float(), atol=tol, rtol=tol)

    def test_views_with_more_than_four_step_dims_fall_back_to_a_copy():
        torch.manual_seed(7)
        x = (torch.randn(2, 3, 2, 2, 2, 5) * 2).permute(0, 5, 4, 3, 2, 1)
        ref, fast = _pair(LIF, tau=2.0)
        assert torch.equal(ref(x), fast(x))

    def _bn_reference(y, bn, neuron, timesteps, heads, images):
        """``nn.BatchNorm`` (float32 arithmetic, output rounded to y's dtype) then the neuron, as separate modules."""
        z = (bn(y.float()) if images else bn(y.float().reshape(-1, y.shape[-1])).reshape(y.shape)).to(y.dtype)
        z = z.reshape(timesteps, -1, *z.shape[1:]) if images else z
        return neuron(z.view(*z.shape[:3], heads, -1).transpose(2, 3) if heads else z)

    @pytest.mark.parametrize(
        ("images", "heads", "dtype"),
        [
            (True, 0, torch.float32),
            (False, 0, torch.float32),
            (False, 4, torch.float32),
            (True, 0, torch.bfloat16),
            (False, 3, torch.bfloat16),
        ],
    )
    @pytest.mark.parametrize(
        ("cls", "v_reset", "detach_reset", "surrogate"),
        [(LIF, 0.0, True, Sigmoid), (LIF, None, False, ATan), (IF, -0.2, False, FastSigmoid)],
    )
    @pytest.mark.parametrize("programs", [1024, 1])
    def test_fused_batchnorm_and_neuron_match_the_modules(
        images, heads, dtype, cls, v_reset, detach_reset, surrogate, programs, monkeypatch
    ):
        """Training-mode BatchNorm + neuron in two kernels each way: the same spikes, running statistics, final
        membrane and gradients (input, BatchNorm weight and bias) as the modules one after the other. The tiles are
        smaller than the inputs (several row blocks and channel blocks, partial ones at the edges); ``programs=1``
        makes the reducing kernels walk several row tiles per program (as on large layers)."""
        from torch import nn

        from spikeformer.kernels import triton_bn_lif

        monkeypatch.setattr(triton_bn_lif, "_PROGRAMS", programs)

        torch.manual_seed(zlib.crc32(repr((images, heads, dtype, cls.__name__, v_reset)).encode()))
        timesteps, c = 3, (72 if images else 96)
        if images:
            y0 = (torch.randn(timesteps * 2, c, 7, 6) * 2 + 0.7).contiguous(memory_format=torch.channels_last)
            bn_ref, bn = nn.BatchNorm2d(c), nn.BatchNorm2d(c)
        else:
            y0 = torch.randn(timesteps, 2, 23, c) * 2 + 0.7
            bn_ref, bn = nn.BatchNorm1d(c), nn.BatchNorm1d(c)
        y0 = y0.to(dtype)
        with torch.no_grad():
            bn_ref.weight.uniform_(0.5, 1.5)
            bn_ref.bias.uniform_(-0.3, 0.3)
            bn_ref.running_var.uniform_(0.5, 2.0)
        bn.load_state_dict(bn_ref.state_dict())
        kw = dict(v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate(), backend="fused")
        neuron = cls(tau=2.0, **kw) if cls is LIF else cls(**kw)
        y_ref, y = y0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
        s_ref = _bn_reference(y_ref, bn_ref, neuron, timesteps, heads, images)
        a, b = (0.5, 0.5) if cls is LIF else (1.0, 1.0)
        s, v_t = triton_bn_lif.bn_lif(
            y, timesteps, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps, a, b,
            neuron.v_rest, 1.0, v_reset, detach_reset, neuron.surrogate.name, neuron.surrogate.alpha, heads, images,
        )  # fmt: skip
        s = s.reshape(s_ref.shape)
        assert s.dtype == dtype and s.shape == s_ref.shape
        agree = (s == s_ref).float().mean().item()
        if dtype == torch.float32:  # (statistics summed in another order may move a spike sitting on the threshold)
            assert agree > 0.9999, agree
        else:  # BatchNorm outputs rounded to bf16 from statistics that differ in the last float32 bits
            assert agree > 0.998, agree
        assert torch.allclose(bn.running_mean, bn_ref.running_mean, atol=1e-6)
        assert torch.allclose(bn.running_var, bn_ref.running_var, atol=1e-5, rtol=1e-5)
        if agree == 1.0:
            # (the modules' membrane comes back in the input dtype: bf16 rounds it)
            assert torch.allclose(v_t, neuron.v.float(), atol=1e-5 if dtype == torch.float32 else 1.6e-2)
        g = torch.randn(s.shape)
        grads_ref = torch.autograd.grad((s_ref.float() * g).sum(), (y_ref, bn_ref.weight, bn_ref.bias))
        grads = torch.autograd.grad((s.float() * g).sum(), (y, bn.weight, bn.bias))
        if dtype == torch.bfloat16:  # both runs against float32 arithmetic on the same inputs: no worse than modules
            bn_ref.load_state_dict(bn.state_dict())  # (fresh copy of the affine parameters; statistics unused)
            y32 = y0.float().requires_grad_(True)
            neuron.reset()
            truth = _bn_reference(y32, bn_ref.float(), neuron, timesteps, heads, images)
            exact = torch.autograd.grad((truth * g).sum(), (y32, bn_ref.weight, bn_ref.bias))
        for mine, ref, *true in zip(grads, grads_ref, *([exact] if dtype == torch.bfloat16 else []), strict=True):
            assert mine.dtype == ref.dtype and mine.shape == ref.shape
            if dtype == torch.float32:
                assert (mine - ref).norm() / ref.norm() < (1e-4 if agree == 1.0 else 2e-3)
            else:
                # bf16 moves about 0.1 % of the spikes either way (the modules also round the resting potential to
                # bf16), and a moved spike moves its surrogate gradients (with an undetached reset, the later steps'
                # too): both runs land 3-10 % from float32 arithmetic; a wrong index or cast lands near 100 %
                err, err_ref = ((t.float() - true[0]).norm() / true[0].norm() for t in (mine, ref))
                assert err < 0.15 and err_ref < 0.15, (err, err_ref)

    def _assert_trains_alike(model, out, ref, out_ref):
        """Logits, parameter gradients (of a squared-logit loss) and buffers of ``model`` equal ``ref``'s."""
        assert torch.allclose(out, out_ref, atol=1e-5), (out - out_ref).abs().max()
        g_ref = torch.autograd.grad(out_ref.square().sum(), list(ref.parameters()))
        g = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        scale = max(t.abs().max().item() for t in g_ref)
        for mine, theirs in zip(g, g_ref, strict=True):
            # (a linear bias before BatchNorm has a true gradient of 0: both are rounding noise there)
            assert torch.allclose(mine, theirs, atol=1e-5 * scale, rtol=1e-3)
        for (name, mine), theirs in zip(model.named_buffers(), ref.buffers(), strict=True):
            assert torch.allclose(mine.float(), theirs.float(), atol=1e-5), name

    @pytest.mark.parametrize("pool_position", ["after_neuron", "before_neuron"])
    def test_fused_batchnorm_in_a_model_trains_like_the_modules(pool_position, monkeypatch):
        """A whole Spikformer in training mode: every conv/linear + BatchNorm + neuron runs fused (with SpikingJelly's
        max-pool before the neuron, the two pooled stages run the Triton BatchNorm alone) and the logits, gradients
        and running statistics equal those of the torch-backend reference."""
        import copy

        from spikeformer.kernels import triton_bn_lif
        from spikeformer.models import create_model
        from spikeformer.nn import set_backend

        torch.manual_seed(9)
        # both channels-last and no TF32: on a GPU the convolutions then run the same cuDNN kernels in both models
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        ref = create_model("spikformer-2-128-fmnist", pool_position=pool_position).train()
        ref = ref.to(memory_format=torch.channels_last)
        model = copy.deepcopy(ref)
        set_backend(model, "fused")
        calls = []
        real = triton_bn_lif._BNLIF.apply, triton_bn_lif._BatchNorm.apply
        triton_bn_lif._BNLIF.apply = lambda *a: calls.append("bn_lif") or real[0](*a)
        triton_bn_lif._BatchNorm.apply = lambda *a: calls.append("bn") or real[1](*a)
        try:
            x = torch.rand(3, 1, 28, 28)
            with monkeypatch.context() as m:  # the reference: nn.BatchNorm modules and the torch neurons
                m.setattr(triton_bn_lif, "ENABLED", False)
                with torch.no_grad():
                    ref(x)
                out_ref = ref(x)
            with torch.no_grad():  # without gradients: the modules (no kernel calls); running statistics move alike
                model(x)
            out = model(x)
        finally:
            triton_bn_lif._BNLIF.apply, triton_bn_lif._BatchNorm.apply = real
        pooled = 2 if pool_position == "before_neuron" else 0
        assert calls.count("bn_lif") == 17 - pooled and calls.count("bn") == pooled
        _assert_trains_alike(model, out, ref, out_ref)

    @pytest.mark.parametrize(
        ("images", "dtype"), [(True, torch.float32), (False, torch.float32), (True, torch.bfloat16)]
    )
    def test_triton_batchnorm_matches_torch(images, dtype, monkeypatch):
        """The BatchNorm kernels alone (a BatchNorm that a max-pool reads): output, running statistics and gradients
        as ``nn.BatchNorm`` computes them in float32, several row tiles per reducing program."""
        from torch import nn

        from spikeformer.kernels import triton_bn_lif

        monkeypatch.setattr(triton_bn_lif, "_PROGRAMS", 1)
        torch.manual_seed(10)
        if images:
            y0 = (torch.randn(6, 40, 9, 7) * 3 - 1).contiguous(memory_format=torch.channels_last)
            bn_ref, bn = nn.BatchNorm2d(40), nn.BatchNorm2d(40)
        else:
            y0, bn_ref, bn = torch.randn(300, 72) * 3 - 1, nn.BatchNorm1d(72), nn.BatchNorm1d(72)
        with torch.no_grad():
            bn_ref.weight.uniform_(-1.5, 1.5)
            bn_ref.bias.uniform_(-0.3, 0.3)
        bn.load_state_dict(bn_ref.state_dict())
        y_ref, y = y0.to(dtype).requires_grad_(True), y0.to(dtype).requires_grad_(True)
        z_ref = bn_ref(y_ref.float())
        z = triton_bn_lif.batch_norm(y, bn.weight, bn.bias, bn.running_mean, bn.running_var, 0.1, 1e-5, images)
        assert z.dtype == dtype and z.shape == y.shape
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        assert torch.allclose(z.float(), z_ref, atol=tol, rtol=tol)
        assert torch.allclose(bn.running_mean, bn_ref.running_mean, atol=1e-6)
        assert torch.allclose(bn.running_var, bn_ref.running_var, rtol=1e-5)
        g = torch.randn(y0.shape)
        grads_ref = torch.autograd.grad((z_ref * g).sum(), (y_ref, bn_ref.weight, bn_ref.bias))
        grads = torch.autograd.grad((z.float() * g).sum(), (y, bn.weight, bn.bias))
        for mine, ref in zip(grads, grads_ref, strict=True):
            assert mine.dtype == ref.dtype
            assert (mine.float() - ref.float()).norm() / ref.float().norm() < (1e-5 if dtype == torch.float32 else 1e-2)

    def test_fused_batchnorm_of_a_repeated_input_equals_the_repeated_copies():
        """Direct encoding: the first convolution's output for one copy of the images, read at every time step, gives
        the spikes, running statistics and weight gradients of the T-fold copy, and the copies' summed input gradient
        (what the repeated input's gradient is)."""
        from torch import nn

        from spikeformer.kernels import triton_bn_lif

        torch.manual_seed(11)
        timesteps, c = 4, 24
        y1 = (torch.randn(3, c, 5, 6) * 2 + 0.5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        y_rep = y1.detach().repeat(timesteps, 1, 1, 1).contiguous(memory_format=torch.channels_last)
        y_rep.requires_grad_(True)
        bns = [nn.BatchNorm2d(c), nn.BatchNorm2d(c)]
        with torch.no_grad():
            bns[0].weight.uniform_(0.5, 1.5)
        bns[1].load_state_dict(bns[0].state_dict())
        outs = []
        for bn, y, repeated in ((bns[0], y1, True), (bns[1], y_rep, False)):
            s, v_t = triton_bn_lif.bn_lif(
                y, timesteps, bn.weight, bn.bias, bn.running_mean, bn.running_var, 0.1, 1e-5, 0.5, 0.5, 0.0, 1.0,
                0.0, True, "sigmoid", 4.0, images=True, repeated=repeated,
            )  # fmt: skip
            outs.append((s, v_t))
        assert outs[0][0].shape == outs[1][0].shape == (timesteps * 3, c, 5, 6)
        assert torch.equal(outs[0][0], outs[1][0]) and torch.allclose(outs[0][1], outs[1][1], atol=1e-6)
        assert torch.allclose(bns[0].running_mean, bns[1].running_mean, atol=1e-6)
        assert torch.allclose(bns[0].running_var, bns[1].running_var, rtol=1e-5)
        g = torch.randn(outs[0][0].shape)
        g1 = torch.autograd.grad((outs[0][0] * g).sum(), (y1, bns[0].weight, bns[0].bias))
        g2 = torch.autograd.grad((outs[1][0] * g).sum(), (y_rep, bns[1].weight, bns[1].bias))
        assert torch.allclose(g1[0], g2[0].reshape(timesteps, 3, c, 5, 6).sum(0), atol=1e-5, rtol=1e-4)
        assert torch.allclose(g1[1], g2[1], rtol=1e-4, atol=1e-6) and torch.allclose(g1[2], g2[2], rtol=1e-4)

    def test_spike_driven_transformer_trains_like_the_modules_with_the_triton_batchnorm(monkeypatch):
        """The Spike-driven Transformer's BatchNorms mostly feed a residual sum or a max-pool, not a neuron: those run
        the Triton BatchNorm alone (its Q, K, V BatchNorm + neuron fused); logits, gradients and running statistics
        equal the modules' (float32)."""
        import copy

        from spikeformer.kernels import triton_bn_lif
        from spikeformer.models import create_model
        from spikeformer.nn import set_backend

        torch.manual_seed(12)
        kw = dict(img_size=16, in_chans=1, num_classes=5, embed_dim=32, depth=1, num_heads=4, timesteps=2)
        ref = create_model("sdt-8-384", **kw).train().to(memory_format=torch.channels_last)
        model = copy.deepcopy(ref)
        set_backend(model, "fused")
        x = torch.rand(3, 1, 16, 16)
        with monkeypatch.context() as m:
            m.setattr(triton_bn_lif, "ENABLED", False)
            out_ref = ref(x)
        calls = []
        real = triton_bn_lif._BNLIF.apply, triton_bn_lif._BatchNorm.apply
        monkeypatch.setattr(triton_bn_lif._BNLIF, "apply", lambda *a: calls.append("bn_lif") or real[0](*a))
        monkeypatch.setattr(triton_bn_lif._BatchNorm, "apply", lambda *a: calls.append("bn") or real[1](*a))
        out = model(x)
        assert calls.count("bn_lif") == 3 and calls.count("bn") >= 4, calls
        _assert_trains_alike(model, out, ref, out_ref)

"""GPU speed against SpikingJelly 2.0 (not a test; run it on a GPU): the GPU figures of docs/benchmarks.md in one run.

Same Spikformer-4-384 (CIFAR geometry, T=4, 32x32), same weights (``from_spikingjelly``), the two frameworks timed
alternately in one process with CUDA events (medians of ``--repeats``). Sections, in order:

0. ceilings: a device-to-device copy (bytes read + written) and a bf16 8192^3 matrix product;
1. correctness on the device: the Triton LIF kernels against the step-by-step torch reference (spikes identical,
   gradients within float32 rounding), ``Runner`` logits against the plain model, SpikingJelly against ours;
2. one multi-step LIF layer, T=500, B=16, 16,384 neurons, forward + backward with a fixed random output gradient,
   and the fraction of the copy bandwidth it reaches (6 float32 accesses per element: read x, write s and h; read h
   and dL/ds, write dL/dx);
3. inference at batch 256 (images/s) and batch 1 (ms, host input to host logits for ours), ours through ``Runner``
   in float32 and bfloat16, with and without CUDA graphs;
4. training throughput at batch 128 (forward + backward + AdamW), float32 and bf16 autocast, ours with the Triton
   neurons, the fused BatchNorm + neuron kernels (``spikeformer.kernels.triton_bn_lif``; once more with the
   ``nn.BatchNorm`` modules instead, as an A/B) and channels-last;
5. ``--compile``: the same through ``torch.compile`` (only while ``--deadline-s`` leaves time);
6. ``--profile``: the kernels that take the time in ours (bf16 inference at batch 256, a bf16 training step), as
   tables in ``DIR/profile_*.txt``.

cuDNN's autotuner (``torch.backends.cudnn.benchmark``) is on for both frameworks.

Usage: ``python bench/speed_gpu.py [--repeats 20] [--out DIR] [--json]``; ``--device cpu --small`` is a smoke run of
the script itself (no ceilings, no Triton). Results are written to ``DIR/speed_gpu.json`` after every section.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _timer(device: torch.device, repeats: int, warmup: int = 3):
    """``time(fn) -> median seconds``: CUDA events on a GPU, the host clock after a synchronise elsewhere."""

    def run(fn) -> float:
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    return run


def _load_speed_cpu():
    spec = importlib.util.spec_from_file_location("speed_cpu", Path(__file__).with_name("speed_cpu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Report:
    def __init__(self, out: Path | None) -> None:
        self.res: dict = {}
        self.out = out

    def put(self, key: str, value) -> None:
        self.res[key] = value
        print(f"[{time.strftime('%H:%M:%S')}] {key}: {json.dumps(value)}", file=sys.stderr, flush=True)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "speed_gpu.json").write_text(json.dumps(self.res, indent=2))


def _profile(fn, path: Path, device: torch.device) -> None:
    """Kernel-time table of three calls of ``fn`` (after a warm-up call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    avg = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total", "self_cpu_time_total"):
        try:
            path.write_text(avg.table(sort_by=key, row_limit=40, max_name_column_width=90))
            return
        except (AttributeError, KeyError, ValueError):
            continue


def _ours_for_training(dev: torch.device, seed: int = 0) -> torch.nn.Module:
    """Our Spikformer-4-384 prepared as ``spikeformer train`` prepares a model (``prepare_model``: fused neurons, fast
    max-pool, channels-last on CUDA), in training mode."""
    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    from spikeformer.interop import from_spikingjelly
    from spikeformer.train import prepare_model

    torch.manual_seed(seed)
    return prepare_model(from_spikingjelly(spikformer_cifar10()).train(), dev)


def _sj_for_training(dev: torch.device, seed: int = 0) -> torch.nn.Module:
    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    torch.manual_seed(seed)
    return spikformer_cifar10().to(dev).train()


def _step_fn(model, opt, amp: bool, sj_style: bool, graphed: bool):
    """One training step ``(x, y) -> (loss,)``: forward, cross-entropy, backward, AdamW."""
    from spikingjelly.activation_based import functional as sjf

    def step(x, y):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=not graphed):
            if sj_style:
                sjf.reset_net(model)
                out = model(x).mean(0)
            else:
                out = model(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return (loss.detach(),)

    return step


def _training(rep: Report, dev: torch.device, batch: int, timeit, time_left) -> None:
    """Training throughput at ``batch``: both frameworks eagerly (as their users run them) and with the whole step
    captured as a CUDA graph (``spikeformer.train.graphed``; SpikingJelly too when its step can be captured), float32
    and bf16 autocast; plus a check that the captured step trains exactly like the eager one."""
    from spikeformer.kernels import triton_bn_lif
    from spikeformer.train.graphed import GraphedStep, tensor_lr

    cuda = dev.type == "cuda"
    x = torch.rand(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def throughput(sj: bool, amp: bool, graphed: bool, fused: bool, bn_kernels: bool = True) -> float:
        triton_bn_lif.ENABLED = bn_kernels  # False: our BatchNorms through the nn modules (the A/B of those kernels)
        model = _sj_for_training(dev) if sj else _ours_for_training(dev)
        # fused=True: PyTorch's single-kernel AdamW (CUDA); otherwise its default (foreach), as most scripts use it
        opt = torch.optim.AdamW(model.parameters(), capturable=graphed, fused=fused or None)
        if graphed:
            tensor_lr(opt)  # as the trainer does (its schedule writes the learning rate into device memory)
        fn = _step_fn(model, opt, amp, sj, graphed)
        if graphed:
            g = GraphedStep(fn)
            for _ in range(5):  # warm-up, capture, first replays
                g(x, y)
            return batch / timeit(lambda: g(x, y))
        return batch / timeit(lambda: fn(x, y))

    if cuda:  # the captured step must train exactly like the eager one: same init, optimizer, batches; compare losses
        losses = []
        for graphed in (False, True):
            model = _ours_for_training(dev, seed=1)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=True, fused=True)
            tensor_lr(opt)
            fn = _step_fn(model, opt, False, False, graphed)
            run = GraphedStep(fn) if graphed else fn
            gen = torch.Generator(device=dev).manual_seed(2)
            seq = []
            for _ in range(8):
                xb = torch.rand(batch, 3, 32, 32, device=dev, generator=gen)
                yb = torch.randint(0, 10, (batch,), device=dev, generator=gen)
                seq.append(float(run(xb, yb)[0]))
            losses.append(seq)
        rel = max(abs(a - b) / abs(a) for a, b in zip(*losses, strict=True))
        rep.put("train_graphed_vs_eager", {"eager_losses": losses[0], "graphed_losses": losses[1], "max_rel": rel})

    for amp in (False, True):
        key = f"train_b{batch}_{'bf16' if amp else 'fp32'}"
        if not time_left():
            rep.put(key, "skipped: deadline")
            continue
        entry = {
            "spikingjelly_img_s": throughput(True, amp, False, False),
            "ours_img_s": throughput(False, amp, False, False),
        }
        if cuda:
            entry["spikingjelly_fused_adamw_img_s"] = throughput(True, amp, False, True)
            entry["ours_fused_adamw_img_s"] = throughput(False, amp, False, True)
            entry["ours_graphed_img_s"] = throughput(False, amp, True, True)
            entry["ours_graphed_nn_batchnorm_img_s"] = throughput(False, amp, True, True, bn_kernels=False)
            triton_bn_lif.ENABLED = True
            try:
                entry["spikingjelly_graphed_img_s"] = throughput(True, amp, True, True)
            except Exception as e:  # noqa: BLE001 - report why SpikingJelly's step could not be captured
                entry["spikingjelly_graphed_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                torch.cuda.synchronize(dev)
        best_ours = max(v for k, v in entry.items() if k.startswith("ours_"))
        entry["speedup_eager"] = entry["ours_img_s"] / entry["spikingjelly_img_s"]
        entry["speedup_best_vs_sj_eager"] = best_ours / entry["spikingjelly_img_s"]
        entry["speedup_best_vs_sj_best"] = best_ours / max(v for k, v in entry.items() if k.startswith("spikingjelly_"))
        if "spikingjelly_graphed_img_s" in entry:
            entry["speedup_graphed_vs_sj_graphed"] = entry["ours_graphed_img_s"] / entry["spikingjelly_graphed_img_s"]
        rep.put(key, entry)
        if cuda:
            torch.cuda.empty_cache()


def _lif_section(rep: Report, dev: torch.device, shape: tuple, timeit, copy_gb_s: float | None, sweep: bool) -> None:
    """One multi-step LIF layer, forward + backward (``torch.autograd.grad``: no accumulation into a leaf's ``.grad``,
    which would add a read-modify-write pass of its own), ours and SpikingJelly's; plus our two kernels alone."""
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import neuron as sjn

    from spikeformer.nn import LIF

    xl = torch.randn(*shape, device=dev, requires_grad=True)
    gl = torch.randn(*shape, device=dev)
    ours_lif = LIF(tau=2.0, backend="fused")
    sj_lif = sjn.LIFNode(tau=2.0, step_mode="m", detach_reset=True)

    def lif_ours():
        ours_lif.reset()
        torch.autograd.grad(ours_lif(xl), xl, gl)

    def lif_sj():
        sjf.reset_net(sj_lif)
        torch.autograd.grad(sj_lif(xl), xl, gl)

    t_o, t_s = timeit(lif_ours), timeit(lif_sj)
    n_bytes = 6 * xl.numel() * 4
    lif = {"ours_ms": 1e3 * t_o, "spikingjelly_ms": 1e3 * t_s, "speedup": t_s / t_o, "ours_gb_s": n_bytes / t_o / 1e9}
    if copy_gb_s:
        lif["fraction_of_copy"] = lif["ours_gb_s"] / copy_gb_s
        lif["spikingjelly_fraction_of_copy"] = n_bytes / t_s / 1e9 / copy_gb_s
    if dev.type == "cuda":
        from spikeformer.kernels import triton_lif

        x = xl.detach()
        v0 = torch.zeros((), device=dev).expand(shape[1:])

        def kernels():
            _, _, h = triton_lif.lif_forward(x, v0, 0.5, 0.5, 0.0, 1.0, 0.0, keep_h=True)
            triton_lif.lif_backward(h, gl, None, 0.5, 0.5, 1.0, 0.0, True, "sigmoid", 4.0, torch.float32)

        t_k = timeit(kernels)
        lif["kernels_only_ms"] = 1e3 * t_k
        if copy_gb_s:
            lif["kernels_only_fraction_of_copy"] = n_bytes / t_k / 1e9 / copy_gb_s
        if sweep:
            default = (triton_lif._BLOCK, triton_lif._WARPS)
            lif["sweep_kernels_fraction_of_copy"] = {}
            for block, warps in ((256, 2), (512, 4), (1024, 4), (1024, 8), (2048, 8), (512, 2)):
                triton_lif._BLOCK, triton_lif._WARPS = block, warps
                frac = n_bytes / timeit(kernels) / 1e9 / (copy_gb_s or 1.0)
                lif["sweep_kernels_fraction_of_copy"][f"{block}x{warps}"] = frac
            triton_lif._BLOCK, triton_lif._WARPS = default
    rep.put("lif_fwd_bwd", lif)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile variants (slow to build)")
    ap.add_argument("--profile", action="store_true", help="write kernel-time tables of ours under --out")
    ap.add_argument("--no-train", action="store_true", help="skip the training section")
    ap.add_argument("--lif-only", action="store_true", help="only the ceilings and the LIF layer")
    ap.add_argument("--train-only", action="store_true", help="only the ceilings and the training section")
    ap.add_argument("--lif-sweep", action="store_true", help="also time the LIF kernels at other block sizes")
    ap.add_argument("--deadline-s", type=float, default=420.0, help="skip sections that would start after this")
    ap.add_argument("--out", type=Path, default=None, help="write speed_gpu.json here after every section")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    t_start = time.monotonic()

    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based.model.spikformer import spikformer_cifar10

    from spikeformer.interop import from_spikingjelly
    from spikeformer.nn import LIF
    from spikeformer.runtime import Runner

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    train_b, infer_b, lif_t, lif_b, lif_n = (4, 8, 20, 2, 1024) if args.small else (128, 256, 500, 16, 16384)
    timeit = _timer(dev, args.repeats)
    rep = Report(args.out)
    versions = {"torch": torch.__version__, "spikingjelly": importlib.metadata.version("spikingjelly")}
    try:
        import triton

        versions["triton"] = triton.__version__
    except ImportError:
        pass
    rep.put(
        "machine",
        {
            "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
            "date": datetime.date.today().isoformat(),
            **versions,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        },
    )

    def time_left() -> bool:
        return time.monotonic() - t_start < args.deadline_s

    # 0. ceilings
    if cuda and not args.small:
        buf = torch.randn(2**28, device=dev)  # 1 GiB
        t_copy = timeit(lambda: buf.clone())
        a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        t_mm = timeit(lambda: a @ a)
        del buf, a
        rep.put("ceilings", {"copy_gb_s": 2 * 2**30 / t_copy / 1e9, "bf16_matmul_tflop_s": 2 * 8192**3 / t_mm / 1e12})
    copy_gb_s = rep.res.get("ceilings", {}).get("copy_gb_s")

    if args.lif_only or args.train_only:
        if args.lif_only:
            _lif_section(rep, dev, (lif_t, lif_b, lif_n), timeit, copy_gb_s, args.lif_sweep)
        else:
            _training(rep, dev, train_b, timeit, time_left)
        print(json.dumps(rep.res) if args.json else json.dumps(rep.res, indent=2))
        return

    # 1. correctness on the device
    torch.manual_seed(0)
    speed = _load_speed_cpu()
    sj = spikformer_cifar10()
    speed._randomize(sj)
    ours = from_spikingjelly(sj.eval())
    sj = sj.to(dev)
    checks: dict = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(11, 4, 3000, device=dev) * 1.5).to(dtype).requires_grad_(True)
        ref, fast = LIF(tau=2.0), LIF(tau=2.0, backend="fused")
        s_ref, s_fast = ref(x.float()), fast(x)
        g = torch.randn_like(s_ref)
        (g_ref,) = torch.autograd.grad((s_ref * g).sum(), x)
        (g_fast,) = torch.autograd.grad((s_fast.float() * g).sum(), x)
        rel = float((g_ref.float() - g_fast.float()).norm() / g_ref.float().norm())
        same = bool(torch.equal(s_ref, s_fast.float()))
        checks[f"lif_{str(dtype)[6:]}"] = {"spikes_identical": same, "grad_rel": rel}
    xs = torch.rand(64, 3, 32, 32, device=dev)
    with torch.inference_mode():
        sjf.reset_net(sj)
        y_sj = sj(xs).mean(0).float().cpu()
    y_plain = Runner(ours, dev, "fp32", optimize=False, cuda_graphs=False).run(xs)
    for prec in ("fp32", "bf16"):
        y = Runner(ours, dev, prec).run(xs)
        checks[f"runner_{prec}"] = {
            "max_abs_logit_diff": float((y - y_plain).abs().max()),
            "argmax_agreement": float((y.argmax(1) == y_plain.argmax(1)).float().mean()),
        }
    checks["spikingjelly_vs_ours_max_abs"] = float((y_sj - y_plain).abs().max())
    rep.put("correctness", checks)

    # 2. one LIF layer, forward + backward
    _lif_section(rep, dev, (lif_t, lif_b, lif_n), timeit, copy_gb_s, args.lif_sweep)

    # 3. inference
    def sj_infer(inp, amp=False):
        with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16, enabled=amp):
            sjf.reset_net(sj)
            return sj(inp).mean(0)

    variants = {
        "fp32": dict(precision="fp32"),
        "bf16": dict(precision="bf16"),
        "bf16_no_graphs": dict(precision="bf16", cuda_graphs=False),
    }
    if not cuda:
        variants = {k: {**v, "cuda_graphs": False} for k, v in variants.items() if k != "bf16_no_graphs"}
    runners = {k: Runner(ours, dev, **kw) for k, kw in variants.items()}
    for b in (infer_b, 1):
        xi = torch.rand(b, 3, 32, 32, device=dev)
        entry: dict = {"spikingjelly_fp32_ms": 1e3 * timeit(lambda xi=xi: sj_infer(xi))}
        entry["spikingjelly_bf16_ms"] = 1e3 * timeit(lambda xi=xi: sj_infer(xi, True))
        sj_best = min(entry["spikingjelly_fp32_ms"], entry["spikingjelly_bf16_ms"])
        for name, runner in runners.items():
            ms = 1e3 * timeit(lambda xi=xi, r=runner: r.run(xi))
            entry[f"ours_{name}_ms"] = ms
            entry[f"speedup_{name}_vs_sj_fp32"] = entry["spikingjelly_fp32_ms"] / ms
            entry[f"speedup_{name}_vs_sj_best"] = sj_best / ms
        entry["ours_best_img_s"] = b / (min(v for k, v in entry.items() if k.startswith("ours_")) / 1e3)
        entry["spikingjelly_best_img_s"] = b / (sj_best / 1e3)
        rep.put(f"infer_b{b}", entry)

    # 4. training
    if not args.no_train:
        _training(rep, dev, train_b, timeit, time_left)
    if args.profile and args.out is not None and time_left():
        if not args.no_train:
            m = _ours_for_training(dev)
            opt = torch.optim.AdamW(m.parameters())
            xt, yt = torch.rand(train_b, 3, 32, 32, device=dev), torch.randint(0, 10, (train_b,), device=dev)
            step = _step_fn(m, opt, amp=True, sj_style=False, graphed=False)
            _profile(lambda: step(xt, yt), args.out / "profile_train_bf16.txt", dev)
        r = Runner(ours, dev, "bf16", cuda_graphs=False)
        xi = torch.rand(infer_b, 3, 32, 32, device=dev)
        _profile(lambda: r.run(xi), args.out / "profile_infer_bf16.txt", dev)

    # 5. torch.compile
    if args.compile and cuda:
        for b in (infer_b, 1):
            if not time_left():
                rep.put(f"compile_infer_b{b}", "skipped: deadline")
                continue
            xi = torch.rand(b, 3, 32, 32, device=dev)
            t0 = time.monotonic()
            runner = Runner(ours, dev, "bf16", compile=True)
            runner.run(xi)
            build_s = time.monotonic() - t0
            ms = 1e3 * timeit(lambda xi=xi, r=runner: r.run(xi))
            base = rep.res[f"infer_b{b}"]
            rep.put(
                f"compile_infer_b{b}",
                {"ours_bf16_compiled_ms": ms, "build_s": build_s, "vs_uncompiled": base["ours_bf16_ms"] / ms},
            )

    rep.put("elapsed_s", time.monotonic() - t_start)
    print(json.dumps(rep.res) if args.json else json.dumps(rep.res, indent=2))


if __name__ == "__main__":
    main()

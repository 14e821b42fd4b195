"""Temporary device probe (not committed): fused BN+LIF training A/B on the GPU, plus a kernel profile."""
import json, sys, time, traceback, os
from pathlib import Path
import torch
sys.path.insert(0, "bench")
import speed_gpu as sg
from spikeformer.functional import triton_bn_lif as fz
from spikeformer.train.graphed import GraphedStep, tensor_lr

out = Path(os.environ.get("OUT", "/tmp"))
dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True
timeit = sg._timer(dev, repeats=int(os.environ.get("REPEATS", "15")))
B = 128
x = torch.rand(B, 3, 32, 32, device=dev)
y = torch.randint(0, 10, (B,), device=dev)
res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}

def put(k, v):
    res[k] = v
    print(k, json.dumps(v), flush=True)
    (out / "probe.json").write_text(json.dumps(res, indent=2))

def build(sj, amp, graphed, fusion):
    fz.ENABLED = fusion
    model = sg._sj_for_training(dev) if sj else sg._ours_for_training(dev)
    opt = torch.optim.AdamW(model.parameters(), capturable=graphed, fused=(True if (graphed or not sj) else None))
    if graphed:
        tensor_lr(opt)
    fn = sg._step_fn(model, opt, amp, sj, graphed)
    if graphed:
        g = GraphedStep(fn)
        for _ in range(5):
            g(x, y)
        return g, model
    return fn, model

def thr(name, sj, amp, graphed, fusion=True):
    try:
        fn, _ = build(sj, amp, graphed, fusion)
        put(name, B / timeit(lambda: fn(x, y)))
    except Exception as e:
        put(name, f"error {type(e).__name__}: {str(e)[:400]}")
        traceback.print_exc()
    finally:
        fz.ENABLED = True
        torch.cuda.synchronize(); torch.cuda.empty_cache()

# correctness: one eager bf16 step's loss and grads, fused vs not, same init
try:
    losses, grads = [], []
    for fusion in (True, False):
        fz.ENABLED = fusion
        m = sg._ours_for_training(dev, seed=3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            o = m(x)
        l = torch.nn.functional.cross_entropy(o.float(), y)
        l.backward()
        losses.append(float(l)); grads.append(torch.cat([p.grad.flatten().float() for p in m.parameters()]))
    fz.ENABLED = True
    put("check_loss_fused_vs_modules", losses)
    put("check_grad_rel", float((grads[0] - grads[1]).norm() / grads[1].norm()))
except Exception as e:
    put("check", f"error {e}"); traceback.print_exc()

thr("sj_fp32_eager", True, False, False)
thr("ours_bf16_graphed_fused_bn", False, True, True, True)
thr("ours_bf16_graphed_modules_bn", False, True, True, False)
put("ratio_vs_sj_eager", res["ours_bf16_graphed_fused_bn"] / res["sj_fp32_eager"] if isinstance(res.get("ours_bf16_graphed_fused_bn"), float) else None)
try:
    fn, _ = build(False, True, False, True)
    sg._profile(lambda: fn(x, y), out / "profile_train_bf16_fused.txt", dev)
    put("profile", "written")
except Exception as e:
    put("profile", f"error {e}"); traceback.print_exc()

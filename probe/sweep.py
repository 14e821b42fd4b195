"""Temporary device probe (not committed): tile sweep of the BatchNorm kernels on the graphed bf16 training step."""
import json, os, sys, time, traceback
from pathlib import Path
import torch
sys.path.insert(0, "bench")
import speed_gpu as sg
from spikeformer.functional import triton_bn_lif as K
from spikeformer.train.graphed import GraphedStep, tensor_lr

out = Path(os.environ.get("OUT", "/tmp"))
dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True
timeit = sg._timer(dev, repeats=12)
B = 128
x = torch.rand(B, 3, 32, 32, device=dev)
y = torch.randint(0, 10, (B,), device=dev)
res = {}

def graphed_throughput():
    model = sg._ours_for_training(dev)
    opt = torch.optim.AdamW(model.parameters(), capturable=True, fused=True)
    tensor_lr(opt)
    g = GraphedStep(sg._step_fn(model, opt, True, False, True))
    for _ in range(5):
        g(x, y)
    r = B / timeit(lambda: g(x, y))
    del g, model, opt
    torch.cuda.synchronize(); torch.cuda.empty_cache()
    return r

configs = [(32, 64, 4), (64, 64, 4), (64, 64, 8), (32, 128, 4), (16, 128, 4), (128, 32, 8)]
K.ENABLED = False
try:
    res["nn_batchnorm"] = graphed_throughput()
except Exception as e:
    res["nn_batchnorm"] = str(e)
K.ENABLED = True
print("nn_batchnorm", res["nn_batchnorm"], flush=True)
for cfg in configs:
    K._ROWS, K._COLS, K._WARPS = cfg
    try:
        t0 = time.time()
        res["x".join(map(str, cfg))] = graphed_throughput()
        print(cfg, res["x".join(map(str, cfg))], f"{time.time()-t0:.1f}s", flush=True)
    except Exception as e:
        res["x".join(map(str, cfg))] = f"error {type(e).__name__}: {str(e)[:300]}"
        print(cfg, "error", e, flush=True)
    (out / "sweep.json").write_text(json.dumps(res, indent=2))
best = max((k for k in res if k != "nn_batchnorm" and isinstance(res[k], float)), key=lambda k: res[k])
(out / "best.txt").write_text(best)
print("best", best, flush=True)

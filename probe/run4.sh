#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -2
export PYTHONPATH=/tmp/site:$PWD/src
SPIKEFORMER_TEST_CUDA=1 timeout 100 python -m pytest -o addopts= -q -p no:cacheprovider tests/functional/test_triton.py > $OUT/tests.txt 2>&1; echo "tests rc $?"
grep -E "passed|failed|^E  " $OUT/tests.txt | head -12
timeout 120 python bench/speed_gpu.py --train-only --repeats 20 --out $OUT/bench --json > $OUT/bench_stdout.json 2> $OUT/bench_stderr.txt; echo "bench rc $?"
grep -E "train_b128" $OUT/bench_stderr.txt | cut -c1-1200
OUT=$OUT timeout 45 python - <<'PY' 2>&1 | grep -v -i warn | tail -3
import os, sys, torch
from pathlib import Path
sys.path.insert(0, "bench")
import speed_gpu as sg
dev = torch.device("cuda"); torch.backends.cudnn.benchmark = True
x = torch.rand(128, 3, 32, 32, device=dev); y = torch.randint(0, 10, (128,), device=dev)
m = sg._ours_for_training(dev)
opt = torch.optim.AdamW(m.parameters(), fused=True)
fn = sg._step_fn(m, opt, True, False, False)
sg._profile(lambda: fn(x, y), Path(os.environ["OUT"]) / "profile_train_bf16.txt", dev)
print("profile written")
PY

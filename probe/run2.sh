#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -2
export PYTHONPATH=/tmp/site:$PWD/src
SPIKEFORMER_TEST_CUDA=1 timeout 150 python -m pytest -o addopts= -q -p no:cacheprovider tests/functional/test_triton.py 2>&1 | tail -8
OUT=$OUT timeout 150 python probe/gpu_probe.py 2>&1 | grep -v -i warn | tail -12
timeout ${BENCH_S:-240} python bench/speed_gpu.py --train-only --repeats 15 --out $OUT/bench --json > $OUT/bench_stdout.json 2> $OUT/bench_stderr.txt; echo "bench rc $?"
tail -5 $OUT/bench_stderr.txt | cut -c1-1500

#!/bin/bash
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | grep -v WARNING | tail -2
export PYTHONPATH=/tmp/site:$PWD/src
SPIKEFORMER_TEST_CUDA=1 timeout 150 python -m pytest -o addopts= -q -p no:cacheprovider tests/functional/test_triton.py > $OUT/tests.txt 2>&1; echo "tests rc $?"
grep -E "passed|failed|^E  " $OUT/tests.txt | head -20
OUT=$OUT timeout 150 python probe/sweep.py 2>&1 | grep -v -i warn | tail -12
BEST=$(cat $OUT/best.txt 2>/dev/null || echo 32x64x4)
timeout ${BENCH_S:-200} python probe/bench_with.py $BEST --train-only --repeats 15 --out $OUT/bench --json > $OUT/bench_stdout.json 2> $OUT/bench_stderr.txt; echo "bench rc $? with $BEST"
tail -3 $OUT/bench_stderr.txt | cut -c1-1500

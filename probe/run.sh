#!/bin/bash
# device entry: install the peer, run the CUDA tests, then the probe
set -x
pip install -q --no-deps --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD/src
python -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())"
SPIKEFORMER_TEST_CUDA=1 timeout 240 python -m pytest -o addopts= -q -p no:cacheprovider -x tests/functional/test_triton.py 2>&1 | tail -15
timeout ${PROBE_S:-200} python probe/gpu_probe.py 2>&1 | grep -v Warning | tail -40

"""Run bench/speed_gpu.py with the BatchNorm kernel tile from the sweep (argv[1] = RxCxW), then its own args."""
import runpy, sys
from spikeformer.functional import triton_bn_lif as K
K._ROWS, K._COLS, K._WARPS = map(int, sys.argv[1].split("x"))
sys.argv = ["bench/speed_gpu.py"] + sys.argv[2:]
runpy.run_path("bench/speed_gpu.py", run_name="__main__")

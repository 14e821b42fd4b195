"""Run a chain of Dense + LIF layers in Lava's bit-accurate fixed-point simulation (``Loihi2SimCfg(fixed_pt)``).

Executed by ``spikeformer.hardware.lava_check`` with the Lava environment's interpreter (Python 3.10); it imports
nothing from spikeformer. Usage: ``python _lava_runner.py SPEC.json INPUT.npz OUTPUT.npz``.

SPEC.json: ``{"steps": S, "layers": [{"weights": "w0", "weight_exp": int, "bias_mant": "b0", "bias_exp": int,
"vth": int, "du": int, "dv": int}, ...]}``, array names referring to INPUT.npz, which also holds ``spikes``
``[samples, S, inputs]`` (0/1). OUTPUT.npz gets ``layer{i}`` ``[samples, S, neurons]`` spikes. No pickle anywhere.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def run_sample(spec: dict, arrays, spikes: np.ndarray) -> list[np.ndarray]:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    steps = int(spec["steps"])
    source = Source(data=spikes.T.astype(np.int32))  # [inputs, steps]
    prev, sinks, procs, lifs = source.s_out, [], [source], []
    for layer in spec["layers"]:
        w = arrays[layer["weights"]].astype(np.int32)
        dense = Dense(weights=w, weight_exp=int(layer["weight_exp"]), num_weight_bits=8)
        lif = LIF(
            shape=(w.shape[0],),
            du=int(layer["du"]),
            dv=int(layer["dv"]),
            vth=int(layer["vth"]),
            bias_mant=np.zeros(w.shape[0], dtype=np.int32),
            bias_exp=int(layer["bias_exp"]),
        )
        prev.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        sink = Sink(shape=(w.shape[0],), buffer=steps)
        lif.s_out.connect(sink.a_in)
        sinks.append(sink)
        procs += [dense, lif]
        lifs.append((lif, arrays[layer["bias_mant"]].astype(np.int32)))
        prev = lif.s_out
    # Each Dense delivers one step late, so layer k (from 0) first receives input at time step k + 2. Its bias is
    # switched on then, so that it does not charge the membrane before the input arrives (ours starts at step 0).
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    for step in range(1, steps + 1):
        for k, (lif, bias) in enumerate(lifs):
            if step == k + 2:
                lif.bias_mant.set(bias)
        source.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    out = [np.asarray(s.data.get()).T.copy() for s in sinks]  # [steps, neurons]
    source.stop()
    return out


def main(spec_path: str, input_path: str, output_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    arrays = np.load(input_path, allow_pickle=False)
    spikes = arrays["spikes"]
    per_layer: list[list[np.ndarray]] = [[] for _ in spec["layers"]]
    for sample in spikes:
        for i, s in enumerate(run_sample(spec, arrays, sample)):
            per_layer[i].append(s)
    np.savez(output_path, **{f"layer{i}": np.stack(v).astype(np.int8) for i, v in enumerate(per_layer)})


if __name__ == "__main__":
    main(*sys.argv[1:4])

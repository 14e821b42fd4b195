"""Cross-check of the ``loihi2-emu`` integer network against Lava's bit-accurate Loihi models.

A compiled chain of Linear + LIF layers (binary spike input) is exported as Lava ``Dense`` + ``LIF`` parameters and
run in Lava (lava-nc 0.10, ``Loihi2SimCfg(select_tag="fixed_pt")``) in a separate Python 3.10 environment through
``_lava_runner.py``; data go out as JSON + ``.npz`` and come back as ``.npz`` (never pickle).

Parameter mapping (our compiled layer -> Lava):
- Lava's mixed-sign 8-bit weights keep the sign and 7 bits above a dropped least-significant bit, so a weight
  mantissa ``m`` (|m| <= 127) is sent as ``2 m``; Lava scales the sum by ``2^weight_exp`` and the LIF shifts it left
  by 6, so ``weight_exp = e - 7`` for our effective weight ``m 2^e``. Exact when ``e >= 6`` (checked).
- bias ``b = mant 2^bias_exp`` (13-bit mantissa); ``vth = our vth / 2^6``; ``dv`` as compiled; ``du = 4095``
  (Lava adds 1: the current decays fully each step, i.e. no synaptic memory, as in our LIF).
- Every Lava ``Dense`` delivers its output one step later, so layer ``k`` (from 0) spikes ``k + 1`` steps later in
  Lava; the runner switches each layer's bias on when its first input arrives (ours starts integrating at step 0),
  and the comparison shifts by that and runs ``T + depth`` steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from spikeformer.hardware.emulator import run_program
from spikeformer.hardware.quantize import IntProgram
from spikeformer.settings import get_settings

__all__ = ["lava_python", "lava_spec", "run_lava", "cross_check"]

RUNNER = Path(__file__).with_name("_lava_runner.py")


def lava_python() -> Path | None:
    """The Lava environment's interpreter, or ``None`` when there is none.

    The first executable of: the setting ``lava_python`` (``SPIKEFORMER_LAVA_PYTHON``) when set, and
    ``.venv-lava/bin/python`` under the current folder (where ``make setup-lava`` creates it in a checkout).
    """
    configured = get_settings().lava_python
    candidates = [configured.expanduser()] if configured is not None else []
    candidates.append(Path.cwd() / ".venv-lava/bin/python")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def lava_spec(prog: IntProgram) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Lava parameters of a compiled Linear+LIF chain; returns ``(spec, arrays, neuron node names)``."""
    if prog.target.name != "loihi2":
        raise ValueError(f"the Lava cross-check needs a loihi2 program, got {prog.target.name}")
    layers, arrays, names = [], {}, []
    nodes = list(prog.graph)
    for node in nodes:
        if node.op in ("input", "linear"):
            continue
        if node.op != "lif":
            raise ValueError(f"layer {node.name}: {node.op}; the Lava cross-check accepts Linear + LIF chains only")
        lin = prog.graph.nodes[node.inputs[0]]
        if lin.op != "linear":
            raise ValueError(f"layer {node.name}: input from {lin.op}; accepted: Linear")
        p, q = prog.params[lin.name], prog.params[node.name]
        if p["weight"].shape[0] != 1 or p["exp"].unique().numel() != 1:
            raise ValueError(f"layer {lin.name}: weight_splits=1 and one exponent per layer are needed for Lava")
        e = int(p["exp"][0, 0])
        if e < 6:
            raise ValueError(f"layer {lin.name}: weight exponent {e} < 6 is not exact in Lava; raise threshold_bits")
        if q["vth"] % 64 or q["vth"] // 64 >= 2**17:
            raise ValueError(f"layer {node.name}: threshold {q['vth']} is not a 17-bit mantissa shifted by 6")
        bias, bexp = p["bias"], p["bias_exp"]
        i = len(layers)
        arrays[f"w{i}"] = (2 * p["weight"][0]).numpy().astype(np.int32)
        arrays[f"b{i}"] = (bias // 2**bexp).numpy().astype(np.int32)
        layers.append(
            {
                "weights": f"w{i}",
                "weight_exp": e - 7,
                "bias_mant": f"b{i}",
                "bias_exp": int(bexp),
                "vth": int(q["vth"] // 64),
                "du": 4095,
                "dv": int(q["dv"]),
            }
        )
        names.append(node.name)
    return {"steps": prog.timesteps + len(layers), "layers": layers}, arrays, names


def run_lava(prog: IntProgram, spikes: torch.Tensor, python: Path | None = None, timeout: float = 300) -> list:
    """Run the program in Lava on binary ``spikes [T, B, F]``; returns per layer ``[T, B, neurons]`` aligned to ours."""
    python = python or lava_python()
    if python is None:
        raise FileNotFoundError("no Lava environment: run `make setup-lava` (needs Python 3.10)")
    spec, arrays, _ = lava_spec(prog)
    t, depth = spikes.shape[0], len(spec["layers"])
    padded = np.zeros((spikes.shape[1], t + depth, spikes.shape[2]), dtype=np.int32)
    padded[:, :t] = spikes.transpose(0, 1).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "spec.json").write_text(json.dumps(spec))
        np.savez(tmp / "in.npz", spikes=padded, **arrays)
        proc = subprocess.run(
            [str(python), str(RUNNER), str(tmp / "spec.json"), str(tmp / "in.npz"), str(tmp / "out.npz")],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"Lava run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out = np.load(tmp / "out.npz", allow_pickle=False)
        # layer k (from 0) lags k + 1 steps: the source sends step 0 at Lava's first step, and each Dense sends what
        # it accumulated in the previous step
        return [
            torch.from_numpy(out[f"layer{k}"][:, k + 1 : k + 1 + t].astype(np.float64)).transpose(0, 1)
            for k in range(depth)
        ]


def cross_check(prog: IntProgram, spikes: torch.Tensor, python: Path | None = None) -> dict:
    """Compare every layer's spikes between ``run_program`` and Lava; returns counts of spikes and mismatches."""
    _, _, names = lava_spec(prog)
    ours = run_program(prog, spikes, record=tuple(names)).recorded
    theirs = run_lava(prog, spikes, python)
    layers = []
    for name, lava in zip(names, theirs, strict=True):
        mine = ours[name]
        layers.append({"layer": name, "spikes": float(mine.sum()), "mismatches": int((mine != lava).sum())})
    return {"layers": layers, "exact": all(layer["mismatches"] == 0 for layer in layers)}

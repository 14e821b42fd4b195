"""PNG figures of a report: input firing rate per layer, and energy per inference by hardware model with the ANN."""

from __future__ import annotations

from pathlib import Path

from spikeformer.energy.hardware import HardwareModel, resolve_hardware
from spikeformer.energy.report import DEFAULT_HARDWARE, EnergyReport

__all__ = ["plot_energy", "plot_firing_rates"]

_COLORS = {"conv2d": "#4c72b0", "linear": "#55a868", "ssa": "#c44e52", "sdsa": "#8172b2"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def plot_firing_rates(report: EnergyReport, path: str | Path) -> Path:
    """Bar chart of the input spike rate (events per input element per step) of every spike-fed layer.

    Layers fed real values (charged as MACs) have no spike rate and are left out. Returns the PNG's path.
    """
    rows = [r for r in report.layers if not r.is_neuron and r.firing_rate is not None]
    fig, ax = _figure(max(6.0, 0.28 * len(rows) + 2.0), 4.5)
    colors = [_COLORS.get(r.kind.split(":")[0], "#937860") for r in rows]
    ax.bar(range(len(rows)), [r.firing_rate for r in rows], color=colors)
    ax.set_xticks(range(len(rows)), [r.name for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("input spike rate (events / element / step)")
    ax.set_title(f"{report.model_name}: input firing rate per layer (T={report.timesteps}, {report.batch_size} images)")
    from matplotlib.patches import Patch

    present = {r.kind.split(":")[0] for r in rows}
    ax.legend(handles=[Patch(color=c, label=k) for k, c in _COLORS.items() if k in present], fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_energy(
    report: EnergyReport,
    path: str | Path,
    hardware_names: tuple[str | HardwareModel, ...] | list | None = None,
) -> Path:
    """Bar chart (log scale) of joules per inference on each hardware model, plus the ANN at 45 nm (E_MAC x FLOPs).

    Hardware with assumed constants is hatched and labelled "(assumed)"; a measured model without a measurement is
    left out. Returns the PNG's path.
    """
    names = list(hardware_names) if hardware_names is not None else [*DEFAULT_HARDWARE, *report.measurements]
    labels, values, hatches, colors = [], [], [], []
    for name in names:
        hw = resolve_hardware(name)
        if hw.measured and hw.name not in report.measurements:
            continue
        labels.append(f"{hw.name}\n(assumed)" if hw.is_assumed else hw.name)
        values.append(report.energy(hw))
        hatches.append("//" if hw.is_assumed else "")
        colors.append("#4c72b0")
    labels.append("ANN\n45 nm MACs")
    values.append(report.ann_energy("cmos45nm"))
    hatches.append("")
    colors.append("#c44e52")
    fig, ax = _figure(max(5.0, 1.3 * len(labels) + 1.0), 4.5)
    bars = ax.bar(range(len(values)), values, color=colors, hatch=hatches, edgecolor="black")
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(f"{v * 1e3:.3g} mJ", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    if all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_ylabel("energy per inference (J)")
    ax.set_title(f"{report.model_name}: energy per inference (T={report.timesteps})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path

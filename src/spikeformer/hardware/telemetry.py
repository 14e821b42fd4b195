"""Real hardware telemetry: what each backend is, whether it is there, and what its sensors read.

Nothing is invented: a reading that the machine cannot provide is absent (``None``) with the reason, and a backend
whose runtime is missing is reported as unavailable, never as healthy.

- CPU: load average and memory from psutil; temperature from the kernel's hwmon/thermal sensors when exposed.
- CUDA: NVML (``nvidia-ml-py``, imported as ``pynvml``): temperature, slowdown/shutdown thresholds, power and its
  limit (NVML reports mW), clock-event (throttle) reasons, memory.
- Loihi 2: present only when Intel's ``lava-loihi`` runtime is importable (its Loihi 2 compiler
  ``lava.magma.compiler.subcompilers.nc`` or ``lava.utils.loihi2_profiler``; lava-nc alone ships ``lava.utils.loihi``
  and is a CPU simulator); there is no public temperature API for Loihi.
- SpiNNaker: present only when a spalloc server is configured (``SPALLOC_SERVER`` or ``~/.spalloc``).
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DeviceStatus", "cpu_status", "cuda_status", "loihi2_status", "spinnaker_status", "hardware_status"]


@dataclass
class DeviceStatus:
    """One backend device and its readings (``None`` when the machine does not expose a reading)."""

    backend: str
    device: str
    available: bool
    reason: str = ""
    temperature_c: float | None = None
    slowdown_temperature_c: float | None = None
    shutdown_temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    utilization_pct: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_status() -> DeviceStatus:
    import psutil

    vm = psutil.virtual_memory()
    load1, load5, load15 = psutil.getloadavg()
    st = DeviceStatus(
        "cpu",
        "cpu",
        True,
        utilization_pct=psutil.cpu_percent(interval=0.1),
        memory_used_mb=(vm.total - vm.available) / 2**20,
        memory_total_mb=vm.total / 2**20,
        details={"load_1m": load1, "load_5m": load5, "load_15m": load15, "cores": os.cpu_count()},
    )
    sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    readings = [(name, t) for name, entries in sensors.items() for t in entries if t.current is not None]
    if readings:
        name, hottest = max(readings, key=lambda r: r[1].current)
        st.temperature_c = float(hottest.current)
        st.slowdown_temperature_c = float(hottest.high) if hottest.high else None
        st.shutdown_temperature_c = float(hottest.critical) if hottest.critical else None
        st.details["sensor"] = f"{name}/{hottest.label or 'temp'}"
    else:
        st.details["temperature"] = "not exposed by this kernel (no hwmon/thermal sensors)"
    return st


_THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def cuda_status() -> list[DeviceStatus]:
    """One entry per NVIDIA GPU, or one unavailable entry saying why."""
    try:
        import pynvml
    except ImportError:
        return [DeviceStatus("cuda", "cuda", False, "nvidia-ml-py (pynvml) is not installed")]
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [DeviceStatus("cuda", "cuda", False, f"NVML unavailable: {e}")]
    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            st = DeviceStatus("cuda", f"cuda:{i}", True, details={"name": str(pynvml.nvmlDeviceGetName(h))})

            def read(fn, *args, scale=1.0, _h=h):
                try:
                    return float(fn(_h, *args)) * scale
                except pynvml.NVMLError:
                    return None

            st.temperature_c = read(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
            st.slowdown_temperature_c = read(
                pynvml.nvmlDeviceGetTemperatureThreshold, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            )
            st.shutdown_temperature_c = read(
                pynvml.nvmlDeviceGetTemperatureThreshold, pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
            )
            st.power_w = read(pynvml.nvmlDeviceGetPowerUsage, scale=1e-3)  # NVML reports milliwatts
            st.power_limit_w = read(pynvml.nvmlDeviceGetEnforcedPowerLimit, scale=1e-3)
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                st.memory_used_mb, st.memory_total_mb = mem.used / 2**20, mem.total / 2**20
                st.utilization_pct = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                reasons = pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
                st.throttle_reasons = [n for bit, n in _THROTTLE_BITS.items() if reasons & bit]
            except (pynvml.NVMLError, AttributeError):
                pass
            out.append(st)
    finally:
        pynvml.nvmlShutdown()
    return out or [DeviceStatus("cuda", "cuda", False, "NVML found no GPU")]


# Modules only Intel's lava-loihi extension installs (lava-nc itself ships ``lava.utils.loihi``, so that module says
# nothing about a chip): the Loihi 2 compiler, and the profiler lava-nc's own ``lava.utils.loihi.is_installed`` tests.
LAVA_LOIHI_MODULES = ("lava.magma.compiler.subcompilers.nc.ncproc_compiler", "lava.utils.loihi2_profiler")


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def loihi2_status() -> DeviceStatus:
    if not _module_exists("lava"):
        return DeviceStatus("loihi2", "loihi2", False, "Lava is not installed (the loihi2-emu backend still works)")
    if not any(_module_exists(m) for m in LAVA_LOIHI_MODULES):
        return DeviceStatus(
            "loihi2",
            "loihi2",
            False,
            "Intel's lava-loihi runtime is not installed (available to Intel NRC members only); lava-nc alone "
            "simulates Loihi on the CPU",
        )
    return DeviceStatus(
        "loihi2",
        "loihi2",
        True,
        "lava-loihi runtime found; no public temperature API",
        details={"partition": os.environ.get("PARTITION", "")},
    )


def spinnaker_status() -> DeviceStatus:
    server = os.environ.get("SPALLOC_SERVER")
    config = Path.home() / ".spalloc"
    if not server and not config.is_file():
        return DeviceStatus(
            "spinnaker2", "spinnaker2", False, "no spalloc server configured (set SPALLOC_SERVER or write ~/.spalloc)"
        )
    return DeviceStatus(
        "spinnaker2",
        "spinnaker2",
        True,
        f"spalloc server {server or 'from ~/.spalloc'}",
        details={"spalloc_server": server or str(config)},
    )


def hardware_status() -> dict[str, Any]:
    """Every backend with availability and readings."""
    devices = [cpu_status(), *cuda_status(), loihi2_status(), spinnaker_status()]
    return {"time": time.time(), "devices": [d.to_dict() for d in devices]}

"""Thermal protection: when a device gets within ``margin`` degrees of its slowdown threshold, serve with smaller
batches and a shorter queue until it has cooled ``hysteresis`` degrees below that point.

The temperature source is injectable (tests pass a function); by default it reads real telemetry
(``spikeformer.hardware``) for the configured device, and does nothing when the machine exposes no temperature.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from spikeformer.serve import metrics

__all__ = ["ThermalGuard", "Reading", "telemetry_source"]

log = logging.getLogger("spikeformer.serve.thermal")

Reading = tuple[str, float, float]  # device, temperature (C), slowdown threshold (C)


def telemetry_source(device: str) -> Callable[[], list[Reading]]:
    """Readings of the configured device's real sensors (empty when none are exposed)."""

    def read() -> list[Reading]:
        from spikeformer.hardware import cpu_status, cuda_status

        devices = cuda_status() if device.startswith("cuda") else [cpu_status()]
        out = []
        for d in devices:
            if d.available and d.temperature_c is not None:
                metrics.DEVICE_TEMPERATURE.labels(d.device).set(d.temperature_c)
                if d.power_w is not None:
                    metrics.DEVICE_POWER.labels(d.device).set(d.power_w)
                if d.slowdown_temperature_c is not None:
                    metrics.DEVICE_SLOWDOWN_TEMPERATURE.labels(d.device).set(d.slowdown_temperature_c)
                    out.append((d.device, d.temperature_c, d.slowdown_temperature_c))
        return out

    return read


@dataclass
class ThermalGuard:
    """Decides the batch size and queue capacity from device temperatures.

    Args:
        source: returns ``[(device, temperature, slowdown threshold)]``.
        base_batch, base_capacity: the configured values.
        margin: degrees below the slowdown threshold at which protection starts.
        hysteresis: extra degrees of cooling before protection ends.
        factor: batch size and queue capacity are divided by this while protecting.
    """

    source: Callable[[], list[Reading]]
    base_batch: int
    base_capacity: int
    margin: float = 5.0
    hysteresis: float = 3.0
    factor: int = 4
    active: bool = False
    hottest: Reading | None = field(default=None)

    def limits(self) -> tuple[int, int]:
        if self.active:
            return max(1, self.base_batch // self.factor), max(1, self.base_capacity // self.factor)
        return self.base_batch, self.base_capacity

    def update(self) -> bool:
        """Read the source once; returns True when the state changed."""
        try:
            readings = self.source()
        except Exception as e:  # noqa: BLE001 - a broken sensor must not take inference down
            log.warning("temperature source failed: %s", e)
            return False
        if not readings:
            return False
        hottest = max(readings, key=lambda r: r[1] - r[2])
        self.hottest = hottest
        device, temp, slowdown = hottest
        was = self.active
        if not self.active and temp >= slowdown - self.margin:
            self.active = True
        elif self.active and temp < slowdown - self.margin - self.hysteresis:
            self.active = False
        batch, capacity = self.limits()
        metrics.THERMAL_THROTTLE.set(1 if self.active else 0)
        metrics.BATCH_LIMIT.set(batch)
        if self.active != was:
            if self.active:
                log.warning(
                    "thermal protection ON: %s at %.1f C (slowdown at %.1f C): batch size %d, queue %d",
                    device,
                    temp,
                    slowdown,
                    batch,
                    capacity,
                )
            else:
                log.warning(
                    "thermal protection OFF: %s at %.1f C: batch size %d, queue %d", device, temp, batch, capacity
                )
        return self.active != was

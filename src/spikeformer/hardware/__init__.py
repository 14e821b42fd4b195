"""Hardware: real telemetry today; NIR export and chip compilation build on it."""

from spikeformer.hardware.telemetry import (
    DeviceStatus,
    cpu_status,
    cuda_status,
    hardware_status,
    loihi2_status,
    spinnaker_status,
)

__all__ = ["DeviceStatus", "cpu_status", "cuda_status", "hardware_status", "loihi2_status", "spinnaker_status"]

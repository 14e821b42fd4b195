"""Service settings (pydantic-settings): every field can be set as ``SPIKEFORMER_<FIELD>`` in the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "DEFAULT_MODEL_REPOSITORY"]

DEFAULT_MODEL_REPOSITORY = Path(__file__).resolve().parents[3] / "models"


class ServiceSettings(BaseSettings):
    """Configuration of ``spikeformer serve`` and ``spikeformer worker``."""

    model_config = SettingsConfigDict(env_prefix="SPIKEFORMER_", protected_namespaces=())

    host: str = "127.0.0.1"
    port: int = 8000
    model_repository: Path = Field(DEFAULT_MODEL_REPOSITORY, description="Folder of <model>/<version>/ checkpoints.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: a SQLite file under ./var.")
    default_model: str | None = Field(None, description="Model used by /v1/classify when none is named.")
    required_models: list[str] = Field(default_factory=list, description="Models readiness depends on (default: all).")
    device: str = "cpu"
    precision: str = "fp32"
    max_batch_size: int = Field(32, ge=1, le=1024)
    max_queue_delay_ms: float = Field(5.0, ge=0, le=1000)
    dynamic_batching: bool = True
    queue_capacity: int = Field(256, ge=1, description="Requests waiting per model before 503.")
    max_inflight: int = Field(
        512, ge=1, description="Inference requests admitted at once (read, parsed, queued or running) before 503."
    )
    request_timeout_s: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_images_per_request: int = Field(256, ge=1)
    require_api_key: bool = Field(False, description="Inference needs a key with scope 'infer' when true.")
    record_buffer_size: int = Field(10_000, ge=10, description="Inference records held while the database is down.")
    record_flush_interval_s: float = Field(0.5, gt=0)
    settings_poll_interval_s: float = Field(1.0, gt=0, description="How often maintenance mode is re-read.")
    shutdown_timeout_s: float = Field(20.0, gt=0)
    retry_after_s: int = Field(1, ge=1)
    thermal_poll_interval_s: float = Field(5.0, gt=0, description="How often device temperatures are read.")
    thermal_margin_c: float = Field(5.0, ge=0, description="Protect this many degrees below the slowdown point.")

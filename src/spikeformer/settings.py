"""The one settings object of the kit (pydantic-settings), the bottom layer every other layer reads.

Every field can be set as ``SPIKEFORMER_<FIELD>`` in the environment (``SPIKEFORMER_DATABASE_URL``,
``SPIKEFORMER_MODEL_REPOSITORY`` ...) or passed as a keyword argument. No other module reads ``SPIKEFORMER_*``
variables from ``os.environ`` itself: library code calls :func:`get_settings`, the service builds one
:class:`Settings` at start-up and hands it down.

Locations:
- ``home`` (``SPIKEFORMER_HOME``, default ``./var``): the kit's data folder; the default SQLite database is
  ``<home>/spikeformer.db``.
- ``model_repository`` (``SPIKEFORMER_MODEL_REPOSITORY``, default ``<home>/models``): the folder of
  ``<model>/<version>/`` checkpoints the service serves. ``make run`` points it at the checkout's ``models/``
  (the bundled Fashion-MNIST model); the wheel ships no weights.
- ``record_spool_dir`` (``SPIKEFORMER_RECORD_SPOOL_DIR``, default ``<home>/spool``): the service's crash spool of
  inference records (replayed at the next start when a process dies).
- The Alembic migrations ship inside the package (``spikeformer/store/migrations``); ``migrations_dir`` overrides
  them (a site's own migration folder).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ENV_PREFIX", "FASHION_MNIST_DEFAULT_ROOT", "Settings", "get_settings"]

ENV_PREFIX = "SPIKEFORMER_"
# Where Debian's dataset-fashion-mnist package installs the four IDX files (gzipped).
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")


class Settings(BaseSettings):
    """Configuration of the library, the CLI, ``spikeformer serve`` and ``spikeformer worker``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, protected_namespaces=(), extra="ignore")

    # ------------------------------------------------------------------ locations
    home: Path = Field(Path("var"), description="Data folder of the kit (default SQLite database, models).")
    model_repository: Path | None = Field(
        None, description="Folder of <model>/<version>/ checkpoints; default: <home>/models."
    )
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: a SQLite file under <home>.")
    migrations_dir: Path | None = Field(None, description="Alembic script folder; default: the package's own.")
    fashion_mnist: Path | None = Field(
        None, description=f"Folder of the Fashion-MNIST IDX files; default: {FASHION_MNIST_DEFAULT_ROOT}."
    )
    lava_python: Path | None = Field(None, description="Interpreter of the Lava environment (Python 3.10).")

    # ------------------------------------------------------------------ runtime
    kernels: bool = Field(True, description="Build and use the compiled CPU kernels (false: plain torch).")

    # ------------------------------------------------------------------ incidents and operations
    alertmanager_url: str = Field("", description="Alertmanager base URL (silences from incidents).")
    chat_webhook_url: str = Field("", description="Chat webhook that incident messages are posted to.")

    # ------------------------------------------------------------------ service and worker
    host: str = "127.0.0.1"
    port: int = 8000
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
    body_read_timeout_s: float = Field(
        30.0, gt=0, description="Seconds a request's whole body may take to arrive after its headers before 408."
    )
    max_partial_bodies: int = Field(
        64,
        ge=1,
        description="Inference requests still receiving their body at once (not counted in max_inflight) before 503.",
    )
    max_images_per_request: int = Field(256, ge=1)
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Pixels (width x height, read from the header before decoding) of an uploaded image before 413.",
    )
    malloc_mmap_threshold_bytes: int = Field(
        0,
        ge=0,
        le=32 * 1024 * 1024,
        description="serve and worker: allocations of at least this many bytes are mapped and unmapped on their own "
        "(glibc's mmap threshold, fixed), so freed batch tensors leave the resident set at once, at the cost of page "
        "faults on every large batch (about 45 % slower mixed batches of 1-256 images); 0: glibc's dynamic default, "
        "with the free memory handed back when a model's queue has been idle for idle_trim_s.",
    )
    idle_trim_s: float = Field(
        2.0,
        ge=0,
        description="serve and worker: after this many seconds with an empty queue, free heap memory goes back to the "
        "kernel (malloc_trim); 0 turns it off.",
    )
    huge_pages: bool = Field(
        True,
        description="serve and worker: PyTorch places CPU allocations of 2 MB and more on transparent huge pages "
        "(THP_MEM_ALLOC_ENABLE; fewer page faults for freshly mapped tensors).",
    )
    queue_capacity_images: int = Field(
        2048,
        ge=1,
        description="Images waiting per model before 503 (a request larger than this is admitted alone when the "
        "queue is empty).",
    )
    require_api_key: bool = Field(False, description="Inference needs a key with scope 'infer' when true.")
    record_buffer_size: int = Field(10_000, ge=10, description="Inference records held while the database is down.")
    record_flush_interval_s: float = Field(0.5, gt=0)
    record_spool_dir: Path | None = Field(
        None,
        description="Folder of the crash spool: each answered request's record is appended there before the answer "
        "is sent and replayed at the next start if the process dies; default: <home>/spool.",
    )
    record_spool_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="Bytes of not-yet-written records one process keeps in its spool; beyond it records are still "
        "answered and buffered but not spooled (counted in spikeformer_records_not_spooled_total); 0: no spool.",
    )
    record_retention_days: int = Field(
        30, ge=0, description="Whole UTC days of raw inference records kept; older ones are deleted (0: keep all)."
    )
    record_retention_batch: int = Field(5000, ge=1, description="Raw records deleted per transaction.")
    record_retention_max_batches: int = Field(100, ge=1, description="Delete transactions per retention run.")
    record_retention_interval_s: float = Field(
        600.0, gt=0, description="How often daily aggregates are rolled up and expired raw records deleted."
    )
    settings_poll_interval_s: float = Field(1.0, gt=0, description="How often maintenance mode is re-read.")
    shutdown_timeout_s: float = Field(20.0, gt=0)
    retry_after_s: int = Field(1, ge=1)
    job_data_roots: list[Path] = Field(
        default_factory=list,
        description="Folders under which jobs submitted over HTTP may read folder:<path> data sets (empty: none).",
    )
    max_pending_jobs: int = Field(1000, ge=1, description="Queued and running jobs in all before POST /v1/jobs 503s.")
    max_pending_jobs_per_key: int = Field(
        50, ge=1, description="Queued and running jobs per API key (keyless submissions share one bucket) before 503."
    )
    thermal_poll_interval_s: float = Field(5.0, gt=0, description="How often device temperatures are read.")
    thermal_margin_c: float = Field(5.0, ge=0, description="Protect this many degrees below the slowdown point.")

    @field_validator("home", mode="before")
    @classmethod
    def _blank_home_is_default(cls, value: object) -> object:
        # An empty SPIKEFORMER_HOME means "not set" (./var), never the current folder.
        return (value.strip() or Path("var")) if isinstance(value, str) else value

    @field_validator(
        "model_repository",
        "database_url",
        "migrations_dir",
        "fashion_mnist",
        "lava_python",
        "record_spool_dir",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Surrounding blanks are dropped, and `SPIKEFORMER_DATABASE_URL=` (set but empty) means "not set", as for every
        # optional location.
        return (value.strip() or None) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _derive_locations(self) -> Settings:
        if self.model_repository is None:
            self.model_repository = self.home / "models"
        if self.record_spool_dir is None:
            self.record_spool_dir = self.home / "spool"
        return self

    @property
    def fashion_mnist_root(self) -> Path:
        """The Fashion-MNIST folder in force: ``fashion_mnist`` if set, else Debian's."""
        return self.fashion_mnist or FASHION_MNIST_DEFAULT_ROOT

    def sqlite_url(self) -> str:
        """The default database: ``<home>/spikeformer.db`` (absolute; the folder is created)."""
        home = self.home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home / 'spikeformer.db'}"


def get_settings(**overrides: object) -> Settings:
    """The settings in force now: the environment read afresh (cheap), with keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]

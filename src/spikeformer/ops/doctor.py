"""``spikeformer doctor``: the runbook's investigation steps, run for the on-call engineer.

Each check returns findings with a severity from ``spikeformer.ops.severity`` (or none when all is well); the report
ranks them most severe first. Checks: the service's health endpoints; every model version on disk against its
manifest (sha256); backends and their telemetry (temperatures near the slowdown point); memory and GPU memory; the
database (reachable, connections in use, long-running queries on PostgreSQL); free disk for the model repository.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spikeformer.checkpoint import CheckpointError, IntegrityError, verify_checkpoint
from spikeformer.hardware import cpu_status, cuda_status, hardware_status
from spikeformer.ops.severity import get_severity
from spikeformer.store import Database, StoreError, connection_stats, long_running_queries

__all__ = ["Finding", "DoctorReport", "run_doctor", "CHECKS"]


@dataclass
class Finding:
    """One result: ``sev`` is ``None`` when the check passed."""

    check: str
    message: str
    sev: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.sev is None

    @property
    def rank(self) -> int:
        return get_severity(self.sev).level if self.sev else 9


@dataclass
class DoctorReport:
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def worst(self) -> str | None:
        bad = [f for f in self.findings if not f.ok]
        return min(bad, key=lambda f: f.rank).sev if bad else None

    def ranked(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (f.rank, f.check))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "worst": self.worst, "findings": [asdict(f) | {"ok": f.ok} for f in self.ranked()]}


def check_health(url: str | None, timeout: float = 3.0) -> list[Finding]:
    if not url:
        return [Finding("health", "no service URL given (--url); health endpoints not checked")]
    import httpx

    try:
        live = httpx.get(f"{url}/v2/health/live", timeout=timeout)
        ready = httpx.get(f"{url}/v2/health/ready", timeout=timeout)
    except httpx.HTTPError as e:
        return [
            Finding(
                "health",
                f"{url} does not answer ({type(e).__name__}): all inference endpoints are down",
                "SEV-1",
                {"url": url},
            )
        ]
    out = []
    body = ready.json() if ready.headers.get("content-type", "").startswith("application/json") else {}
    if live.status_code != 200:
        out.append(Finding("health", f"liveness {live.status_code} at {url}", "SEV-1"))
    if ready.status_code != 200:
        not_ready = [m for m, v in body.get("models", {}).items() if not v.get("ready")]
        out.append(Finding("health", f"not ready: models without a ready version: {not_ready}", "SEV-1", body))
    if body.get("database") == "degraded":
        out.append(
            Finding(
                "health",
                f"database degraded: {body.get('records_buffered')} records buffered, "
                f"{body.get('records_dropped')} dropped",
                "SEV-1",
                body,
            )
        )
    if body.get("maintenance", {}).get("enabled"):
        out.append(Finding("health", f"maintenance mode is on: {body['maintenance'].get('message')}", "SEV-3"))
    if body.get("thermal_protection"):
        out.append(Finding("health", "thermal protection is active (smaller batches)", "SEV-2"))
    return out or [Finding("health", f"{url} live and ready")]


def check_models(repository: Path) -> list[Finding]:
    if not repository.is_dir():
        return [Finding("models", f"model repository {repository} does not exist", "SEV-1")]
    out = []
    versions = [v for m in sorted(repository.iterdir()) if m.is_dir() for v in sorted(m.iterdir()) if v.is_dir()]
    if not versions:
        return [Finding("models", f"no model versions under {repository}", "SEV-1")]
    for v in versions:
        label = f"{v.parent.name}/{v.name}"
        try:
            m = verify_checkpoint(v)
            out.append(Finding("models", f"{label}: intact (sha256 {m.sha256[:12]})"))
        except IntegrityError as e:
            out.append(Finding("models", f"{label}: {e}", "SEV-2", {"path": str(v)}))
        except CheckpointError as e:
            out.append(Finding("models", f"{label}: {e}", "SEV-2", {"path": str(v)}))
    return out


def check_backends(margin_c: float = 5.0) -> list[Finding]:
    out = []
    for d in [cpu_status(), *cuda_status()]:
        if not d.available:
            out.append(Finding("backends", f"{d.device}: unavailable ({d.reason})", details={"device": d.device}))
            continue
        if (
            d.temperature_c is not None
            and d.slowdown_temperature_c is not None
            and d.temperature_c >= d.slowdown_temperature_c - margin_c
        ):
            out.append(
                Finding(
                    "backends",
                    f"{d.device} at {d.temperature_c:.0f} C, slowdown at {d.slowdown_temperature_c:.0f} C",
                    "SEV-2",
                    d.to_dict(),
                )
            )
        elif d.throttle_reasons and any("thermal" in r or "slowdown" in r for r in d.throttle_reasons):
            out.append(Finding("backends", f"{d.device} throttling: {', '.join(d.throttle_reasons)}", "SEV-2"))
        else:
            temp = f"{d.temperature_c:.0f} C" if d.temperature_c is not None else "temperature not exposed"
            out.append(Finding("backends", f"{d.device}: available, {temp}"))
        if d.memory_total_mb and d.memory_used_mb is not None and d.memory_used_mb / d.memory_total_mb > 0.9:
            out.append(
                Finding("memory", f"{d.device} memory {100 * d.memory_used_mb / d.memory_total_mb:.0f}% used", "SEV-3")
            )
    return out


def check_database(url: str | None, long_query_s: float = 300.0) -> list[Finding]:
    db = Database(url)
    try:
        if not db.ping():
            return [Finding("database", f"cannot reach {db.safe_url}: inference records are at risk", "SEV-1")]
        try:
            db.check_schema()
        except StoreError as e:
            return [Finding("database", str(e), "SEV-2")]
        out = [Finding("database", f"{db.safe_url} reachable, schema current")]
        if db.is_postgresql:
            stats = connection_stats(db)
            in_use, limit = stats.get("in_use", 0), stats.get("max_connections", 0)
            if limit and in_use / limit > 0.8:
                out.append(Finding("database", f"{in_use}/{limit} connections in use", "SEV-3", stats))
            slow = long_running_queries(db, long_query_s)
            if slow:
                out.append(
                    Finding(
                        "database",
                        f"{len(slow)} queries running over {long_query_s:.0f} s; see "
                        "`spikeformer db long-queries --older-than 5m`",
                        "SEV-3",
                        {"queries": slow},
                    )
                )
        return out
    finally:
        db.dispose()


def check_disk(repository: Path, min_free_gib: float = 1.0) -> list[Finding]:
    path = repository if repository.exists() else Path.cwd()
    usage = shutil.disk_usage(path)
    free_gib = usage.free / 2**30
    if free_gib < min_free_gib or usage.free / usage.total < 0.05:
        return [Finding("disk", f"only {free_gib:.1f} GiB free at {path}", "SEV-3")]
    return [Finding("disk", f"{free_gib:.1f} GiB free at {path}")]


CHECKS: dict[str, Callable[..., list[Finding]]] = {
    "health": check_health,
    "models": check_models,
    "backends": check_backends,
    "database": check_database,
    "disk": check_disk,
}


def run_doctor(url: str | None, repository: Path, database_url: str | None) -> DoctorReport:
    """Run every check; a check that itself fails becomes a finding, never a traceback."""
    findings: list[Finding] = []
    calls = {
        "health": (url,),
        "models": (repository,),
        "backends": (),
        "database": (database_url,),
        "disk": (repository,),
    }
    for name, fn in CHECKS.items():
        try:
            findings.extend(fn(*calls[name]))
        except Exception as e:  # noqa: BLE001 - the doctor reports, it does not crash
            findings.append(Finding(name, f"check failed: {type(e).__name__}: {e}", "SEV-3"))
    return DoctorReport(findings)


def hardware_report() -> dict[str, Any]:
    return hardware_status()

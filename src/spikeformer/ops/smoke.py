"""Smoke checks of a running deployment, end to end and over HTTP only: `spikeformer smoke --url URL`.

The checks use the service the way a client does, so the same run works against `make run` on a laptop and against
the `spikeformer-api` Service in Kubernetes (the Job `spikeformer-smoke`). Each check ends `pass`, `fail` or `skip`
with its duration and a one-line detail; the run passes when no check failed.

Checks, in order, and when each passes:

- `live`: `GET /v2/health/live` answers 200 `{"live": true}`.
- `ready`: `GET /v2/health/ready` answers 200 with `ready: true`.
- `model:<name>`: `GET /v2/models/{name}` answers 200, state `READY`, with inputs, outputs and class names.
- `infer:<name>`: `POST /v2/models/{name}/infer` on the checkpoint's reference images answers 200 with logits
  `[N, K]`, classes `[N]`, and in `parameters` the spike counts, the energy estimates and the `record_id`.
- `accuracy:<name>`: at least `min_matches(...)` reference images are classified as labelled (see below).
- `metrics`: `GET /metrics` declares the expected series and `spikeformer_model_ready` is 1 for every required model.
- `database`: readiness reports the database `ok`, and the inference's record reads back from `GET /v1/records/{id}`.

Models checked: the required models of readiness and every model with a `READY` version in the repository index.
Reference images come from `GET /v1/models/{name}/samples` (the manifest's `samples`, one test image per class
written by `spikeformer train`); a checkpoint without them is checked on 4 seeded random images and its
`accuracy` check is skipped. The database round trip needs a key with scope `alerts` (or `admin`); without one it
is skipped, which is enough for a quick check but not for closing an incident (`assess_result`).

Accuracy rule: image *i* of class *c* is classified correctly with probability *p_i*, the checkpoint's recorded
per-class accuracy of *c* (`metrics.per_class`), else its top-1 (`metrics.top1`), capped at 99 %
(`MAX_EXPECTED_ACCURACY`: a recorded 100 % does not make a miss impossible). The number of matches *X* of a
healthy model then follows the Poisson-binomial distribution of the *p_i*, and the check requires
`X >= k`, with *k* the largest integer such that `P(X < k) <= ALPHA` (0.1 %): a healthy model fails it at most once
in a thousand runs. For 10 images at 90 % accuracy that is 5 matches (a model at chance level, 10 %, reaches 5 with
probability 0.16 %); an untrained model that records 10 % needs 0, so only the answer's form is checked.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

__all__ = [
    "ALPHA",
    "EXPECTED_SERIES",
    "MAX_EXPECTED_ACCURACY",
    "MAX_RESULT_AGE",
    "REQUIRED_CHECKS",
    "Check",
    "SmokeResult",
    "SmokeResultError",
    "assess_result",
    "min_matches",
    "run_smoke",
]

ALPHA = 0.001  # the accepted probability that a healthy model fails the accuracy check
# A recorded accuracy is capped here: 100 % on a finite test set does not make a miss impossible, and the service
# may run at a lower precision (fp16, int8) than the evaluation did.
MAX_EXPECTED_ACCURACY = 0.99
# Series every replica declares in /metrics (counters with their `_total` name, histograms by their base name).
EXPECTED_SERIES = (
    "spikeformer_requests_total",
    "spikeformer_request_latency_seconds",
    "spikeformer_model_ready",
    "spikeformer_backend_up",
    "spikeformer_spikes_per_inference",
    "spikeformer_energy_per_inference_joules",
    "spikeformer_database_up",
    "spikeformer_records_buffered",
)
# A result that closes an incident: these passed (plus `infer:` and `model:` of at least one model), none failed.
REQUIRED_CHECKS = ("live", "ready", "metrics", "database")
MAX_RESULT_AGE = timedelta(hours=1)  # an older smoke run says nothing about the service now
_CLOCK_SKEW = timedelta(minutes=5)
_RANDOM_IMAGES = 4
_MAX_VALUES_PER_REQUEST = 1_000_000  # ~4 MB of JSON: under the service's default 8 MiB body limit
_MAX_IMAGES_PER_REQUEST = 64
_MAX_CHECKS = 500
_MAX_DETAIL = 1000


class SmokeResultError(ValueError):
    """A smoke result (JSON) that is not shaped like `SmokeResult.to_dict()`."""


class _Fail(Exception):
    """The check failed; the message says why."""


class _Skip(Exception):
    """The check does not apply; the message says why."""


@dataclass
class Check:
    """One check: `status` is `pass`, `fail` or `skip`; `seconds` its wall time; `detail` one line for people."""

    name: str
    status: str
    seconds: float
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "detail": self.detail,
            "data": self.data,
        }


@dataclass
class SmokeResult:
    """The checks of one run against `url`, with its start and end (UTC)."""

    url: str
    started_at: datetime
    finished_at: datetime
    checks: list[Check]

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        """No check failed and at least one passed."""
        return not self.failed and any(c.status == "pass" for c in self.checks)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def summary(self) -> str:
        """`"PASSED: 9 passed, 0 failed, 1 skipped in 1.23 s"` (failed names listed)."""
        counts = {s: sum(c.status == s for c in self.checks) for s in ("pass", "fail", "skip")}
        text = f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped in {self.duration_s:.2f} s"
        if self.ok:
            return f"PASSED: {text}"
        return f"FAILED ({', '.join(self.failed) or 'no check passed'}): {text}"

    def lines(self) -> list[str]:
        """One line per check (`PASS  live  3 ms  ...`) and the summary line."""
        width = max([len(c.name) for c in self.checks] + [8])
        out = [f"{c.status.upper():<4}  {c.name:<{width}}  {c.seconds * 1e3:8.0f} ms  {c.detail}" for c in self.checks]
        out.append(f"smoke {self.url}: {self.summary()}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`spikeformer smoke --json`), which `POST /v1/incidents/{id}/close` accepts as `smoke`."""
        return {
            "ok": self.ok,
            "url": self.url,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "failed": self.failed,
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
        }


# -- the accuracy rule ---------------------------------------------------------------------------------------------


def min_matches(accuracies: Sequence[float], alpha: float = ALPHA) -> int:
    """The fewest matches a healthy model may score on images it classifies right with probabilities `accuracies`.

    With X the number of matches (Poisson-binomial: the sum of independent Bernoulli(p_i)), returns the largest k
    with P(X < k) <= alpha; a healthy model scores fewer than k with probability at most alpha.

    Args:
        accuracies: p_i per image, each in [0, 1].
        alpha: accepted false-failure probability, in (0, 1).

    Raises:
        ValueError: a probability outside [0, 1], or alpha outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    pmf = [1.0]  # pmf[j] = P(X = j) over the images seen so far
    for p in accuracies:
        if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
            raise ValueError(f"accuracies must lie in [0, 1], got {p!r}")
        nxt = [0.0] * (len(pmf) + 1)
        for j, q in enumerate(pmf):
            nxt[j] += q * (1 - p)
            nxt[j + 1] += q * p
        pmf = nxt
    k, below = 0, 0.0  # below = P(X < k)
    while k < len(pmf) and below + pmf[k] <= alpha:
        below += pmf[k]
        k += 1
    return k


def _finite_fraction(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1:
        return float(value)
    return None


def _expected_accuracies(labels: Sequence[int], class_names: Sequence[str], metrics: Mapping[str, Any]) -> list[float]:
    """p_i per reference image: the recorded accuracy of its class, else top-1; [] when neither is recorded."""
    top1 = _finite_fraction(metrics.get("top1"))
    per_class = metrics.get("per_class") if isinstance(metrics.get("per_class"), Mapping) else {}
    out = []
    for label in labels:
        name = class_names[label] if 0 <= label < len(class_names) else None
        p = _finite_fraction(per_class.get(name)) if name is not None else None
        p = top1 if p is None else p
        if p is None:
            return []
        out.append(min(p, MAX_EXPECTED_ACCURACY))
    return out


# -- the run -------------------------------------------------------------------------------------------------------


class _Run:
    def __init__(self, client: httpx.Client, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.checks: list[Check] = []

    def check(self, name: str, fn: Callable[[], tuple[str, Any]]) -> Any:
        """Run `fn() -> (detail, value)` as check `name`; returns `value`, or None when it failed or was skipped."""
        start = time.perf_counter()
        value, data = None, {}
        try:
            detail, value = fn()
            status = "pass"
            if isinstance(value, dict) and isinstance(value.get("data"), dict):
                data = value["data"]
        except _Skip as e:
            status, detail = "skip", str(e)
        except _Fail as e:
            status, detail = "fail", str(e)
        except httpx.HTTPError as e:
            status, detail = "fail", f"request failed: {type(e).__name__}: {e}"
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
            status, detail = "fail", f"unexpected answer: {type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a smoke run reports every problem as a failed check
            status, detail = "fail", f"{type(e).__name__}: {e}"
        self.checks.append(Check(name, status, time.perf_counter() - start, detail[:_MAX_DETAIL], data))
        return value if status == "pass" else None

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "skip", 0.0, why))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, headers=self.headers, **kw)


def _error_of(r: httpx.Response) -> str:
    try:
        body = r.json()
        if isinstance(body, dict) and "error" in body:
            return f"{r.status_code}: {body['error']}"
    except ValueError:
        pass
    return f"{r.status_code}: {r.text[:200]}"


def _json_object(r: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        raise _Fail(f"{what} answered {r.status_code} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise _Fail(f"{what} answered {r.status_code} with JSON that is not an object")
    return body


def _check_live(run: _Run) -> tuple[str, Any]:
    r = run.get("/v2/health/live")
    if r.status_code != 200 or _json_object(r, "liveness").get("live") is not True:
        raise _Fail(f"GET /v2/health/live answered {_error_of(r)}")
    return "200 live", True


def _check_ready(run: _Run, seen: dict[str, Any]) -> tuple[str, Any]:
    r = run.get("/v2/health/ready")
    body = _json_object(r, "readiness")
    seen["ready"] = body
    models = body.get("models") if isinstance(body.get("models"), dict) else {}
    listing = ", ".join(
        f"{n} {'v' + str(m.get('version')) if isinstance(m, dict) and m.get('ready') else 'NOT ready'}"
        for n, m in models.items()
    )
    if r.status_code != 200 or body.get("ready") is not True:
        raise _Fail(f"not ready ({r.status_code}): {listing or 'no required model'}")
    extra = []
    if isinstance(body.get("maintenance"), dict) and body["maintenance"].get("enabled"):
        extra.append("maintenance mode ON")
    if body.get("thermal_protection"):
        extra.append("thermal protection active")
    return f"ready: {listing}" + (f" ({'; '.join(extra)})" if extra else ""), True


def _required(seen: dict[str, Any]) -> dict[str, Any]:
    """Readiness's `models` (`{name: {"ready", "version"}}`), or {} when readiness said nothing usable."""
    ready = seen.get("ready")
    models = ready.get("models") if isinstance(ready, dict) else None
    return models if isinstance(models, dict) else {}


def _model_names(run: _Run, seen: dict[str, Any]) -> list[str]:
    """Required models (readiness) and every model with a READY version (repository index), in order."""
    names: list[str] = [str(n) for n in _required(seen)]
    try:
        r = run.post("/v2/repository/index")
        if r.status_code == 200 and isinstance(r.json(), list):
            for entry in r.json():
                if isinstance(entry, dict) and entry.get("state") == "READY" and entry.get("name") not in names:
                    names.append(str(entry["name"]))
    except (httpx.HTTPError, ValueError):
        pass  # readiness named the required models; the index only adds optional ones
    return names


def _check_model(run: _Run, name: str) -> tuple[str, Any]:
    r = run.get(f"/v2/models/{quote(name, safe='')}")
    if r.status_code != 200:
        raise _Fail(f"GET /v2/models/{name} answered {_error_of(r)}")
    meta = _json_object(r, "model metadata")
    params = meta.get("parameters") or {}
    if params.get("state") != "READY":
        raise _Fail(f"state {params.get('state')}: {params.get('reason') or 'no reason given'}")
    inputs, outputs = meta.get("inputs") or [], meta.get("outputs") or []
    class_names = params.get("class_names")
    if not inputs or not outputs or not isinstance(class_names, list) or not class_names:
        raise _Fail("the metadata lacks inputs, outputs or class names")
    shape = inputs[0]["shape"]
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(s, int) and s > 0 for s in shape[1:])):
        raise _Fail(f"input shape {shape} is not [-1, C, H, W]")
    top1 = (params.get("metrics") or {}).get("top1")
    info = {
        "shape": shape[1:],
        "class_names": [str(c) for c in class_names],
        "versions": meta.get("versions"),
        "data": {"sha256": params.get("sha256"), "timesteps": params.get("timesteps")},
    }
    accuracy = f", recorded top-1 {100 * top1:.1f} %" if _finite_fraction(top1) is not None else ""
    return (
        f"READY, input {shape}, {len(class_names)} classes, sha256 {str(params.get('sha256'))[:12]}{accuracy}",
        info,
    )


def _samples(run: _Run, name: str, shape: list[int]) -> dict[str, Any]:
    """The model's reference images `{images [N, C, H, W] uint8, labels, metrics, source}`; random ones if none."""
    r = run.get(f"/v1/models/{quote(name, safe='')}/samples")
    if r.status_code == 200:
        body = _json_object(r, "samples")
        raw = base64.b64decode(body["data_b64"], validate=True)
        images = np.frombuffer(raw, dtype=np.uint8).reshape(body["shape"])
        labels = [int(v) for v in body["labels"]]
        if images.shape[1:] != tuple(shape) or len(labels) != len(images) or not len(images):
            raise _Fail(f"the reference images have shape {list(images.shape)}; the model takes [N, {shape}]")
        return {"images": images, "labels": labels, "metrics": body.get("metrics") or {}, "source": "reference"}
    if r.status_code != 404:
        raise _Fail(f"GET /v1/models/{name}/samples answered {_error_of(r)}")
    images = np.random.default_rng(0).integers(0, 256, size=(_RANDOM_IMAGES, *shape), dtype=np.uint8)
    why = _error_of(r)
    return {"images": images, "labels": None, "metrics": {}, "source": f"random ({why})"}


def _chunks(n: int, per_image: int) -> list[tuple[int, int]]:
    size = max(1, min(_MAX_IMAGES_PER_REQUEST, _MAX_VALUES_PER_REQUEST // max(per_image, 1)))
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _check_infer(run: _Run, name: str, model: dict[str, Any]) -> tuple[str, Any]:
    samples = _samples(run, name, model["shape"])
    images: np.ndarray = samples["images"]
    k = len(model["class_names"])
    predictions: list[int] = []
    spikes: list[int] = []
    energy: list[float] = []
    record_ids: list[str] = []
    latency = 0.0
    for lo, hi in _chunks(len(images), int(np.prod(images.shape[1:]))):
        batch = images[lo:hi]
        body = {
            "id": f"smoke-{uuid.uuid4().hex[:12]}",
            "inputs": [
                {"name": "images", "shape": list(batch.shape), "datatype": "UINT8", "data": batch.ravel().tolist()}
            ],
            "outputs": [{"name": "logits"}, {"name": "class"}],
        }
        start = time.perf_counter()
        r = run.post(f"/v2/models/{quote(name, safe='')}/infer", json=body)
        latency += time.perf_counter() - start
        if r.status_code != 200:
            raise _Fail(f"POST /v2/models/{name}/infer answered {_error_of(r)}")
        answer = _json_object(r, "inference")
        n = len(batch)
        outputs = {o["name"]: o for o in answer["outputs"]}
        logits, classes = outputs.get("logits"), outputs.get("class")
        if logits is None or classes is None:
            raise _Fail(f"the answer lacks the logits or class output (got {sorted(outputs)})")
        if logits["shape"] != [n, k] or len(logits["data"]) != n * k:
            raise _Fail(f"logits have shape {logits['shape']} with {len(logits['data'])} values; expected [{n}, {k}]")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in logits["data"]):
            raise _Fail("logits hold non-finite values")
        if classes["shape"] != [n] or not all(isinstance(c, int) and 0 <= c < k for c in classes["data"]):
            raise _Fail(f"classes {classes['data'][:8]} are not {n} class indices in [0, {k})")
        params = answer.get("parameters") or {}
        s, e, rid = params.get("spikes"), params.get("energy_j"), params.get("record_id")
        if not (isinstance(s, list) and len(s) == n and all(isinstance(v, int) and v >= 0 for v in s)):
            raise _Fail(f"parameters.spikes is {s!r}; expected {n} non-negative spike counts")
        if params.get("spikes_total") != sum(s):
            raise _Fail(f"parameters.spikes_total {params.get('spikes_total')!r} is not the sum of the spikes {sum(s)}")
        if not (
            isinstance(e, list)
            and len(e) == n
            and all(isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in e)
        ):
            raise _Fail(f"parameters.energy_j is {e!r}; expected {n} non-negative energies in joules")
        if not isinstance(rid, str) or not rid:
            raise _Fail("parameters.record_id is missing: the answer cannot be traced to its inference record")
        predictions += classes["data"]
        spikes += s
        energy += [float(v) for v in e]
        record_ids.append(rid)
    n = len(images)
    detail = (
        f"{n} {samples['source']} image(s) in {latency * 1e3:.0f} ms: {sum(spikes) / n:.0f} spikes/image, "
        f"{sum(energy) / n:.3g} J/image, record {record_ids[0]}"
    )
    return detail, {
        "predictions": predictions,
        "labels": samples["labels"],
        "metrics": samples["metrics"],
        "record_ids": record_ids,
        "data": {"images": n, "source": samples["source"].split(" ")[0], "spikes_per_image": sum(spikes) / n},
    }


def _check_accuracy(name: str, model: dict[str, Any], inferred: dict[str, Any]) -> tuple[str, Any]:
    labels = inferred["labels"]
    if labels is None:
        raise _Skip("the checkpoint carries no reference images: only the answer's form was checked")
    p = _expected_accuracies(labels, model["class_names"], inferred["metrics"])
    if not p:
        raise _Skip("the checkpoint records no accuracy (metrics.top1): the match rate cannot be judged")
    matches = sum(int(a == b) for a, b in zip(inferred["predictions"], labels, strict=True))
    need = min_matches(p)
    n = len(labels)
    expected = sum(p) / n
    detail = (
        f"{matches}/{n} reference images classified as labelled ({100 * matches / n:.0f} %); recorded accuracy "
        f"{100 * expected:.1f} % needs at least {need} (P(fewer | healthy) <= {100 * ALPHA:g} %)"
    )
    data = {"matches": matches, "images": n, "min_matches": need, "expected_accuracy": round(expected, 4)}
    if matches < need:
        raise _Fail(detail)
    return detail, {"data": data}


def _declared_series(text: str) -> tuple[set[str], list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(text))
    declared = set()
    for f in families:
        declared.add(f.name)
        if f.type == "counter":
            declared.add(f"{f.name}_total")
    return declared, families


def _check_metrics(run: _Run, ready_models: dict[str, str]) -> tuple[str, Any]:
    r = run.get("/metrics")
    if r.status_code != 200:
        raise _Fail(f"GET /metrics answered {_error_of(r)}")
    declared, families = _declared_series(r.text)
    missing = [s for s in EXPECTED_SERIES if s not in declared]
    if missing:
        raise _Fail(f"/metrics lacks {', '.join(missing)}")
    ready = {
        (s.labels.get("model"), s.labels.get("version")): s.value
        for f in families
        if f.name == "spikeformer_model_ready"
        for s in f.samples
    }
    not_ready = [f"{m} v{v}" for m, v in ready_models.items() if ready.get((m, v)) != 1.0]
    if not_ready:
        raise _Fail(f"spikeformer_model_ready is not 1 for {', '.join(not_ready)}")
    served = sum(
        s.value
        for f in families
        if f.name == "spikeformer_requests"
        for s in f.samples
        if s.name == "spikeformer_requests_total" and s.labels.get("status") == "ok"
    )
    return (
        f"{len(EXPECTED_SERIES)} expected series declared; model_ready 1 for {len(ready_models)} model(s); "
        f"{served:.0f} ok requests on the replica that answered",
        True,
    )


def _check_database(run: _Run, seen: dict[str, Any], record_ids: list[str], wait_s: float) -> tuple[str, Any]:
    ready = seen.get("ready") if isinstance(seen.get("ready"), dict) else {}
    if ready.get("database") not in (None, "ok"):
        why = ready.get("database_error") or "no error given"
        raise _Fail(
            f"the service reports the database {ready.get('database')} "
            f"({ready.get('records_buffered')} records buffered): {why}"
        )
    if not record_ids:
        raise _Skip("no inference answered, so there is no record to read back")
    if "Authorization" not in run.headers:
        raise _Skip("round trip not verified: give --api-key with scope alerts or admin to read records back")
    record_id = record_ids[0]
    deadline = time.monotonic() + wait_s
    attempts = 0
    while True:
        attempts += 1
        r = run.get(f"/v1/records/{quote(record_id, safe='')}")
        if r.status_code == 200:
            record = _json_object(r, "record")
            if record.get("id") != record_id or record.get("status") != "ok":
                raise _Fail(f"record {record_id} reads back as {record.get('id')} with status {record.get('status')}")
            return (
                f"record {record_id} written and read back (model {record.get('model')} v{record.get('version')}, "
                f"{record.get('latency_ms', 0):.1f} ms; {attempts} read(s))",
                True,
            )
        if r.status_code in (401, 403):
            raise _Fail(f"the API key cannot read records: {_error_of(r)}")
        if r.status_code not in (404, 503) or time.monotonic() >= deadline:
            raise _Fail(f"record {record_id} not readable after {wait_s:g} s: GET /v1/records answered {_error_of(r)}")
        time.sleep(min(0.25, max(deadline - time.monotonic(), 0)))


def run_smoke(
    url: str,
    api_key: str | None = None,
    *,
    timeout_s: float = 10.0,
    record_wait_s: float = 10.0,
    wait_ready_s: float = 0.0,
    client: httpx.Client | None = None,
) -> SmokeResult:
    """Check the deployment at `url` end to end (see the module docstring); never raises for a broken service.

    Args:
        url: base URL of the service, e.g. `http://127.0.0.1:8000`.
        api_key: sent as `Authorization: Bearer`; scope `alerts` or `admin` to verify the database round trip
            (and `infer` is enough where inference needs a key).
        timeout_s: per HTTP request.
        record_wait_s: how long to wait for the inference record to be written (records are flushed in the
            background, every `SPIKEFORMER_RECORD_FLUSH_INTERVAL_S`, 0.5 s by default).
        wait_ready_s: first wait up to this long for readiness to answer 200 (a Job started with a rollout);
            the checks run when it does or when the time is up.
        client: an `httpx.Client` to send the requests with (tests pass a `TestClient`); its base URL is used.

    Raises:
        ValueError: `url` is not an http(s) URL.
    """
    if client is None and not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must be an http:// or https:// URL, got {url!r}")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    own = client is None
    http = client or httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, follow_redirects=False)
    started = datetime.now(UTC)
    run = _Run(http, headers)
    try:
        _wait_ready(run, wait_ready_s)
        _run_checks(run, record_wait_s)
    finally:
        if own:
            http.close()
    return SmokeResult(url, started, datetime.now(UTC), run.checks)


def _wait_ready(run: _Run, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if run.get("/v2/health/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))


def _no_models() -> tuple[str, Any]:
    raise _Fail("the service lists no model (neither readiness nor the repository index names one)")


def _run_checks(run: _Run, record_wait_s: float) -> None:
    seen: dict[str, Any] = {}
    if run.check("live", lambda: _check_live(run)) is None:
        for name in ("ready", "models", "metrics", "database"):
            run.skip(name, "not run: the service is not live")
        return
    run.check("ready", lambda: _check_ready(run, seen))
    names = _model_names(run, seen)
    if not names:
        run.check("models", _no_models)
    ready_models: dict[str, str] = {}
    record_ids: list[str] = []
    for name in names:
        model = run.check(f"model:{name}", lambda name=name: _check_model(run, name))
        if model is None:
            run.skip(f"infer:{name}", "not run: the model is not ready")
            continue
        inferred = run.check(f"infer:{name}", lambda name=name, model=model: _check_infer(run, name, model))
        if inferred is None:
            run.skip(f"accuracy:{name}", "not run: the inference failed")
            continue
        record_ids += inferred["record_ids"]
        run.check(f"accuracy:{name}", lambda n=name, m=model, i=inferred: _check_accuracy(n, m, i))
        required = _required(seen).get(name)
        if isinstance(required, dict) and required.get("version") is not None:
            ready_models[name] = str(required["version"])
    run.check("metrics", lambda: _check_metrics(run, ready_models))
    run.check("database", lambda: _check_database(run, seen, record_ids, record_wait_s))


# -- judging a result (closing an incident) ------------------------------------------------------------------------


def _parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SmokeResultError(f"smoke.{what} {value!r} is not an ISO 8601 time") from None
    else:
        raise SmokeResultError(f"smoke.{what} must be an ISO 8601 time with a zone")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise SmokeResultError(f"smoke.{what} {value!r} has no time zone")
    return parsed


def assess_result(result: Any, now: datetime) -> tuple[bool, str, dict[str, Any]]:
    """Judge a smoke result (the JSON of `SmokeResult.to_dict()`) as proof that the service has recovered.

    It proves recovery when it finished within `MAX_RESULT_AGE` before `now`, no check failed, and `live`,
    `ready`, `metrics`, `database` and the `model:` and `infer:` checks of at least one model passed. The `ok`
    field is recomputed from the checks, never trusted.

    Returns:
        `(passed, reason, summary)`: `reason` says what is missing when it did not pass; `summary` is the compact
        record kept on the incident's timeline (URL, times, each check's name, status, seconds and detail).

    Raises:
        SmokeResultError: the result is not shaped like a smoke result.
    """
    if not isinstance(result, Mapping):
        raise SmokeResultError("smoke must be the JSON object printed by `spikeformer smoke --json`")
    checks = result.get("checks")
    if not isinstance(checks, list) or not checks or len(checks) > _MAX_CHECKS:
        raise SmokeResultError(f"smoke.checks must be a list of 1 to {_MAX_CHECKS} checks")
    rows = []
    for i, c in enumerate(checks):
        if not (
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and c.get("status") in ("pass", "fail", "skip")
        ):
            raise SmokeResultError(f"smoke.checks[{i}] needs a name and a status of pass, fail or skip")
        seconds = c.get("seconds", 0)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
            raise SmokeResultError(f"smoke.checks[{i}].seconds must be a number")
        rows.append(
            {
                "name": c["name"][:200],
                "status": c["status"],
                "seconds": round(float(seconds), 4),
                "detail": str(c.get("detail", ""))[:1000],
            }
        )
    started = _parse_time(result.get("started_at"), "started_at")
    finished = _parse_time(result.get("finished_at"), "finished_at")
    url = str(result.get("url", ""))[:2000]
    try:
        age = now - finished
        took = (finished - started).total_seconds()
    except OverflowError:
        raise SmokeResultError("smoke.started_at / finished_at are out of range") from None
    if age < -_CLOCK_SKEW or took < 0:
        raise SmokeResultError(f"smoke.finished_at {finished.isoformat()} lies in the future or before started_at")
    summary = {
        "url": url,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round(took, 3),
        "checks": rows,
    }
    status = {r["name"]: r["status"] for r in rows}
    failed = [r["name"] for r in rows if r["status"] == "fail"]
    if failed:
        return False, f"the smoke run failed: {', '.join(failed)}", summary
    missing = [name for name in REQUIRED_CHECKS if status.get(name) != "pass"]
    models = {n.split(":", 1)[1] for n, s in status.items() if n.startswith("infer:") and s == "pass"}
    if not any(status.get(f"model:{m}") == "pass" for m in models):
        missing.append("model:<name> and infer:<name> of a model")
    if missing:
        hint = " (the database round trip needs --api-key)" if "database" in missing else ""
        return False, f"the smoke run did not pass {', '.join(missing)}{hint}", summary
    if age > MAX_RESULT_AGE:
        minutes = int(MAX_RESULT_AGE.total_seconds() // 60)
        return (
            False,
            f"the smoke run finished {int(age.total_seconds() // 60)} min ago (over {minutes}): run it again",
            summary,
        )
    return True, f"smoke run passed: {len(rows)} checks against {url or 'the service'}", summary

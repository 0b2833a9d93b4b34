"""MLflow: create the run up front, poll only it, find the baseline.

`import mlflow` costs about two seconds, so nothing here imports it at module
level: :func:`prefetch` starts the import in a thread early in the run, and
every call that touches MLflow is made through :func:`in_thread` by the
session, off the event loop.

Every call is bounded: ``tracking_calls`` holds the HTTP client's limits, the
daemon-thread calls and the server probe (every public name of it is importable
from here). What this module needs of MLflow's private parts goes through
``compat_mlflow``.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainboard.backend.compat_mlflow import metric_objects
from trainboard.backend.events import MetricPoint
from trainboard.backend.store_template import seed_store
from trainboard.backend.tracking_calls import (
    JOB_HTTP_DEFAULTS,
    POLL_TIMEOUT,
    REQUEST_TIMEOUT,
    display_uri,
    in_thread,
    is_http,
    job_http_env,
    lane_for,
    limit_http_client,
    probe,
    why_unreachable,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "BRANCH_TAG",
    "COMMIT_TAG",
    "JOB_HTTP_DEFAULTS",
    "PARAMS_HASH_TAG",
    "POLL_TIMEOUT",
    "REQUEST_TIMEOUT",
    "RUN_TAG",
    "Baseline",
    "MetricCursor",
    "Tracking",
    "TrackingError",
    "display_uri",
    "flatten",
    "in_thread",
    "is_http",
    "job_http_env",
    "limit_http_client",
    "prefetch",
    "probe",
    "resolve_uri",
    "why_unreachable",
]

BRANCH_TAG = "mlflow.source.git.branch"
COMMIT_TAG = "mlflow.source.git.commit"
RUN_TAG = "trainboard.run_id"
PARAMS_HASH_TAG = "trainboard.params_hash"
SWEEP_TAG = "trainboard.sweep_id"  # a sweep's members (and its parent run)
SWEEP_BEST_TAG = "trainboard.sweep.best"  # "true" on the member the sweep picked


T = TypeVar("T")


class TrackingError(Exception):
    """MLflow could not be reached or refused a call."""


_import_lock = threading.Lock()
_prefetched: threading.Thread | None = None
_sql_store_prefetched: list[threading.Thread] = []
_frozen: set[str] = set()


def freeze_imported(what: str) -> None:
    """After a big import (MLflow leaves some 230,000 objects that live as long as the process):
    out of the garbage collector's sight (``gc.freeze``), once. Every full collection scanned
    them all, 150-300 ms a pass while a sweep's members waited behind it. No collection first:
    freezing costs nothing (what little garbage the import left stays)."""
    if what not in _frozen:
        _frozen.add(what)
        gc.freeze()


def _import_mlflow() -> None:
    with _import_lock:
        import mlflow.tracking  # noqa: F401

        # MLflow and alembic log at INFO to stderr (e.g. on creating the SQLite
        # tables): keep the run's output to what the user asked for.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        freeze_imported("mlflow")


def _import_sql_store() -> None:
    _import_mlflow()
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    freeze_imported("mlflow's SQL store")


def prefetch(tracking_uri: str = "") -> threading.Thread:
    """Import mlflow in a background thread, once, so the first real call does not wait (the
    thread returned). Given a SQLite ``tracking_uri``, its SQL store's modules (SQLAlchemy,
    alembic: 0.7 s more, imported by the first call otherwise) follow in another thread."""
    global _prefetched
    if _prefetched is None:
        _prefetched = threading.Thread(target=_import_mlflow, name="mlflow-import", daemon=True)
        _prefetched.start()
    if tracking_uri.startswith("sqlite:") and not _sql_store_prefetched:
        _sql_store_prefetched.append(threading.Thread(target=_import_sql_store, name="mlflow-sql-import", daemon=True))
        _sql_store_prefetched[0].start()
    return _prefetched


def resolve_uri(uri: str, root: Path) -> str:
    """Make a relative SQLite or file URI absolute against the repository root.

    The job runs in another folder, so it must get an absolute URI.
    """
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = (root / uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return (root / uri.removeprefix("file:")).resolve().as_uri()
    return uri


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow param strings: {"opt": {"lr": 1}} -> {"opt.lr": "1"}."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


@dataclass(frozen=True)
class Baseline:
    mlflow_run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    commit: str
    trainboard_run_id: str
    end_time: int | None = None
    source: str = ""  # where it came from when not this MLflow store: "merge base, from git notes", ...

    def label(self, branch: str) -> str:
        """How reports name it: "main @ 1a2b3c4 (run 20261122-...)", or with its source
        "main @ 1a2b3c4 (merge base, from git notes; run 20261122-...)"."""
        text = f"{branch} @ {self.commit[:7] or '?'}"
        said = [self.source] if self.source else []
        said += [f"run {self.trainboard_run_id}"] if self.trainboard_run_id else []
        return f"{text} ({'; '.join(said)})" if said else text


@dataclass
class MetricCursor:
    """The newest (step, timestamp) seen per key: a poll yields only newer points."""

    seen: dict[str, tuple[int, int]] = field(default_factory=dict)

    def newer(self, points: list[MetricPoint]) -> list[MetricPoint]:
        fresh = []
        for point in sorted(points, key=lambda p: (p.key, p.step, p.timestamp)):
            mark = (point.step, point.timestamp)
            last = self.seen.get(point.key)
            if last is None or mark > last:
                self.seen[point.key] = mark
                fresh.append(point)
        return fresh


class Tracking:
    """The MLflow calls trainboard makes. Every method blocks: call it in a thread."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._lane = lane_for(tracking_uri)  # a SQLite store's calls, one after another

    async def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, urgent: bool = False) -> T:
        """``fn(*args)`` (one of the methods below) in a daemon thread; past ``timeout``
        seconds, a TrackingError (the thread ends by itself: its requests are bounded)."""
        try:
            return await in_thread(fn, *args, timeout=timeout, lane=self._lane, urgent=urgent)
        except TimeoutError:
            raise TrackingError(f"MLflow at {display_uri(self.tracking_uri)}: no answer within {timeout:g} s") from None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            _import_mlflow()
            from mlflow.tracking import MlflowClient

            seed_store(self.tracking_uri)  # a new store: a copy of an empty one, not seconds of migrations
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_id(self, create: bool = True) -> str | None:
        if self._experiment_id is None:
            try:
                found = self.client.get_experiment_by_name(self.experiment)
                if found is not None:
                    self._experiment_id = found.experiment_id
                elif create:
                    location = self.artifact_root.resolve().as_uri() if self.artifact_root else None
                    self._experiment_id = self.client.create_experiment(
                        self.experiment, artifact_location=location
                    )
            except Exception as exc:  # MLflow raises many kinds; all mean "unreachable"
                raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        return self._experiment_id

    def create_run(self, run_name: str, tags: dict[str, str], params: dict[str, Any] | None = None) -> str:
        """A new run of the experiment; with ``params``, logged too (see :meth:`log_params`)."""
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        try:
            run = self.client.create_run(experiment_id, tags=tags, run_name=run_name)
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        if params:
            self.log_params(run.info.run_id, params)
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Nested params, flattened (see :func:`flatten`), in one batch."""
        flat = flatten(params)
        if not flat:
            return
        try:
            from mlflow.entities import Param

            self.client.log_batch(run_id, params=[Param(k, v) for k, v in flat.items()])
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc

    def latest(self, run_id: str) -> list[MetricPoint]:
        """The newest point of every metric of the run.

        One read of the run's latest-metrics row per key: its cost does not
        grow with the length of the history.
        """
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        objs = metric_objects(run.data)  # MLflow's private RunData._metric_objs: see compat_mlflow
        if objs is None:  # pragma: no cover - an MLflow without metric objects
            return [MetricPoint(k, float(v), 0, 0) for k, v in run.data.metrics.items()]
        return [MetricPoint(m.key, float(m.value), int(m.step), int(m.timestamp)) for m in objs]

    def history(self, run_id: str, keys: list[str]) -> list[MetricPoint]:
        """Every point of ``keys``: read once at the end, for the report's plot."""
        points: list[MetricPoint] = []
        try:
            for key in keys:
                for m in self.client.get_metric_history(run_id, key):
                    points.append(MetricPoint(m.key, float(m.value), int(m.step), int(m.timestamp)))
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        return points

    def finish(self, run_id: str, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        try:
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc

    def baseline(self, branch: str, exclude_run_id: str | None = None, keys: Iterable[str] = ()) -> Baseline | None:
        """The latest finished run of ``branch`` in the experiment that logged any of ``keys``
        (a finished run with none of the followed metrics compares with nothing), or None."""
        wanted = set(keys)
        experiment_id = self.experiment_id(create=False)
        if experiment_id is None:
            return None
        quoted = branch.replace("'", "\\'")
        try:
            runs = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{BRANCH_TAG}` = '{quoted}' and attributes.status = 'FINISHED'",
                order_by=["attributes.end_time DESC"],
                max_results=200,
            )
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        for run in runs:
            if run.info.run_id == exclude_run_id or (wanted and not wanted & set(run.data.metrics)):
                continue
            tags = run.data.tags
            if tags.get(SWEEP_TAG) and tags.get(SWEEP_BEST_TAG) != "true":
                continue  # a sweep's member is the baseline only when it was the sweep's best
            return Baseline(
                mlflow_run_id=run.info.run_id,
                metrics=dict(run.data.metrics),
                params=dict(run.data.params),
                commit=run.data.tags.get(COMMIT_TAG, ""),
                trainboard_run_id=run.data.tags.get(RUN_TAG, ""),
                end_time=run.info.end_time,
            )
        return None

    def run_metrics(self, run_id: str) -> tuple[dict[str, float], dict[str, str]]:
        """A run's latest metric values and its params."""
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        return dict(run.data.metrics), dict(run.data.params)

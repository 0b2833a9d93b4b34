"""MLflow: create the run up front, poll only it, find the baseline.

`import mlflow` costs about two seconds, so nothing here imports it at module
level: :func:`prefetch` starts the import in a thread early in the run, and
every call that touches MLflow is made through :func:`in_thread` by the
session, off the event loop.

Every call is bounded. MLflow's HTTP client retries a dead server for about
four minutes by default (7 retries, backoff factor 2, 120 s per request):
while a session runs, trainboard's own requests get one try of
:data:`REQUEST_TIMEOUT` seconds (:func:`limit_http_client`), and the jobs it
starts keep the generous defaults (:func:`job_http_env`). The calls run in
daemon threads of their own, never in asyncio's default executor, which
``asyncio.run`` joins at exit: a call stuck on a hung server cannot keep the
process alive after the run has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from trainboard.backend.events import MetricPoint

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

BRANCH_TAG = "mlflow.source.git.branch"
COMMIT_TAG = "mlflow.source.git.commit"
RUN_TAG = "trainboard.run_id"
PARAMS_HASH_TAG = "trainboard.params_hash"


T = TypeVar("T")

REQUEST_TIMEOUT = 5  # seconds for one HTTP request of trainboard's own (MLflow takes whole seconds)
POLL_TIMEOUT = REQUEST_TIMEOUT + 3.0  # a poll's hard bound, whatever the store (a locked SQLite file too)

# trainboard's own requests while a session runs: one try, REQUEST_TIMEOUT seconds.
_CLIENT_LIMITS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
}
# What a job gets when its environment did not set them: MLflow's own defaults, so that
# a job rides out a store's outage of a few minutes (a test checks they are MLflow's).
JOB_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
}
_limits_lock = threading.Lock()
_limit_holders = 0
_saved_env: dict[str, str | None] = {}


class TrackingError(Exception):
    """MLflow could not be reached or refused a call."""


def limit_http_client() -> Callable[[], None]:
    """Bound MLflow's HTTP client in this process (it reads these variables on every
    request); the callable returned puts the user's values back once the last holder
    has released it. Jobs started meanwhile get the user's values: see :func:`job_http_env`."""
    global _limit_holders
    with _limits_lock:
        if _limit_holders == 0:
            _saved_env.clear()
            _saved_env.update({name: os.environ.get(name) for name in _CLIENT_LIMITS})
            os.environ.update(_CLIENT_LIMITS)
        _limit_holders += 1
    released = False

    def release() -> None:
        global _limit_holders
        nonlocal released
        with _limits_lock:
            if released:
                return
            released = True
            _limit_holders -= 1
            if _limit_holders == 0:
                for name, value in _saved_env.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

    return release


def job_http_env() -> dict[str, str]:
    """MLflow's HTTP settings for a job this process starts: the user's own, else MLflow's
    defaults, never the short limits of trainboard's own calls (a local job inherits this
    process's environment)."""
    with _limits_lock:
        values = dict(_saved_env) if _limit_holders else {name: os.environ.get(name) for name in _CLIENT_LIMITS}
    return {name: value if value is not None else JOB_HTTP_DEFAULTS[name] for name, value in values.items()}


async def in_thread(fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
    """``fn(*args)`` in a daemon thread of its own; its result, or its exception.

    After ``timeout`` seconds raise :class:`TimeoutError` and leave the thread to end by
    itself (its HTTP request is bounded too). Being a daemon, it never holds the
    process's exit, and a cancelled caller does not wait for it either.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():  # the caller gave up (timeout, cancel)
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(cast(T, result))

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the caller, whatever it is
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    name = f"trainboard-{getattr(fn, '__name__', 'call')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return await asyncio.wait_for(done, timeout)


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def display_uri(uri: str) -> str:
    """``uri`` without a user or password in it, for messages."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.hostname or "@" not in parts.netloc:
        return uri
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def why_unreachable(exc: BaseException) -> str:
    """A short reason for a failed MLflow call ("connection refused", "no answer within 5 s")."""
    text = " ".join(str(e) for e in _chain(exc))
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("timed out", f"no answer within {REQUEST_TIMEOUT} s"),
        ("Read timeout", f"no answer within {REQUEST_TIMEOUT} s"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without an answer"),
        ("Connection aborted", "connection closed without an answer"),
    ):
        if needle in text:
            return reason
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first[:200]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _probe(uri: str, timeout: float) -> str:
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http(s) only)
            response.read(64)
    except urllib.error.HTTPError:
        return ""  # an HTTP answer, even 401 or 404: something serves there
    except OSError as exc:  # URLError, timeouts, refused connections
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no answer within {timeout:g} s"
        if "CERTIFICATE" in str(reason).upper() or "SSL" in type(reason).__name__.upper():
            return ""  # TLS answered: MLflow's own client says what it thinks of the certificate
        return why_unreachable(reason if isinstance(reason, BaseException) else exc)
    return ""


async def probe(uri: str, timeout: float = REQUEST_TIMEOUT) -> str:
    """Whether an HTTP(S) tracking server answers at ``uri``: "" when it does (any HTTP
    answer counts), else why not. Other stores (SQLite) are not probed: ""."""
    if not is_http(uri):
        return ""
    try:
        return await in_thread(_probe, uri, timeout, timeout=timeout + 2)
    except TimeoutError:
        return f"no answer within {timeout:g} s"


_import_lock = threading.Lock()
_prefetched: threading.Thread | None = None


def _import_mlflow() -> None:
    with _import_lock:
        import mlflow.tracking  # noqa: F401

        # MLflow and alembic log at INFO to stderr (e.g. on creating the SQLite
        # tables): keep the run's output to what the user asked for.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


def prefetch() -> threading.Thread:
    """Import mlflow in a background thread, once, so the first real call does not wait."""
    global _prefetched
    if _prefetched is None:
        _prefetched = threading.Thread(target=_import_mlflow, name="mlflow-import", daemon=True)
        _prefetched.start()
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

    async def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``fn(*args)`` (one of the methods below) in a daemon thread; past ``timeout``
        seconds, a TrackingError (the thread ends by itself: its requests are bounded)."""
        try:
            return await in_thread(fn, *args, timeout=timeout)
        except TimeoutError:
            raise TrackingError(f"MLflow at {display_uri(self.tracking_uri)}: no answer within {timeout:g} s") from None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            _import_mlflow()
            from mlflow.tracking import MlflowClient
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

    def create_run(self, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        experiment_id = self.experiment_id()
        assert experiment_id is not None
        try:
            run = self.client.create_run(experiment_id, tags=tags, run_name=run_name)
            flat = flatten(params)
            if flat:
                from mlflow.entities import Param

                self.client.log_batch(
                    run.info.run_id, params=[Param(k, v) for k, v in flat.items()]
                )
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        return str(run.info.run_id)

    def latest(self, run_id: str) -> list[MetricPoint]:
        """The newest point of every metric of the run.

        One read of the run's latest-metrics row per key: its cost does not
        grow with the length of the history.
        """
        try:
            run = self.client.get_run(run_id)
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        objs = getattr(run.data, "_metric_objs", None)
        if objs is None:  # pragma: no cover - older MLflow without metric objects
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
                max_results=20,
            )
        except Exception as exc:
            raise TrackingError(f"MLflow at {self.tracking_uri}: {exc}") from exc
        for run in runs:
            if run.info.run_id == exclude_run_id or (wanted and not wanted & set(run.data.metrics)):
                continue
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

"""Bounded calls to MLflow: its HTTP client's limits, calls in daemon threads, probing a server.

MLflow's HTTP client retries a dead server for about four minutes by default (7 retries,
backoff factor 2, 120 s per request): while a session runs, trainboard's own requests get
one try of :data:`REQUEST_TIMEOUT` seconds (:func:`limit_http_client`), and the jobs it
starts keep the generous defaults (:func:`job_http_env`). The calls run in daemon threads
of their own (:func:`in_thread`), never in asyncio's default executor, which
``asyncio.run`` joins at exit: a call stuck on a hung server cannot keep the process alive
after the run has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar, cast

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


class _Workers:
    """Daemon threads that take calls from one queue; a call finds an idle one, else a new one
    starts (a call stuck on a hung server holds its own thread, never the others'). An idle
    thread ends after :data:`IDLE_SECONDS`. Starting a thread waits for it to run, which on a
    busy machine costs the event loop milliseconds: a sweep makes thousands of calls."""

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # this call is that thread's
        self._calls.put(call)
        if start:
            threading.Thread(target=self._serve, name="trainboard-call", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no call counts on this thread (else: one is on its way)
                        self._idle -= 1
                        return
                continue
            call()
            with self._lock:
                self._idle += 1


class _Lane:
    """One daemon thread taking calls in their order (started on demand, ended when idle for
    :data:`_Workers.IDLE_SECONDS`): a SQLite store's. SQLite takes one writer at a time, and
    calls in threads of their own only wait for its lock, in sleeps of up to 100 ms each: a
    sweep's members creating their runs at once took 0.7 s where one after another takes 0.2 s.
    An urgent call (a run's creation: a job waits for it) goes before the others waiting."""

    def __init__(self) -> None:
        self._calls: queue.PriorityQueue[tuple[int, int, Callable[[], None]]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, call: Callable[[], None], urgent: bool = False) -> None:
        self._calls.put((0 if urgent else 1, next(self._order), call))
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._serve, name="trainboard-lane", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                _, _, call = self._calls.get(timeout=_Workers.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._calls.empty():  # else a call came meanwhile: serve it
                        self._running = False
                        return
                continue
            call()


_workers = _Workers()
_lanes: dict[str, _Lane] = {}
_lanes_lock = threading.Lock()


def lane_for(tracking_uri: str) -> _Lane | None:
    """The one lane of a SQLite store's calls (by its URI); None for a server (calls in parallel)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    with _lanes_lock:
        return _lanes.setdefault(tracking_uri, _Lane())


async def in_thread(fn: Callable[..., T], *args: Any, timeout: float | None = None, lane: _Lane | None = None,
                    urgent: bool = False) -> T:
    """``fn(*args)`` in a daemon thread (see :class:`_Workers`), or after the calls before it
    in ``lane`` (see :func:`lane_for`; an ``urgent`` one before those not); its result, or its exception.

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

    if lane is not None:
        lane.submit(work, urgent)
    else:
        _workers.submit(work)
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

"""The one vocabulary the session speaks to its views.

Every event is an immutable dataclass. The Textual dashboard and the headless
renderer subscribe to the same stream and hold no run logic of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.compare import Comparison


class Stage(StrEnum):
    CHECK = "check"
    PROVISION = "provision"
    SYNC = "sync"
    TRAIN = "train"
    COLLECT = "collect"
    COMPARE = "compare"
    REPORT = "report"
    TEARDOWN = "teardown"


STAGES: tuple[Stage, ...] = tuple(Stage)


class StageState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


def _now() -> float:
    return time.time()


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: every event carries the wall-clock time it was made."""


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    run_id: str
    branch: str
    commit: str
    dirty: bool
    runner_kind: str
    config_path: str
    run_dir: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class StageChanged(Event):
    stage: Stage
    state: StageState
    detail: str = ""
    elapsed: float = 0.0  # seconds spent in the stage so far (final when DONE/FAILED)
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class RunnerChanged(Event):
    state: str  # e.g. "provisioning", "ready", "busy", "stopped"
    kind: str
    address: str = ""
    details: tuple[tuple[str, str], ...] = ()
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class LogLines(Event):
    """A batch of complete lines from one of the runner's log files.

    ``offset`` is the byte offset in that file just after the last line.
    """

    source: str  # "setup" or "job"
    lines: tuple[str, ...]
    offset: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: int  # milliseconds, as MLflow stores it


@dataclass(frozen=True, slots=True)
class MetricPoints(Event):
    points: tuple[MetricPoint, ...]
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MetricsStale(Event):
    """MLflow stopped answering the metric polls: the metrics shown are as of ``since``
    (the last poll that answered). Published once per outage; polls go on."""

    since: float  # wall-clock time of the last answered poll
    reason: str  # e.g. "MLflow unreachable: connection refused"
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MetricsFresh(Event):
    """MLflow answers again after a :class:`MetricsStale`: the metrics are current."""

    stale_since: float  # the ``since`` of the outage that ended
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class TrackingReady(Event):
    """The MLflow run exists; the job will log into it."""

    tracking_uri: str
    experiment: str
    mlflow_run_id: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class BaselineFound(Event):
    """The base branch's latest finished run, or none (``mlflow_run_id`` empty)."""

    branch: str
    mlflow_run_id: str
    metrics: tuple[tuple[str, float], ...] = ()
    at: float = field(default_factory=_now)
    label: str = ""  # how reports name it, with its source: "main @ 1a2b3c4 (merge base, from git notes)"


@dataclass(frozen=True, slots=True)
class JobProgress(Event):
    """The training job's progress, from its latest ``trainboard:progress`` log line
    (see ``trainboard.backend.progress``): published when a batch of log lines has one."""

    step: int  # training steps done (global, across epochs)
    total: int | None = None  # steps expected in all, when the job says
    epoch: int | None = None
    epochs: int | None = None
    rate: float | None = None  # steps/s over the recent progress lines; None until two arrived
    eta: float | None = None  # seconds left at that rate (0 once step >= total); None when unknown
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class JobFinished(Event):
    exit_code: int
    duration: float
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ComparisonReady(Event):
    comparison: Comparison
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ReportWritten(Event):
    path: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Notice(Event):
    message: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class ErrorRaised(Event):
    stage: Stage | None
    message: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class PullRequestOpened(Event):
    """The run's pull request, opened or updated, with its one report comment."""

    number: int
    url: str
    comment_url: str
    created: bool  # False: an open pull request was updated (or, in a PR's CI, commented on)
    branch: str  # the outputs branch pushed; "" in a pull request's CI
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class CostUpdated(Event):
    """What a paid runner has cost so far: its hourly price times its uptime."""

    hourly_price: float  # USD an hour
    uptime: float  # seconds since the runner was ready
    cost: float  # USD
    final: bool = False  # the runner is gone: this is what the run cost
    at: float = field(default_factory=_now)
    cap: float | None = None  # budget.max_cost_usd, when the run has one


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    outcome: int  # an ExitCode value
    status: str  # "succeeded", "gate-failed", "job-failed", "error", "cancelled"
    duration: float
    at: float = field(default_factory=_now)

"""What the stages of a run share: the typed state of one run.

A fresh run fills it stage by stage; an attach rebuilds it from the run record
(``trainboard.backend.restore``), then runs the same plan from ``train``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend.events import Stage

if TYPE_CHECKING:
    from trainboard.backend.compare import Comparison
    from trainboard.backend.evaluations import BaselineHistory
    from trainboard.backend.gitinfo import GitState
    from trainboard.backend.mlflow_server import LocalTrackingServer
    from trainboard.backend.runners import JobHandle, Runner
    from trainboard.backend.store import RunRecord
    from trainboard.backend.tracking import Baseline, MetricCursor, Tracking


@dataclass
class RunnerState:
    """The runner: made at check (its capabilities), held from provision on (teardown releases it)."""

    made: Runner | None = None  # constructed, nothing created yet
    runner: Runner | None = None  # provisioning began (or reattached): teardown releases it
    ready_at: float | None = None
    hourly_price: float | None = None
    cost_task: asyncio.Task[None] | None = None
    shown_state: str = ""  # the runner's last state as the views show it
    interruption: str = ""  # a spot interruption notice the runner reported


@dataclass
class JobState:
    """The last job started (setup, the training job, the DVC push) and the training job's result."""

    handle: JobHandle | None = None
    exit_code: int | None = None
    seconds: float | None = None
    resumed: bool = False  # attach: the training job was started by an earlier session


@dataclass
class TrackingState:
    """MLflow: the client, the run's id, and the local server a remote job reaches it through."""

    client: Tracking | None = None
    mlflow_run_id: str = ""
    run_tags: dict[str, str] = field(default_factory=dict)  # what the run was created with
    logging_params: asyncio.Future[None] | None = None  # the run's params on their way (collect waits)
    opening: asyncio.Task[None] | None = None  # the MLflow run being created (during provision and sync)
    server: LocalTrackingServer | None = None  # serves the local store to a remote job
    server_task: asyncio.Task[None] | None = None


@dataclass
class MetricsState:
    """The metric points seen so far, whether MLflow answers, the baseline and the verdict."""

    cursor: MetricCursor
    points: list[ev.MetricPoint] = field(default_factory=list)
    latest: dict[str, float] = field(default_factory=dict)
    latest_mark: dict[str, tuple[int, int]] = field(default_factory=dict)
    fresh_at: float | None = None  # when the last metric poll that MLflow answered began
    stale: ev.MetricsStale | None = None  # MLflow stopped answering, until it answers again
    poll_task: asyncio.Task[bool] | None = None  # the poll under way, if any
    baseline: Baseline | None = None
    baseline_history: BaselineHistory | None = None  # read once, for the report (baselines.baseline_history)
    comparison: Comparison | None = None


@dataclass
class Outcome:
    """How the run is being ended from outside (cancel, detach)."""

    cancel_reason: str = ""
    cancel_failed: bool = False  # stopped because something broke: an error, not an interruption
    detaching: bool = False


@dataclass
class RunState:
    record: RunRecord | None = None
    git: GitState | None = None
    started: float = 0.0
    runner: RunnerState = field(default_factory=RunnerState)
    job: JobState = field(default_factory=JobState)
    tracking: TrackingState = field(default_factory=TrackingState)
    metrics: MetricsState = field(default_factory=lambda: MetricsState(cursor=_cursor()))
    outcome: Outcome = field(default_factory=Outcome)
    stage_started: dict[Stage, float] = field(default_factory=dict)
    ended: set[Stage] = field(default_factory=set)
    resumed_at: dict[Stage, float] = field(default_factory=dict)  # attach: when a stage began before
    returned_files: dict[str, Path] = field(default_factory=dict)  # brought back into the checkout (DVC)
    record_unwritable: bool = False  # a record write failed (said once; teardown goes on)
    record_save_due: bool = False  # a stage's state waits for the write at the loop's next turn


def _cursor() -> MetricCursor:
    from trainboard.backend.tracking import MetricCursor

    return MetricCursor()

"""What a past or running run left on disk, read for the runs screens.

Everything comes from ``.trainboard/runs/<id>/``: ``record.json`` (through
:class:`~trainboard.backend.store.RunRecord`), the end of ``job.log``, the metric history
in ``metrics.jsonl`` and the final comparison saved in the record.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend import statuswords
from trainboard.backend.compare import Comparison
from trainboard.backend.config import RunConfig
from trainboard.backend.events import MetricPoint
from trainboard.backend.store import RunRecord, RunStatus
from trainboard.tui.render import format_seconds

LOG_LINES = 2000  # how much of a run's log the runs screen shows


def status(record: RunRecord) -> str:
    return str(record.status or "?")


def is_live(record: RunRecord) -> bool:
    """Whether the run's job may still be going (running, or detached)."""
    return record.status is not None and record.status.is_live


def pid_alive(pid: int | None) -> bool:
    """Whether the process may still be running (True when the pid is unknown)."""
    if pid is None or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def watched_here(record: RunRecord) -> bool:
    """Whether this very process runs the run (its dashboard is the one looking at the list)."""
    return record.status is RunStatus.RUNNING and record.trainboard_pid == os.getpid()


def is_running(record: RunRecord) -> bool:
    """Whether the run is going on: detached, or running with its trainboard alive
    (a ``running`` record whose trainboard is gone crashed: `trainboard reap` tidies it)."""
    if record.status is RunStatus.DETACHED:
        return True
    return record.status is RunStatus.RUNNING and pid_alive(record.trainboard_pid)


def attach_hint(record: RunRecord) -> str:
    return f"trainboard attach {record.run_id}"


def live_text(record: RunRecord) -> str:
    """What a live run is doing, as the runs list says it in place of a verdict."""
    if watched_here(record):
        return "running (this dashboard)"
    if record.status is RunStatus.DETACHED:
        return f"detached: `{attach_hint(record)}` follows it"
    if is_running(record):
        return f"running (trainboard pid {record.trainboard_pid}): `{attach_hint(record)}` follows it"
    return f"no outcome: its trainboard (pid {record.trainboard_pid}) is gone; `trainboard reap` tidies it up"


# What happened to a run, as the end of a sentence ("no comparison: the job failed").


def what_happened(record: RunRecord) -> str:
    """"the run was cancelled", "the job failed (exit 3)", ...: a clause about the run's status."""
    return statuswords.what_happened(record.status, record.job_exit_code)


def running_for(record: RunRecord, now: float | None = None) -> float | None:
    """Seconds since a running run started; None when it is not running (or its start is unknown)."""
    created = record.created_at
    if created is None or not is_running(record):
        return None
    return max(0.0, (now or time.time()) - created)


def duration(record: RunRecord, now: float | None = None) -> float | None:
    """Seconds the run took, or has taken so far while it is running.

    A detached run's record keeps the time its view was there: the job ran on after it."""
    so_far = running_for(record, now)
    return so_far if so_far is not None else record.duration


def duration_text(record: RunRecord, now: float | None = None) -> str:
    """"12.3s" for a run that ended, "running 13m05s" for one still going, "—" unknown."""
    so_far = running_for(record, now)
    if so_far is not None:
        return f"running {format_seconds(so_far)}"
    took = record.duration
    return "—" if took is None else format_seconds(took)


def cost_text(record: RunRecord, now: float | None = None) -> str:
    """What the runner cost: nothing on this machine; hourly price times the run's time elsewhere."""
    if record.cost is not None:
        return f"${record.cost:.2f}"
    price = record.runner.hourly_price
    took = duration(record, now)
    if price is not None and took is not None:
        return f"${price * took / 3600:.2f}"
    return "$0.00" if record.runner.kind in ("", "local") else "—"


def config_of(record: RunRecord) -> RunConfig | None:
    """The run's config as recorded (with its overrides), or None when it no longer validates.

    The record keeps secrets masked; they are read back from the run's config file when it
    is still there (``trainboard pr`` masks them in what it publishes).
    """
    from trainboard.backend.store import recorded_config

    try:
        return RunConfig.model_validate(recorded_config(record))
    except ValueError:
        return None


def log_path(record: RunRecord) -> Path | None:
    """The job's log, or the setup's when the job never started."""
    for name in ("job.log", "setup.log"):
        path = record.path / name
        if path.exists():
            return path
    return None


def log_tail(record: RunRecord, count: int = LOG_LINES) -> list[str]:
    """The last ``count`` lines of the run's log, read from the end, secrets masked."""
    from trainboard.backend.redact import Redactor
    from trainboard.backend.report import tail_lines

    path = log_path(record)
    if path is None:
        return []
    return Redactor.from_env().lines(tail_lines(path, count))


def metric_history(record: RunRecord) -> list[MetricPoint]:
    """Every point in the run's ``metrics.jsonl``; unreadable lines are skipped."""
    from trainboard.backend.session import read_metric_history

    return read_metric_history(record.path)


@dataclass(frozen=True)
class SavedComparison:
    comparison: Comparison | None
    problem: str = ""  # why there is none: "no comparison: the job failed (exit 3)"


def saved_comparison(record: RunRecord) -> SavedComparison:
    data = record.comparison
    if not data:
        yet = " yet" if is_live(record) else ""
        return SavedComparison(None, f"no comparison{yet}: {what_happened(record)}")
    try:
        return SavedComparison(Comparison.from_dict(data))
    except (KeyError, TypeError, ValueError) as exc:
        return SavedComparison(None, f"the saved comparison in {record.path / 'record.json'} is unreadable: {exc}")

"""Snapshots of the dashboard in its main states (pytest-textual-snapshot).

Each state is the real app from ``make_app`` showing real events: those a real
session published while running the tiny job, recorded once for this module and
normalised so that the screen is the same on every machine and every run (see
tests/snapshot_support.py). A state mid-run is the recorded stream cut at that
point. The attach state opens a real finished run's record with
``Session.attach``, as ``trainboard attach`` does.

The baselines live in tests/__snapshots__/test_snapshots/; after a deliberate
change to the dashboard, look at the report of the failing test, then update
them with ``pytest tests/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from snapshot_support import (
    SCHEDULE,
    T0,
    FrozenClock,
    Recorded,
    Replay,
    crashed,
    frozen_clock,
    record_runs,
    replaying_dashboard,
    settle,
    until_runner,
    until_step,
)
from textual.pilot import Pilot

from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.tui.app import make_app

# Its module fixture runs the whole set once: keep these tests on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("snapshots")

SIZE = (100, 30)
SMALL = (80, 24)
SnapCompare = Callable[..., bool]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """The recorded runs (about 30 s: five real runs, one of them through the CLI)."""
    return record_runs(tmp_path_factory.mktemp("snapshots"))


@pytest.fixture
def clock(recorded: Recorded, monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    """The tui modules' clock, frozen; the working directory is the recorded repository,
    so the paths the dashboard shows are relative and the same everywhere; colours on
    (Textual honours NO_COLOR)."""
    monkeypatch.chdir(recorded.repo)
    monkeypatch.delenv("NO_COLOR", raising=False)
    with frozen_clock(T0) as frozen:
        yield frozen


def shot(snap_compare: SnapCompare, app: Any, replay: Replay | None, finished: bool, size: tuple[int, int]) -> bool:
    """The screenshot matches its baseline, once the dashboard shows every event.

    The toasts that the end of a run raises are dismissed first: they cover the
    comparison and the status line for 12 s (test_app.py checks what they say).
    """

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, replay, finished)
        if finished:
            pilot.app.clear_notifications()
            await pilot.pause()

    matches = snap_compare(app, terminal_size=size, run_before=run_before)
    crashed(app)
    return matches


def after_start(stage_seconds: float, stage: str) -> float:
    """The wall clock ``stage_seconds`` into ``stage`` (as the recordings are timed)."""
    return T0 + SCHEDULE[Stage(stage)][0] + stage_seconds


def test_provisioning(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    cut = until_runner(recorded.training.events, "provisioning")
    app, replay = replaying_dashboard(recorded.training, cut, clock, after_start(1.2, "provision"))
    assert shot(snap_compare, app, replay, False, SIZE)


def test_training_with_live_metrics_and_deltas(
    recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare
) -> None:
    cut = until_step(recorded.training.events, 3)
    app, replay = replaying_dashboard(recorded.training, cut, clock, after_start(30.4, "train"))
    assert shot(snap_compare, app, replay, False, SIZE)


def test_training_on_a_small_terminal(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    cut = until_step(recorded.training.events, 3)
    app, replay = replaying_dashboard(recorded.training, cut, clock, after_start(30.4, "train"))
    assert shot(snap_compare, app, replay, False, SMALL)


def test_finished_with_the_gate_passed(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    assert recorded.training.outcome is ExitCode.OK
    app, replay = replaying_dashboard(recorded.training, None, clock, T0 + 60)
    assert shot(snap_compare, app, replay, True, SIZE)


def test_finished_with_the_gate_failed(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    assert recorded.gate_fails.outcome is ExitCode.GATE_FAILED
    app, replay = replaying_dashboard(recorded.gate_fails, None, clock, T0 + 60)
    assert shot(snap_compare, app, replay, True, SIZE)


def test_job_error(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    assert recorded.job_fails.outcome is ExitCode.JOB_FAILED
    app, replay = replaying_dashboard(recorded.job_fails, None, clock, T0 + 60)
    assert shot(snap_compare, app, replay, True, SIZE)


def test_job_error_on_a_small_terminal(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    app, replay = replaying_dashboard(recorded.job_fails, None, clock, T0 + 60)
    assert shot(snap_compare, app, replay, True, SMALL)


def test_attach_to_a_finished_run(recorded: Recorded, clock: FrozenClock, snap_compare: SnapCompare) -> None:
    root = Path(".")
    record = RunStore(root / ".trainboard").load(recorded.attached_id)
    assert record.get("status") == "succeeded"
    session = Session.attach(record, root)  # its own run() replays the record: nothing to stand in
    app = make_app(session)
    clock.now = T0 + 3600
    assert shot(snap_compare, app, None, True, SIZE)

"""Snapshots of the sweep dashboard (``SweepApp``'s main screen) at 100x30 and 120x40.

The content is a recorded state, the same on every machine: a real ``Sweep`` of the
tiny job's config (12 members: 3 learning rates x 4 epoch counts, a $5 cost cap)
whose members' live state is set as a sweep mid-way would have it: four ended
(succeeded, gate failed, job failed, cancelled), three running with progress, an
objective history (the sparkline) and a delta against the base branch, the rest
queued. The app's worker that would run the sweep is not started: nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.conftest import make_tiny_repo
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_spec import plan
from trainboard.tui.sweep_app import SweepApp

SnapCompare = Callable[..., bool]

ENDED = [  # status, objective, delta, cost
    ("succeeded", 0.9123, 0.0042, 0.021),
    ("gate-failed", 0.8861, -0.0220, 0.019),
    ("job-failed", None, None, 0.004),
    ("cancelled", 0.7012, None, 0.011),
]
RUNNING = [  # stage, step, total, eta, history
    ("train", 96, 128, 41.0, [0.61, 0.72, 0.80, 0.86, 0.9, 0.915, 0.921]),
    ("train", 40, 128, 150.0, [0.55, 0.68, 0.74]),
    ("setup", None, None, None, []),
]


class RecordedSweepApp(SweepApp):
    """The sweep dashboard showing the state it was given: the sweep itself is not run."""

    def _start(self) -> None:
        pass


def recorded_sweep(repo: Path) -> Sweep:
    loaded = load_config(repo / "tb.yaml", ["budget.max_cost_usd=5"])
    members, configs = plan(loaded, ["params.lr=1e-4,5e-5,2e-5", "params.epochs=1,2,3,4"], repo)
    sweep = Sweep(loaded, members, configs, root=repo, sweep_id="2611-0215-snap")
    sweep.data.branch = "feature/lr"
    for state, (status, objective, delta, cost) in zip(sweep.members, ENDED, strict=False):
        state.info.status, state.info.objective, state.info.delta, state.info.cost = status, objective, delta, cost
        state.history = [] if objective is None else [objective - 0.2, objective - 0.05, objective]
        state.progress = ev.JobProgress(step=128, total=128, eta=0.0)
    for state, (stage, step, total, eta, history) in zip(sweep.members[4:], RUNNING, strict=False):
        state.info.status, state.info.stage, state.info.cost = "running", stage, 0.015
        state.history = history
        state.info.objective = history[-1] if history else None
        state.info.delta = history[-1] - 0.9081 if history else None
        state.progress = None if step is None else ev.JobProgress(step=step, total=total, eta=eta, rate=2.4)
    sweep.data.cost = round(sum(m.info.cost or 0.0 for m in sweep.members), 6)
    return sweep


@pytest.fixture
def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sweep:
    repo = make_tiny_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return recorded_sweep(repo)


def shot(snap_compare: SnapCompare, sweep: Sweep, size: tuple[int, int], keys: tuple[str, ...] = ()) -> bool:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.3)

    return snap_compare(RecordedSweepApp(sweep), terminal_size=size, run_before=run_before)


def test_sweep_mid_way(sweep: Sweep, snap_compare: SnapCompare) -> None:
    assert shot(snap_compare, sweep, (100, 30))


def test_sweep_mid_way_on_a_larger_terminal(sweep: Sweep, snap_compare: SnapCompare) -> None:
    assert shot(snap_compare, sweep, (120, 40))


def test_sweep_sorted_by_objective(sweep: Sweep, snap_compare: SnapCompare) -> None:
    assert shot(snap_compare, sweep, (120, 40), keys=("o",))

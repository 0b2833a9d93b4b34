"""The Textual dashboard, driven by its pilot against the real session.

Every test runs the tiny job of ``tiny_repo`` on the local runner, with its
metrics in a real MLflow SQLite store: the app under test is built by the same
``make_app`` the CLI calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from tests.pilot_support import wait_for_end, wait_until
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.events import STAGES, Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.tui.app import TrainboardApp, make_app
from trainboard.tui.widgets import ComparisonTable, ConfirmScreen, LogPane, MetricsPanel, StageList, StatusLine

ROOT = Path(__file__).resolve().parent.parent
SIZE = (100, 30)


def build(repo: Path, *overrides: str) -> tuple[TrainboardApp, Session, list[ev.Event]]:
    session = Session(load_config(repo / "tb.yaml", list(overrides)), root=repo)
    events: list[ev.Event] = []
    session.subscribe(events.append)
    return make_app(session), session, events


async def wait_for_job(pilot: Pilot, app: TrainboardApp, session: Session) -> int:
    """Until the job is running and has printed its first epoch; its pid."""
    await wait_until(
        pilot, lambda: any(line.startswith("epoch 1") for line in app.query_one(LogPane).lines), "the job's first epoch"
    )
    assert session.record is not None
    return int(session.record.data["job"]["pid"])


def stage_lines(app: TrainboardApp) -> dict[str, str]:
    text = str(app.query_one(StageList).visual)
    return {line.split()[1]: line for line in text.splitlines()}


def cell(table: MetricsPanel | ComparisonTable, row: str, column: str) -> str:
    return table.get_cell(row, column).plain


def group_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def test_run_to_completion_shows_log_stages_metrics_and_comparison(repo: Path) -> None:
    app, session, events = build(repo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)

        log = app.query_one(LogPane).lines
        assert "epoch 1: f1=0.700" in log and "epoch 2: f1=0.800" in log
        assert app.query_one(StageList).states == dict.fromkeys(STAGES, StageState.DONE)
        lines = stage_lines(app)
        assert all(lines[stage.value].startswith("✓") for stage in STAGES), lines

        metrics = app.query_one(MetricsPanel)
        assert cell(metrics, "f1", "metric") == "F1"
        assert cell(metrics, "f1", "value") == "0.8000"
        assert cell(metrics, "loss", "value") == "0.5000"

        table = app.query_one(ComparisonTable)
        assert table.row_count == 2
        assert cell(table, "f1", "after") == "0.8000"
        assert cell(table, "f1", "before") == "—"  # the first run on main has no baseline
        assert "PASS" in str(table.border_subtitle)
        status = str(app.query_one(StatusLine).visual)
        assert "succeeded" in status and "report" in status
        assert "tiny" in str(app.query_one("#run-header").visual)

        app.save_screenshot(str(session.run_dir / "dashboard.svg"))
        await pilot.press("q")
    assert app.return_code == 0
    assert isinstance(events[-1], ev.RunFinished) and events[-1].outcome == ExitCode.OK


async def test_second_run_shows_deltas_against_the_first(repo: Path) -> None:
    first = Session(load_config(repo / "tb.yaml"), root=repo)
    assert await first.run() == ExitCode.OK  # the baseline: F1 0.8 on main

    app, session, events = build(repo, "params.base_f1=0.7")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        table = app.query_one(ComparisonTable)
        assert cell(table, "f1", "before") == "0.8000"
        assert cell(table, "f1", "after") == "0.9000"
        assert cell(table, "f1", "delta") == "+0.1000"
        assert cell(table, "f1", "result") == "pass"
        assert cell(table, "loss", "delta") == "+0.0000"
        assert first.run_id in str(table.border_title)
        metrics = app.query_one(MetricsPanel)
        assert cell(metrics, "f1", "delta") == "+0.1000"
        await pilot.press("q")
    assert app.return_code == 0


async def test_cancel_confirmed_stops_the_job_and_tears_down(repo: Path) -> None:
    app, session, events = build(repo, "params.sleep=30")
    async with app.run_test(size=SIZE) as pilot:
        pid = await wait_for_job(pilot, app, session)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for_end(pilot, app)

        assert app.outcome == ExitCode.INTERRUPTED
        assert app.query_one(StageList).states[Stage.TEARDOWN] is StageState.DONE
        assert group_gone(pid), f"the job's process group {pid} is still alive"
        assert "cancelled" in str(app.query_one(StatusLine).visual)
        assert not app.screen.is_modal  # the dashboard stays open on the result
        await pilot.press("q")
    assert app.return_code == ExitCode.INTERRUPTED == 130


async def test_failing_job_shows_the_error_and_returns_job_failed(repo: Path) -> None:
    app, session, events = build(repo, "params.exit_code=3")
    messages: list[Message] = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await wait_for_end(pilot, app)
        assert app.outcome == ExitCode.JOB_FAILED
        errors = [e for e in events if isinstance(e, ev.ErrorRaised)]
        assert errors and "exited with code 3" in errors[0].message
        toasts = [m.notification for m in messages if isinstance(m, Notify)]
        assert any(t.severity == "error" and "exited with code 3" in t.message for t in toasts), toasts
        assert "exited with code 3" in str(app.query_one(StatusLine).visual)
        train = stage_lines(app)["train"]
        assert train.startswith("✗") and "exited with code 3" in train
        assert "not run" in stage_lines(app)["compare"]
        await pilot.press("q")
    assert app.return_code == ExitCode.JOB_FAILED == 4


async def test_ctrl_c_twice_stops_the_job_then_exits(repo: Path) -> None:
    app, session, events = build(repo, "params.sleep=30")
    async with app.run_test(size=SIZE) as pilot:
        pid = await wait_for_job(pilot, app, session)
        await pilot.press("ctrl+c")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.purpose == "quit"
        await pilot.press("ctrl+c")  # a second Ctrl+C says yes
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == ExitCode.INTERRUPTED
    assert isinstance(events[-1], ev.RunFinished) and events[-1].status == "cancelled"
    assert group_gone(pid)


async def test_sigterm_tears_down_and_exits(repo: Path) -> None:
    app, session, events = build(repo, "params.sleep=30")
    async with app.run_test(size=SIZE) as pilot:
        pid = await wait_for_job(pilot, app, session)
        os.kill(os.getpid(), signal.SIGTERM)  # the app's handler turns it into cancel
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == ExitCode.INTERRUPTED
    teardown = [e for e in events if isinstance(e, ev.StageChanged) and e.stage is Stage.TEARDOWN]
    assert teardown[-1].state is StageState.DONE
    assert group_gone(pid)


async def test_a_burst_of_log_lines_is_written_in_a_few_batches(repo: Path) -> None:
    app, session, events = build(repo, "params.lines=20000")
    writes: list[int] = []
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(LogPane)  # the job's lines come seconds after mount
        original = pane.write_lines

        def counting(lines, scroll_end=None):  # type: ignore[no-untyped-def]
            lines = list(lines)
            writes.append(len(lines))
            return original(lines, scroll_end)

        pane.write_lines = counting  # type: ignore[method-assign]
        await wait_for_end(pilot, app)
        received = sum(len(e.lines) for e in events if isinstance(e, ev.LogLines))
        assert received > 20000
        assert len(writes) < received / 100, f"{len(writes)} writes for {received} lines"
        # Bounded: a flood writes only the newest lines of each batch; the rest is counted
        # as skipped (the full log on disk has them).
        await pilot.pause(0.3)
        assert 0 < pane.line_count <= pane.max_lines == 5000
        assert pane.dropped > 0 and pane.line_count + pane.dropped >= 20000
        assert pane.lines[-1] == "line 19999"
        await pilot.press("q")


def test_the_dashboard_module_stays_off_heavy_imports() -> None:
    code = (
        "import sys, trainboard.tui.app; heavy = ('mlflow', 'torch', 'transformers', 'matplotlib');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

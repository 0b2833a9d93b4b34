"""The dashboard's panels, actions and screens, driven by the pilot against real runs.

Every run is the tiny job of ``tiny_repo`` on the local runner with its metrics
in a real MLflow SQLite store; the apps are built by the factories the CLI calls
(``make_app``, ``make_runs_app``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Log, Static, TabbedContent

from tests.pilot_support import wait_for_end, wait_until
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.tui.app import TrainboardApp, make_app
from trainboard.tui.runs_app import make_runs_app
from trainboard.tui.screens.help import HelpScreen
from trainboard.tui.screens.quit import QuitScreen
from trainboard.tui.screens.run_detail import RunDetailScreen
from trainboard.tui.screens.runs import RunsScreen
from trainboard.tui.widgets import ComparisonTable, FailurePanel, MetricsPanel, MetricsPlot, RunnerPanel

ROOMY = (120, 50)  # tall enough for the plot and a line per runner field
SMALL = (80, 24)


def session_for(repo: Path, *overrides: str) -> Session:
    return Session(load_config(repo / "tb.yaml", list(overrides)), root=repo)


def build(repo: Path, *overrides: str) -> tuple[TrainboardApp, Session, list[ev.Event]]:
    session = session_for(repo, *overrides)
    events: list[ev.Event] = []
    session.subscribe(events.append)
    return make_app(session), session, events


async def wait_for_training(pilot: Pilot, session: Session, events: list[ev.Event]) -> int:
    """Until the job has printed its first epoch; its pid (the leader of its process group)."""

    def first_epoch() -> bool:
        return any(isinstance(e, ev.LogLines) and any(x.startswith("epoch 1") for x in e.lines) for e in events)

    await wait_until(pilot, first_epoch, "the job's first epoch")
    assert session.record is not None
    return int(session.record.data["job"]["pid"])


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def text(widget: Static) -> str:
    return str(widget.visual)


def toasts(messages: list[Message]) -> list[str]:
    return [m.notification.message for m in messages if isinstance(m, Notify)]


async def test_local_run_shows_runner_fields_plot_help_palette_and_a_disabled_pull_request(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    app, session, events = build(repo)
    messages: list[Message] = []
    async with app.run_test(size=ROOMY, message_hook=messages.append) as pilot:
        await wait_for_end(pilot, app)

        # Runner panel: this machine has no instance, type, region or market, and costs nothing.
        runner = app.query_one(RunnerPanel)
        fields = {name: str(value) for name, value in runner.fields(time.time())}
        assert fields["address"] == "localhost" and fields["cost"] == "$0.00 (local)"
        assert [fields[k] for k in ("instance", "type", "region", "market")] == ["—"] * 4
        assert fields["uptime"] != "—" and runner.ready_at is not None and runner.stopped_at is not None
        shown = text(runner)
        assert "cost     $0.00 (local)" in shown and "instance —" in shown and "state    stopped" in shown

        # Header: branch, commit, runner; the plot: F1 (goal max), not the loss, with no baseline yet.
        header = text(app.query_one("#run-header", Static))
        assert "main @ " in header and "local" in header and session.run_id in header
        plot = app.query_one(MetricsPlot)
        assert plot.display and plot.keys == ["f1"] and plot.points["f1"][-1] == (2, pytest.approx(0.8))
        assert app.query_one(MetricsPanel).border_subtitle == "no baseline yet on main"

        # No pull request from the base branch (its run is the baseline): greyed, and p, the button
        # and the palette say why.
        assert app.check_action("open_pr", ()) is None
        button = app.query_one("#open-pr", Button)
        why = str(button.tooltip)
        assert button.has_class("-blocked") and why.startswith("the run is on the base branch 'main'")
        await pilot.press("p")
        await pilot.click("#open-pr")
        await pilot.pause()
        assert toasts(messages).count(why) == 2, toasts(messages)

        # Help: generated from the bindings, grouped.
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(text(s) for s in app.screen.query(Static))
        for expected in ("Run dashboard", "Cancel run", "Runs", "Plot", "Help", "Quit dialog", "Detach",
                         "Stop and quit", "Runs screen", "Open run", "Command palette"):
            assert expected in shown, expected
        assert "Sweep dashboard" not in shown and "Stop member" not in shown  # a sweep's screens: its help only
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        # The command palette finds the dashboard's actions.
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Cancel")
        commands = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: commands.option_count > 0, "palette hits", timeout=5)
        hits = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
        assert any("Cancel run" in hit for hit in hits), hits
        await pilot.press("escape")
        names = [c.name for c in app.palette_commands()]
        assert names == ["Cancel run", "Open pull request", "Detach", "Stop and quit", "Show runs",
                         "Toggle metrics plot", "Help"]

        # MLflow unreachable: the session's MetricsStale turns the metrics panel to a warning,
        # with the time of the last answer; MetricsFresh clears it.
        since = time.time() - 30
        app._on_event(ev.MetricsStale(since, "MLflow unreachable: connection refused"))
        await pilot.pause(0.2)
        metrics = app.query_one(MetricsPanel)
        subtitle = str(metrics.border_subtitle)
        assert metrics.has_class("-unreachable"), subtitle
        assert f"stale since {time.strftime('%H:%M:%S', time.localtime(since))}" in subtitle, subtitle
        assert "connection refused" in str(metrics.tooltip)
        app._on_event(ev.MetricsFresh(since))
        await pilot.pause(0.2)
        assert not metrics.has_class("-unreachable") and "stale" not in str(metrics.border_subtitle)

        await pilot.press("q")  # the run is over: quit just exits
    assert app.return_code == ExitCode.OK


async def test_quit_then_stop_tears_down_and_exits_130(repo: Path) -> None:
    app, session, events = build(repo, "params.sleep=30")
    async with app.run_test(size=SMALL) as pilot:
        pid = await wait_for_training(pilot, session, events)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.click("#stop")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == ExitCode.INTERRUPTED == 130
    assert gone(pid), f"the job's process group {pid} is still alive"
    assert session.store.load(session.run_id).get("status") == "cancelled"


async def test_quit_then_detach_exits_5_and_leaves_the_job_running(repo: Path) -> None:
    app, session, events = build(repo, "params.sleep=30")
    pid = 0
    try:
        async with app.run_test(size=SMALL) as pilot:
            pid = await wait_for_training(pilot, session, events)
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            await pilot.click("#detach")
            await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
        assert app.return_code == ExitCode.DETACHED == 5
        assert alive(pid), "detaching stopped the job"
        assert session.store.load(session.run_id).get("status") == "detached"
    finally:
        if pid and alive(pid):
            os.killpg(pid, signal.SIGKILL)


async def test_runs_screen_lists_runs_and_opens_log_metrics_and_comparison(repo: Path) -> None:
    first = session_for(repo)
    assert await first.run() == ExitCode.OK  # F1 0.8: the baseline
    second = session_for(repo, "params.base_f1=0.7")
    assert await second.run() == ExitCode.OK  # F1 0.9

    app = make_runs_app(RunStore(repo / ".trainboard"))
    async with app.run_test(size=SMALL) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        rows = [table.get_row_at(i) for i in range(2)]
        assert [r[0].plain for r in rows] == [second.run_id, first.run_id]  # newest first
        assert all("succeeded" in r[1].plain and r[2].plain == "main" and r[5].plain == "$0.00" for r in rows)

        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.record.run_id == second.run_id
        log = detail.query_one(Log)
        assert "epoch 2: f1=0.900" in log.lines and "$ python job.py" in log.lines

        await pilot.press("2")
        assert detail.query_one(TabbedContent).active == "tab-metrics"
        history = detail.query_one("#detail-history", DataTable)
        assert history.row_count == 2 and history.get_cell("2", "f1").plain == "0.9000"

        await pilot.press("3")
        comparison = detail.query_one("#detail-comparison", DataTable)
        assert comparison.get_cell("f1", "before").plain == "0.8000"
        assert comparison.get_cell("f1", "after").plain == "0.9000"
        assert comparison.get_cell("f1", "delta").plain == "+0.1000"
        assert "PASS" in text(detail.query_one("#verdict", Static))

        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("escape")  # the runs app's only screen: escape leaves
    assert app.return_code == 0


async def test_failed_job_shows_the_end_of_its_log_and_the_runs_screen_says_why_no_comparison(repo: Path) -> None:
    app, session, events = build(repo, "params.exit_code=3", "params.lines=30")
    async with app.run_test(size=SMALL) as pilot:
        await wait_for_end(pilot, app)
        assert app.outcome == ExitCode.JOB_FAILED
        failure = app.query_one(FailurePanel)
        assert failure.display and failure.region.height > 0
        assert failure.lines == [f"line {i}" for i in range(20, 30)]
        assert "line 29" in text(failure) and "job-failed · the last 10 lines of job.log" in str(failure.border_title)
        assert not app.query_one(ComparisonTable).display  # 80x24: the failure takes its place

        await pilot.press("r")
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        assert "job-failed" in runs.query_one(DataTable).get_row_at(0)[1].plain
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert "line 29" in detail.query_one(Log).lines
        await pilot.press("3")
        assert text(detail.query_one("#comparison-empty", Static)) == "no comparison: the job failed (exit 3)"
        await pilot.press("escape", "escape")
        assert app.screen is app.screen_stack[0]
        await pilot.press("q")
    assert app.return_code == ExitCode.JOB_FAILED

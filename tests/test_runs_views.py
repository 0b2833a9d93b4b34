"""The runs list (`trainboard runs --no-tui`) and the runs screens (issue 12, item 4; item 6's
aligned headers): time of a running run, the watched run, phrases, order, primary metric.

Records are real: made with RunStore.create as a run makes them (the tiny repo's config),
metric histories written by write_metric_history; the screens are driven by the pilot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Log, Static

from tests.pilot_support import wait_until
from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison, ComparisonRow
from trainboard.backend.config import RunConfig, load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.metrichistory import write_metric_history
from trainboard.backend.session import Session
from trainboard.backend.store import RunRecord, RunStatus, RunStore
from trainboard.tui import run_files, runs_list
from trainboard.tui.app import make_app
from trainboard.tui.cli import main
from trainboard.tui.render import plural
from trainboard.tui.runs_app import make_runs_app
from trainboard.tui.screens.run_detail import RunDetailScreen
from trainboard.tui.screens.runs import RunsScreen
from trainboard.tui.widgets import ComparisonTable, MetricsPlot
from trainboard.tui.widgets.plot import history_title

SIZE = (160, 30)
def now() -> float:
    """The real time (the views read it too): a run made ``started_ago`` s ago is that old when shown."""
    return time.time()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def raw(tiny_repo: Path) -> dict[str, Any]:
    """The tiny repo's config as a run records it (metrics: F1 to maximise, Loss to minimise)."""
    return load_config(tiny_repo / "tb.yaml").raw


def comparison(before: float | None, after: float) -> dict[str, Any]:
    rows = (
        ComparisonRow("f1", "F1", "max", 4, before, after, "Δ ≥ -0.005", True),
        ComparisonRow("loss", "Loss", "min", 4, 0.5 if before is not None else None, 0.4, "", None),
    )
    label = "main @ 1a2b3c4" if before is not None else ""
    return Comparison("main", "mlflow-run" if before is not None else "", label, rows, True).to_dict()


def make_run(store: RunStore, run_id: str, status: RunStatus, started_ago: float, **fields: Any) -> RunRecord:
    fields.setdefault("branch", "main")
    fields.setdefault("commit", "1a2b3c4d5e")
    return store.create(run_id, status=status, created_at=now() - started_ago, **fields)


def runs_rows(screen: RunsScreen) -> list[dict[str, str]]:
    table = screen.query_one(DataTable)
    keys = [column.key.value for column in table.ordered_columns]
    return [dict(zip(keys, (cell.plain for cell in table.get_row_at(i)), strict=True))
            for i in range(table.row_count)]


def printed_runs(folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.chdir(folder)
    assert main(["runs", "--no-tui"]) == 0
    return capsys.readouterr().out


def header_and_row(table: DataTable[Any], row: int) -> tuple[str, str]:
    """The table's header line and one of its rows, as drawn."""
    return table.render_line(0).text, table.render_line(1 + row).text


# ---------------------------------------------------------------- time of a running run


def test_a_running_run_shows_the_time_since_it_started_not_a_stale_duration(
        tmp_path: Path, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    # A detached run: its view left after 28.9 s, the job runs on (13 minutes now).
    detached = make_run(store, "r2-detached", RunStatus.DETACHED, 13 * 60 + 5, config=raw, duration=28.9)
    done = make_run(store, "r1-done", RunStatus.SUCCEEDED, 3600, config=raw, duration=42.0)
    at = (detached.created_at or 0) + 785
    assert run_files.duration_text(detached, at) == "running 13m05s"
    assert run_files.duration(detached, at) == pytest.approx(785.0)
    assert run_files.duration_text(done, at) == "42.0s"

    out = printed_runs(tmp_path, monkeypatch, capsys)
    line = next(x for x in out.splitlines() if "r2-detached" in x)
    assert "running 13m" in line and "28.9s" not in line
    assert "detached: `trainboard attach r2-detached` follows it" in out


async def test_the_runs_screen_ticks_the_time_of_a_running_run(tmp_path: Path, raw: dict[str, Any]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    record = make_run(store, "r1-detached", RunStatus.DETACHED, 13 * 60 + 5, config=raw, duration=28.9)
    app = make_runs_app(store)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        (row,) = runs_rows(screen)
        assert row["took"].startswith("running 13m") and row["status"] == "◆ detached"
        assert row["verdict"] == "detached: `trainboard attach r1-detached` follows it"
        assert str(screen.query_one(DataTable).border_subtitle) == "1 run · 1 running"
        await pilot.press("enter")
        summary = str(app.screen.query_one("#run-summary", Static).render())
        assert "running 13m" in summary and "took" not in summary
        assert "● detached: `trainboard attach r1-detached` follows it" in summary
        await pilot.press("escape")
        # The job ends (attached again elsewhere): the row follows the record.
        record.update(status=RunStatus.CANCELLED, duration=790.0)
        screen.reload()
        (row,) = runs_rows(screen)
        assert (row["took"], row["status"], row["verdict"]) == ("13m10s", "■ cancelled", "—")
        assert str(screen.query_one(DataTable).border_subtitle) == "1 run"


def test_a_run_whose_trainboard_is_gone_is_not_said_to_be_running(tmp_path: Path, raw: dict[str, Any]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    pid = dead_pid()
    crashed = make_run(store, "r1-crashed", RunStatus.RUNNING, 600, config=raw, trainboard_pid=pid)
    assert run_files.duration_text(crashed, now()) == "—"
    said, tone = runs_list.verdict(crashed)
    assert said == f"no outcome: its trainboard (pid {pid}) is gone; `trainboard reap` tidies it up"
    assert tone == "muted"


# ---------------------------------------------------------------- the watched run


async def test_the_watched_run_shows_it_is_running_in_this_dashboard(repo: Path) -> None:
    session = Session(load_config(repo / "tb.yaml", ["params.sleep=30"]), root=repo)
    events: list[ev.Event] = []
    session.subscribe(events.append)
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: session.record is not None and session.record.job is not None,
                         "the job to start")
        await pilot.press("r")
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        (row,) = runs_rows(runs)
        assert row["verdict"] == "running (this dashboard)"
        assert "attach" not in row["verdict"] and row["took"].startswith("running ")
        hint = runs.query_one("#runs-hint", Static)
        assert str(hint.render()) == f"● {session.run_id} is running in this dashboard: escape goes back to it"
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        summary = str(detail.query_one("#run-summary", Static).render())
        assert "● running in this dashboard" in summary and "attach" not in summary
        assert str(detail.query_one("#comparison-empty", Static).render()) == (
            "no comparison yet: the run is still running")
        await pilot.press("escape", "escape", "q")
        await pilot.click("#stop")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == ExitCode.INTERRUPTED


# ---------------------------------------------------------------- phrases


@pytest.mark.parametrize(("status", "fields", "said"), [
    (RunStatus.RUNNING, {"trainboard_pid": os.getpid()}, "no comparison yet: the run is still running"),
    (RunStatus.DETACHED, {}, "no comparison yet: the job runs on, detached"),
    (RunStatus.CANCELLED, {}, "no comparison: the run was cancelled"),
    (RunStatus.JOB_FAILED, {"job_exit_code": 3}, "no comparison: the job failed (exit 3)"),
    (RunStatus.JOB_FAILED, {}, "no comparison: the job failed"),
    (RunStatus.CONFIG_ERROR, {}, "no comparison: the config was refused"),
    (RunStatus.ERROR, {}, "no comparison: the run stopped on an error"),
])
def test_no_comparison_says_why_in_a_sentence(tmp_path: Path, status: RunStatus, fields: dict[str, Any],
                                              said: str) -> None:
    record = make_run(RunStore(tmp_path / ".trainboard"), "r1", status, 60, **fields)
    assert run_files.saved_comparison(record).problem == said


async def test_the_run_screens_count_in_the_right_number(tmp_path: Path, raw: dict[str, Any]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    record = make_run(store, "r1-cancelled", RunStatus.CANCELLED, 60, config=raw, duration=3.0)
    (record.path / "job.log").write_text("epoch 1: f1=0.700\n")
    write_metric_history(record.path, [ev.MetricPoint("f1", 0.7, 1, 1000)], append=False)
    app = make_runs_app(store)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert str(screen.query_one(DataTable).border_subtitle) == "1 run"
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert str(detail.query_one(Log).border_title) == "job.log · 1 line"
        assert str(detail.query_one("#detail-history", DataTable).border_subtitle) == "1 step"
        await pilot.press("3")
        assert str(detail.query_one("#comparison-empty", Static).render()) == "no comparison: the run was cancelled"
    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]


async def test_the_plot_title_has_no_dangling_separator_when_nothing_is_plotted(
        tmp_path: Path, raw: dict[str, Any]) -> None:
    only_loss = {**raw, "metrics": {"loss": raw["metrics"]["loss"]}, "compare": {"base": "main"}}
    config = RunConfig.model_validate(only_loss)
    assert MetricsPlot(config).border_title == "History"  # the live dashboard's plot
    assert MetricsPlot(RunConfig.model_validate(raw)).border_title == "History · F1"
    assert history_title([]) == "History" and history_title(["F1", "Recall"]) == "History · F1, Recall"

    store = RunStore(tmp_path / ".trainboard")
    record = make_run(store, "r1", RunStatus.SUCCEEDED, 60, config=only_loss)
    write_metric_history(record.path, [ev.MetricPoint("loss", 0.5, 1, 1000)], append=False)
    app = make_runs_app(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter", "2")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        assert str(detail.query_one("#detail-plot").border_title) == "History"


# ---------------------------------------------------------------- order and primary metric


async def test_both_views_list_newest_first_with_the_primary_metric(
        tmp_path: Path, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    # Ids that sort otherwise than the start times: the order is by start time.
    make_run(store, "a-newest", RunStatus.SUCCEEDED, 60, config=raw, comparison=comparison(0.8, 0.9),
             verdict="PASS", gates_passed=True, duration=5.0)
    failed = make_run(store, "b-oldest", RunStatus.JOB_FAILED, 3000, config=raw, duration=2.0)
    write_metric_history(failed.path, [ev.MetricPoint("f1", 0.65, 1, 1000), ev.MetricPoint("loss", 0.9, 1, 1000),
                                       ev.MetricPoint("f1", 0.7, 2, 2000)], append=False)
    make_run(store, "c-middle", RunStatus.GATE_FAILED, 600, config=raw, comparison=comparison(0.8, 0.7),
             verdict="FAIL: gate failed for F1", gates_passed=False, duration=4.0)
    make_run(store, "d-no-baseline", RunStatus.SUCCEEDED, 1200, config=raw, comparison=comparison(None, 0.6))
    make_run(store, "e-no-config", RunStatus.CANCELLED, 2400)
    order = ["a-newest", "c-middle", "d-no-baseline", "e-no-config", "b-oldest"]
    metrics = {"a-newest": "F1 0.9000 (+0.1000)", "c-middle": "F1 0.7000 (-0.1000)",
               "d-no-baseline": "F1 0.6000", "e-no-config": "—", "b-oldest": "F1 0.7000"}
    assert [r.run_id for r in runs_list.newest_first(store.all())] == order

    out = printed_runs(tmp_path, monkeypatch, capsys)
    lines = {run_id: next(x for x in out.splitlines() if run_id in x) for run_id in order}
    assert sorted(order, key=out.index) == order
    assert "Metric" in out and "kept in 5 runs" in out
    for run_id, text in metrics.items():
        assert text in lines[run_id], lines[run_id]

    monkeypatch.chdir(tmp_path)
    assert main(["runs", "--json"]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == order

    app = make_runs_app(store)
    async with app.run_test(size=SIZE):
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        rows = runs_rows(screen)
        assert [row["run"] for row in rows] == order
        assert {row["run"]: row["metric"] for row in rows} == metrics
        # A run that appears later takes its place by start time too.
        make_run(store, "z-between", RunStatus.CANCELLED, 300, config=raw)
        screen.reload()
        assert [row["run"] for row in runs_rows(screen)][:3] == ["a-newest", "z-between", "c-middle"]


# ---------------------------------------------------------------- aligned headers


async def test_number_headers_are_right_aligned_over_their_values(tmp_path: Path, raw: dict[str, Any]) -> None:
    store = RunStore(tmp_path / ".trainboard")
    record = make_run(store, "r1", RunStatus.SUCCEEDED, 60, config=raw, comparison=comparison(0.8, 0.9), duration=5.0)
    write_metric_history(record.path, [ev.MetricPoint("f1", 0.9, 12, 1000)], append=False)
    app = make_runs_app(store)
    async with app.run_test(size=SIZE) as pilot:
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        header, row = header_and_row(runs.query_one(DataTable), 0)
        for title, value in (("Time", "5.0s"), ("Cost", "$0.00")):
            assert header.index(title) + len(title) == row.index(value) + len(value), (header, row)
        await pilot.press("enter", "3")
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        header, row = header_and_row(detail.query_one("#detail-comparison", DataTable), 0)
        for title, value in (("Before", "0.8000"), ("After", "0.9000"), ("Δ", "+0.1000")):
            assert header.index(title) + len(title) == row.index(value) + len(value), (header, row)
        await pilot.press("2")
        header, row = header_and_row(detail.query_one("#detail-history", DataTable), 0)
        for title, value in (("step", "12"), ("F1", "0.9000")):
            assert header.index(title) + len(title) == row.index(value) + len(value), (header, row)


class ComparisonOnly(App[None]):
    """The live dashboard's comparison table, on its own."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        yield ComparisonTable(self.config)


async def test_the_live_comparison_table_aligns_its_number_headers(raw: dict[str, Any]) -> None:
    app = ComparisonOnly(RunConfig.model_validate(raw))
    async with app.run_test(size=SIZE):
        table = app.query_one(ComparisonTable)
        labels: dict[str, Text] = {str(c.key.value): c.label for c in table.ordered_columns}
        assert [k for k, label in labels.items() if label.justify == "right"] == ["before", "after", "delta"]
        header, row = header_and_row(table, 0)
        for title in ("Before", "After", "Δ"):
            end = header.index(title) + len(title)
            assert row[end - 1] == "—" and row[end - 2] == " ", (header, row)

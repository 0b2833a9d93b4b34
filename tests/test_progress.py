"""Job progress: the ``trainboard:progress`` protocol, the throughput and ETA derived from it,
how the Stages panel and headless show it; a cancelled run's train stage; and the last lines
headless prints (verdict, report, exit code), also on `attach --no-tui` of a finished run.

The runs are real: the tiny job of ``conftest`` (or a job that prints progress lines) on the
local runner, with its metrics in a real MLflow SQLite store.
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.app import App, ComposeResult

from tests.conftest import git, run_acting_at, run_cli
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.progress import (
    ProgressLine,
    ProgressTracker,
    format_eta,
    format_rate,
    headless_text,
    parse_line,
    short_text,
)
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.tui.headless import HeadlessView, ProgressPrinter
from trainboard.tui.widgets.stages import StageList

# A job that reports progress: STEPS steps, a protocol line each, PAUSE seconds apart; then
# the tiny job's metrics (f1, loss) so that the run compares and passes.
PROGRESS_JOB = textwrap.dedent(
    """
    import os, sys, time
    import yaml
    params = yaml.safe_load(open("params.yaml"))
    steps, pause = int(params.get("steps", 40)), float(params.get("pause", 0.0))
    for step in range(1, steps + 1):
        time.sleep(pause)
        print(f"trainboard:progress step={step} total={steps} epoch=1/1 loss={1 / step:.4f}", flush=True)
    print("not a progress line: trainboard:progress step=999", flush=True)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from mlflow.tracking import MlflowClient
        client = MlflowClient()
        client.log_metric(run_id, "f1", 0.8, step=steps)
        client.log_metric(run_id, "loss", 0.5, step=steps)
    sys.exit(int(params.get("exit_code", 0)))
    """
)


@pytest.fixture
def progress_repo(repo: Path) -> Path:
    """``repo`` whose job.command prints progress lines (prog.py, committed)."""
    (repo / "prog.py").write_text(PROGRESS_JOB)
    config = (repo / "tb.yaml").read_text().replace("command: python job.py", "command: python prog.py")
    (repo / "tb.yaml").write_text(config + "  steps: 40\n  pause: 0.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a job that reports progress")
    return repo


def collect(session: Session) -> list[ev.Event]:
    seen: list[ev.Event] = []
    session.subscribe(seen.append)
    return seen


# ---------------------------------------------------------------------- the protocol


def test_a_protocol_line_parses() -> None:
    assert parse_line("trainboard:progress step=40 total=128 epoch=1/2 loss=0.8421 lr=1e-04") == ProgressLine(
        40, 128, 1, 2)
    assert parse_line("trainboard:progress step=0") == ProgressLine(0)
    assert parse_line("trainboard:progress   total=10\tstep=3\r") == ProgressLine(3, 10)
    assert parse_line("trainboard:progress step=5 step=6") == ProgressLine(5)  # the first one counts


@pytest.mark.parametrize("line", [
    "trainboard:progress",  # no step
    "trainboard:progress total=10",
    "trainboard:progress step=",
    "trainboard:progress step=-1",
    "trainboard:progress step=1.5",
    "trainboard:progress step=1e3",
    "trainboard:progress step=٣",  # a digit, but not an ASCII one
    "trainboard:progress step=" + "9" * 5000,  # more digits than int() takes
    "trainboard:progressive step=4",
    " trainboard:progress step=4",  # not at the start of the line
    "INFO trainboard:progress step=4",
    "epoch 1: f1=0.700",
    "",
])
def test_a_line_that_is_not_the_protocol_is_none(line: str) -> None:
    assert parse_line(line) is None


def test_a_bad_total_or_epoch_is_left_out() -> None:
    assert parse_line("trainboard:progress step=4 total=0 epoch=1/0") == ProgressLine(4)
    assert parse_line("trainboard:progress step=4 total=x epoch=a/b") == ProgressLine(4)
    assert parse_line("trainboard:progress step=4 total=8 epoch=3") == ProgressLine(4, 8)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.text(max_size=80), st.lists(st.text(max_size=30), max_size=6))
def test_no_line_crashes_the_parser_or_the_tracker(tail: str, lines: list[str]) -> None:
    tracker = ProgressTracker()
    for at, line in enumerate(["trainboard:progress " + tail, "trainboard:progress" + tail, tail, *lines]):
        parsed = parse_line(line)
        assert parsed is None or parsed.step >= 0
        found = tracker.feed(line + "\n" + "\n".join(lines), at=float(at))
        if found is not None:
            assert found.step >= 0 and (found.rate is None or found.rate >= 0)
            short_text(found, at + 1.0, 30)
            headless_text(found)


# ---------------------------------------------------------------------- rate and ETA


def line(step: int, total: int | None = 100) -> str:
    return f"trainboard:progress step={step}" + (f" total={total}" if total else "")


def test_the_rate_and_eta_come_from_the_arrival_times() -> None:
    tracker = ProgressTracker()
    first = tracker.feed(line(10), at=100.0)
    assert first is not None and first.step == 10 and first.rate is None and first.eta is None
    second = tracker.feed("other\n" + line(20) + "\nmore", at=104.0)
    assert second is not None and second.rate == pytest.approx(2.5) and second.eta == pytest.approx(32.0)
    assert tracker.feed("no progress here", at=105.0) is None
    done = tracker.feed(line(100), at=136.0)
    assert done is not None and done.eta == 0.0 and tracker.latest is done


def test_lines_read_together_count_as_one_arrival() -> None:
    """A backlog (attach reads the log from its start) gives no rate of its own."""
    tracker = ProgressTracker()
    backlog = tracker.feed("\n".join(line(s) for s in range(1, 51)), at=10.0)
    assert backlog is not None and backlog.step == 50 and backlog.rate is None
    tracker.feed(line(52), at=10.0)  # same arrival time: replaces the backlog's sample
    later = tracker.feed(line(60), at=14.0)
    assert later is not None and later.rate == pytest.approx(2.0)


def test_the_rate_is_measured_over_the_recent_window() -> None:
    tracker = ProgressTracker()
    for second in range(0, 60):  # 1 step/s for a minute
        tracker.feed(line(second, 1000), at=float(second))
    fast = None
    for second in range(60, 90):  # then 10 steps/s
        fast = tracker.feed(line(60 + 10 * (second - 59), 1000), at=float(second))
    assert fast is not None and fast.rate == pytest.approx(10.0)


def test_a_count_that_goes_back_starts_afresh() -> None:
    tracker = ProgressTracker()
    tracker.feed(line(50), at=1.0)
    tracker.feed(line(60), at=2.0)
    again = tracker.feed(line(5), at=3.0)
    assert again is not None and again.step == 5 and again.rate is None


def test_without_a_total_there_is_no_eta() -> None:
    tracker = ProgressTracker()
    tracker.feed(line(1, None), at=0.0)
    found = tracker.feed(line(9, None), at=2.0)
    assert found is not None and found.rate == pytest.approx(4.0) and found.eta is None
    assert short_text(found) == "9 · 4.0 step/s"
    assert headless_text(found) == "progress: 9 steps · 4.0 steps/s"


def test_how_progress_reads() -> None:
    progress = ev.JobProgress(40, 128, 1, 2, 2.4, 36.4, at=0.0)
    assert short_text(progress, 0.0) == "40/128 · epoch 1/2 · 2.4 step/s · ETA 36s"
    assert short_text(progress, 10.0, 30) == "40/128 · 2.4 step/s · ETA 26s"  # counted down, shorter
    assert short_text(progress, 0.0, 17) == "40/128 · ETA 36s"
    assert short_text(progress, 0.0, 5) == "40/128"
    assert headless_text(progress) == "progress: 40/128 steps (31%) · epoch 1/2 · 2.4 steps/s · ETA 36s"
    assert format_rate(0.25) == "4.0 s/step" and format_rate(0.25, "steps") == "4.0 s/step"
    assert format_rate(12.34) == "12 step/s"
    assert (format_eta(5.4), format_eta(125), format_eta(3720)) == ("5s", "2m05s", "1h02m")


# ---------------------------------------------------------------------- headless throttling


def progress_at(step: int, at: float, total: int = 1000) -> ev.JobProgress:
    return ev.JobProgress(step, total, None, None, 1.0, float(total - step), at=at)


def test_headless_prints_progress_at_most_every_ten_seconds() -> None:
    printer = ProgressPrinter()
    printed = [p for p in (progress_at(s, s * 0.5) for s in range(0, 1000)) if printer.due(p)]  # 2 lines/s
    times = [p.at for p in printed]
    assert times[0] == 0.0
    assert all(b - a >= ProgressPrinter.MIN_GAP for a, b in zip(times, times[1:], strict=False))
    # Every 15 s, and at 25/50/75 % (steps 250, 500, 750: 125 s, 250 s, 375 s) once 10 s have passed.
    assert len(printed) <= 500 / 15 + 4 and len(printed) >= 500 / 25
    assert any(p.step // 250 > q.step // 250 for q, p in zip(printed, printed[1:], strict=False))
    last = printer.pending()
    assert last is not None and last.step == 999  # at the job's end: the latest, once
    assert printer.pending() is None


def test_a_quarter_crossed_is_printed_before_the_interval() -> None:
    printer = ProgressPrinter()
    assert printer.due(progress_at(0, 0.0, total=100))
    assert not printer.due(progress_at(24, 11.0, total=100))
    assert printer.due(progress_at(26, 12.0, total=100))  # 25 % crossed, 12 s > 10 s
    assert not printer.due(progress_at(51, 15.0, total=100))  # 50 % crossed, but 3 s after the last


def test_the_interval_grows_with_a_long_job() -> None:
    printer = ProgressPrinter()
    hours = [progress_at(s, s * 1.0, total=10**6) for s in range(0, 4 * 3600, 5)]
    printed = [p for p in hours if printer.due(p)]
    assert len(printed) < 4 * 3600 / 120  # 15 s at first, then 1/20 of the time so far (at most 5 min)


# ---------------------------------------------------------------------- the Stages panel


class StagesApp(App[None]):
    def compose(self) -> ComposeResult:
        yield StageList()


async def test_the_stages_panel_shows_progress_while_training_and_the_steps_after() -> None:
    app = StagesApp()
    async with app.run_test(size=(40, 12)) as pilot:
        stages = app.query_one(StageList)
        stages.apply(ev.StageChanged(Stage.TRAIN, StageState.RUNNING, at=1000.0))
        stages.apply(ev.JobProgress(40, 128, 1, 1, 2.4, 36.0, at=1010.0))
        stages.refresh_view(1012.0)
        await pilot.pause()
        lines = str(stages.visual).splitlines()
        train = lines.index(next(x for x in lines if " train " in x))
        assert "12s" in lines[train]  # the elapsed time stays
        assert lines[train + 1].strip() == "40/128 · 2.4 step/s · ETA 34s"
        assert len(lines) == 9
        stages.apply(ev.JobProgress(128, 128, 1, 1, 2.5, 0.0, at=1050.0))
        stages.apply(ev.StageChanged(Stage.TRAIN, StageState.DONE, "", 52.0, at=1052.0))
        stages.refresh_view(1053.0)
        await pilot.pause()
        lines = str(stages.visual).splitlines()
        assert len(lines) == 8
        train_line = next(x for x in lines if " train " in x)
        assert train_line.startswith("✓") and train_line.endswith("128/128 steps")


# ---------------------------------------------------------------------- real runs


async def test_a_real_job_s_progress_lines_become_events(progress_repo: Path) -> None:
    session = Session(load_config(progress_repo / "tb.yaml", ["params.steps=6", "params.pause=0.3"]),
                      root=progress_repo)
    seen = collect(session)
    assert await session.run() is ExitCode.OK
    progress = [e for e in seen if isinstance(e, ev.JobProgress)]
    assert progress and progress[-1].step == 6 and progress[-1].total == 6 and progress[-1].epochs == 1
    assert [p.step for p in progress] == sorted(p.step for p in progress)  # the not-a-protocol line is ignored
    rated = [p for p in progress if p.rate is not None]
    assert rated and all(0.5 < p.rate < 20 for p in rated), [p.rate for p in rated]  # ~3.3 steps/s
    assert progress[-1].eta == 0.0
    log = next(i for i, e in enumerate(seen) if isinstance(e, ev.LogLines) and "step=6 " in "\n".join(e.lines))
    assert seen.index(progress[-1]) > log  # each after its log lines
    done = [e for e in seen if isinstance(e, ev.StageChanged) and e.stage is Stage.TRAIN and e.state is StageState.DONE]
    assert done[0].detail == "6/6 steps"
    (record,) = [r.data for r in RunStore(progress_repo / ".trainboard").all()]
    assert record["stages"]["train"]["detail"] == "6/6 steps"  # attach shows it


def test_headless_prints_throttled_progress_for_a_burst_of_lines(progress_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.steps=3000"], cwd=progress_repo)
    assert proc.returncode == ExitCode.OK, proc.stderr
    printed = [x.strip() for x in proc.stdout.splitlines() if x.strip().startswith("progress:")]
    assert 1 <= len(printed) <= 2, printed  # 3000 lines in well under 10 s: the first and the last
    assert printed[-1].startswith("progress: 3000/3000 steps (100%) · epoch 1/1")
    assert proc.stdout.count("trainboard:progress step=") == 3001  # the log itself is streamed as it is
    assert "✓ train done" in proc.stdout and "3000/3000 steps" in proc.stdout


def test_headless_last_lines_say_the_verdict_the_report_and_the_exit_code(progress_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.steps=3"], cwd=progress_repo)
    assert proc.returncode == ExitCode.OK, proc.stderr
    *_, verdict, report, finished = proc.stdout.strip().splitlines()
    assert verdict.startswith("verdict: PASS")
    assert re.fullmatch(r"report: .*/\.trainboard/runs/[\w-]+/report\.md", report), report
    assert Path(report.removeprefix("report: ")).is_file()
    assert finished.startswith("finished: succeeded in ") and finished.endswith("(exit 0, OK)")

    failed = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.steps=3", "--set", "params.exit_code=3"],
                     cwd=progress_repo)
    assert failed.returncode == ExitCode.JOB_FAILED
    *_, verdict, report, finished = failed.stdout.strip().splitlines()
    assert verdict == "verdict: no comparison, the job failed (exit 3)"
    assert report.startswith("report: ") and report.endswith("report.md")
    assert finished.endswith("(exit 4, JOB_FAILED)")


def test_headless_last_lines_when_the_gate_fails() -> None:
    """The same lines from the events of a run whose gate failed and that wrote no report."""
    from trainboard.backend.compare import Comparison, ComparisonRow

    out = io.StringIO()
    view = HeadlessView(out=out, err=io.StringIO())
    row = ComparisonRow(key="f1", display="F1", goal="max", digits=4, before=0.9, after=0.7, gate="Δ ≥ -0.005",
                        passed=False,
                        reason="Δ -0.2 < -0.005")
    view(ev.ComparisonReady(Comparison("main", "abc", "main @ abc", (row,), final=True)))
    view(ev.RunFinished(int(ExitCode.GATE_FAILED), "gate-failed", 12.0))
    *_, verdict, report, finished = out.getvalue().strip().splitlines()
    assert verdict == "verdict: FAIL: gate failed for F1"
    assert report == "report: none written"
    assert finished == "finished: gate-failed in 12.0s (exit 1, GATE_FAILED)"


async def test_a_cancelled_run_shows_the_train_stage_cancelled_not_failed(repo: Path) -> None:
    session = Session(load_config(repo / "tb.yaml", ["params.sleep=30"]), root=repo)
    seen = collect(session)
    outcome, _ = await run_acting_at(session, "epoch 1", lambda: session.cancel("cancelled from the dashboard"))
    assert outcome is ExitCode.INTERRUPTED
    train = [e for e in seen if isinstance(e, ev.StageChanged) and e.stage is Stage.TRAIN]
    assert [(e.state, e.detail) for e in train] == [(StageState.RUNNING, ""), (StageState.SKIPPED, "cancelled")]
    assert not any(isinstance(e, ev.StageChanged) and e.state is StageState.FAILED for e in seen)
    record = RunStore(repo / ".trainboard").load(session.run_id).data
    assert record["status"] == "cancelled"
    assert record["stages"]["train"] == {**record["stages"]["train"], "state": "skipped", "detail": "cancelled"}

    out = io.StringIO()  # headless says so
    view = HeadlessView(out=out, err=io.StringIO())
    for event in seen:
        view(event)
    text = out.getvalue()
    assert "- train skipped: cancelled" in text and "✗ train" not in text
    assert "verdict: no comparison, the run was cancelled" in text
    assert text.strip().splitlines()[-1].endswith("(exit 130, INTERRUPTED)")


def test_attach_no_tui_of_a_finished_run_prints_it_in_run_order(progress_repo: Path) -> None:
    done = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.steps=3"], cwd=progress_repo)
    assert done.returncode == ExitCode.OK, done.stderr
    proc = run_cli(["attach", "--no-tui"], cwd=progress_repo)
    assert proc.returncode == ExitCode.OK, proc.stderr
    lines = proc.stdout.splitlines()

    def where(pattern: str) -> int:
        return next(i for i, x in enumerate(lines) if re.search(pattern, x))

    assert where(r"trainboard:progress step=3 ") < where(r"job exited 0") < where(r"│ F1 ") \
        < where(r"^verdict: PASS") < where(r"^report: ") < where(r"^finished: succeeded")
    assert "3/3 steps" in proc.stdout  # the train stage's detail, from the record

"""Metric lines: a job that prints `trainboard:metric f1=0.7 step=1` (and never imports MLflow)
has its values logged to its MLflow run by trainboard, shown, compared and recorded."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import git, make_tiny_repo
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.metriclines import parse_metric_line, read_points
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.backend.tracking import Tracking

# A shell job: two metric lines, a malformed one (stays a log line), progress beside them.
SHELL_JOB = textwrap.dedent("""\
    echo "trainboard:progress step=1 total=2"
    echo "trainboard:metric f1=0.7 loss=0.4 step=1"
    echo "trainboard:metric f1=oops step=2"
    echo "trainboard:progress step=2 total=2"
    echo "trainboard:metric f1=0.75 loss=0.25 step=2"
    echo "trainboard:metric note=1e-3"
    """)

CONFIG = textwrap.dedent("""\
    name: lines
    runner:
      kind: local
    job:
      command: bash job.sh
    mlflow:
      tracking_uri: sqlite:///.trainboard/mlflow.db
      experiment: lines
      poll_interval: 0.2
    metrics:
      f1: {display: F1, goal: max}
      loss: {display: Loss, goal: min}
    compare:
      base: main
      gates:
        f1: {min_delta: -0.005}
    """)


@pytest.mark.parametrize(("line", "parsed"), [
    ("trainboard:metric f1=0.81 loss=0.4 step=3", ({"f1": 0.81, "loss": 0.4}, 3)),
    ("trainboard:metric f1=0.81", ({"f1": 0.81}, 0)),
    ("trainboard:metric  step=7\tval/acc=1e-3 train.loss=-2 ", ({"val/acc": 0.001, "train.loss": -2.0}, 7)),
])
def test_a_metric_line_parses(line: str, parsed: tuple[dict[str, float], int]) -> None:
    assert parse_metric_line(line) == parsed


@pytest.mark.parametrize("line", [
    "trainboard:metric",  # no metric
    "trainboard:metric step=3",  # a step, no metric
    "trainboard:metric f1=oops",  # not a number
    "trainboard:metric f1=nan", "trainboard:metric f1=inf", "trainboard:metric f1=1_000",
    "trainboard:metric f1=0.8 loss",  # a token without '='
    "trainboard:metric f1=0.8 f1=0.9",  # a repeated key
    "trainboard:metric f1=0.8 step=1.5", "trainboard:metric f1=0.8 step=-1", "trainboard:metric f1=0.8 step=1 step=2",
    "trainboard:metric f(1)=0.8",  # a name MLflow refuses
    "trainboard:metrics f1=0.8", "INFO trainboard:metric f1=0.8", "trainboard:progress step=1",
])
def test_a_malformed_line_is_no_metric(line: str) -> None:
    assert parse_metric_line(line) is None
    assert read_points(line) == []


def test_points_of_a_batch_are_timed_when_read() -> None:
    points = read_points("epoch 1\ntrainboard:metric f1=0.5 step=2\ntrainboard:metric f1=x\n", at=12.5)
    assert points == [ev.MetricPoint("f1", 0.5, 2, 12500)]


def lines_repo(where: Path, empty_mlflow_db: Path) -> Path:
    """A git repository whose job is SHELL_JOB, with its MLflow store schema-ready."""
    repo = make_tiny_repo(where, {"job.sh": SHELL_JOB, "tb.yaml": CONFIG})
    (repo / ".trainboard").mkdir()
    shutil.copy(empty_mlflow_db, repo / ".trainboard" / "mlflow.db")
    return repo


async def test_a_shell_job_s_metric_lines_reach_mlflow_the_comparison_and_the_record(
        tmp_path: Path, empty_mlflow_db: Path) -> None:
    repo = lines_repo(tmp_path / "repo", empty_mlflow_db)
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    seen: list[ev.Event] = []
    session.subscribe(seen.append)
    assert await session.run() is ExitCode.OK
    # The views: the points as the lines arrived (before the job's end), each once.
    kinds = [type(e) for e in seen]
    first_points = kinds.index(ev.MetricPoints)
    assert first_points < kinds.index(ev.JobFinished)
    points = [p for e in seen if isinstance(e, ev.MetricPoints) for p in e.points]
    assert sorted((p.key, p.step, p.value) for p in points) == [
        ("f1", 1, 0.7), ("f1", 2, 0.75), ("loss", 1, 0.4), ("loss", 2, 0.25), ("note", 0, 0.001)]
    # MLflow: every value at its step, logged by trainboard (the job has no MLflow client).
    record = RunStore(repo / ".trainboard").all()[0]
    client = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "lines").client
    run_id = record.data["mlflow"]["run_id"]
    history = {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in ("f1", "loss")}
    assert history == {"f1": [(1, 0.7), (2, 0.75)], "loss": [(1, 0.4), (2, 0.25)]}
    assert client.get_run(run_id).data.metrics == {"f1": 0.75, "loss": 0.25, "note": 0.001}
    # The malformed line stays an ordinary log line, logged nowhere.
    log = (session.run_dir / "job.log").read_text()
    assert "trainboard:metric f1=oops step=2" in log and "trainboard:metric f1=0.7 loss=0.4 step=1" in log
    # The comparison and the record (its comparison, the kept metric history, the report).
    rows = {row.key: row.after for row in session.state.metrics.comparison.rows}
    assert rows == {"f1": pytest.approx(0.75), "loss": pytest.approx(0.25)}
    saved = json.loads((session.run_dir / "record.json").read_text())
    assert {r["key"]: r["after"] for r in saved["comparison"]["rows"]} == {"f1": 0.75, "loss": 0.25}
    kept = [json.loads(line) for line in (session.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted((p["key"], p["step"]) for p in kept) == [("f1", 1), ("f1", 2), ("loss", 1), ("loss", 2),
                                                           ("note", 0)]
    assert "| F1 | — | 0.7500 |" in (session.run_dir / "report.md").read_text()


async def test_metric_lines_make_a_baseline_and_are_gated_against_it(tmp_path: Path, empty_mlflow_db: Path) -> None:
    """The first run's printed values are the next run's baseline, and its gates read the printed values."""
    repo = lines_repo(tmp_path / "repo", empty_mlflow_db)
    assert await Session(load_config(repo / "tb.yaml"), root=repo).run() is ExitCode.OK
    git(repo, "checkout", "-q", "-b", "worse")
    (repo / "job.sh").write_text(SHELL_JOB.replace("f1=0.75", "f1=0.6"))
    git(repo, "commit", "-q", "-am", "worse")
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    assert await session.run() is ExitCode.GATE_FAILED
    comparison = session.state.metrics.comparison
    f1 = next(row for row in comparison.rows if row.key == "f1")
    assert (f1.before, f1.after) == (pytest.approx(0.75), pytest.approx(0.6))
    assert not comparison.passed


async def test_a_log_read_again_logs_only_the_values_the_run_does_not_have(tmp_path: Path,
                                                                          empty_mlflow_db: Path) -> None:
    """As on attach, which reads the job's log from its start: the values the run has already
    (same metric, step and value) are not logged again; a new one is."""
    from trainboard.backend.metriclines import MetricLines

    repo = lines_repo(tmp_path / "repo", empty_mlflow_db)
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    assert await session.run() is ExitCode.OK
    again = MetricLines(session.ctx)
    assert again.feed((session.run_dir / "job.log").read_text()) == []
    assert again.feed("trainboard:metric f1=0.9 step=3\ntrainboard:metric f1=0.7 step=1") == [
        ev.MetricPoint("f1", 0.9, 3, again.pending[0].timestamp)]
    await again.flush()
    assert again.logged == 1 and not again.pending
    client = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "lines").client
    history = client.get_metric_history(session.state.tracking.mlflow_run_id, "f1")
    assert [(m.step, m.value) for m in history] == [(1, 0.7), (2, 0.75), (3, 0.9)]

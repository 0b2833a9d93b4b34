"""The run's report (report.md) and its plot (metrics.png): the delta's marks, the sentence for
each status without a verdict, the table of evaluations, the plot's axes and the baseline's
curve read from a real MLflow store (with its fallback to a flat line)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, git
from trainboard.backend.baselines import HISTORY_TIMEOUT, baseline_history
from trainboard.backend.compare import compare
from trainboard.backend.config import RunConfig, load_config
from trainboard.backend.evaluations import EvaluationTable, evaluation_table, step_axis
from trainboard.backend.events import MetricPoint
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.plots import BaselineSeries, metrics_figure, metrics_plot
from trainboard.backend.report import ReportInput, no_comparison, render
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.backend.tracking import Baseline, Tracking, limit_http_client

# The Quick start's metrics, with an experiment named apart from the config.
CONFIG = TINY_CONFIG.replace("experiment: tiny", "experiment: intents-minilm").replace(
    "  loss: {display: Loss, goal: min}\n",
    "  precision: {display: Precision, goal: max}\n  loss: {display: Train loss, goal: min}\n",
)


@pytest.fixture
def config(tmp_path: Path) -> RunConfig:
    (tmp_path / "tb.yaml").write_text(CONFIG)
    return load_config(tmp_path / "tb.yaml").config


def report_input(config: RunConfig, **kw: object) -> ReportInput:
    """As runreport.write_report builds it."""
    fields: dict[str, object] = dict(
        name=config.name, run_id="20261125-230000-abcd", branch="main", commit="1a2b3c4d5e6f", dirty=False,
        runner="local", status=RunStatus.SUCCEEDED, job_exit_code=0, job_seconds=12.5, mlflow_run_id="f00",
        experiment=config.mlflow.experiment, comparison=None, params=config.params, baseline_params=None,
        plot=None, confusion_matrix=None, log_tail=[],
    )
    fields.update(kw)
    return ReportInput(**fields)  # type: ignore[arg-type]


def step_level(evaluations: int = 4, every: int = 32, loss_every: int = 8) -> list[MetricPoint]:
    """The example job's history: F1/precision and a fractional epoch at each evaluation
    (step = the global training step, 128 steps an epoch), train loss every few steps."""
    points = []
    for n in range(1, evaluations + 1):
        step = n * every
        points += [MetricPoint("f1", 0.5 + 0.01 * n, step, step), MetricPoint("precision", 0.6 + 0.01 * n, step, step),
                   MetricPoint("epoch", step / 128, step, step)]
    points += [MetricPoint("loss", 2.0 / s, s, s) for s in range(loss_every, evaluations * every + 1, loss_every)]
    return points


def epoch_level(epochs: int = 2) -> list[MetricPoint]:
    """The tiny job's history: every metric once an epoch, step = the epoch."""
    return [p for e in range(1, epochs + 1)
            for p in (MetricPoint("f1", 0.6 + 0.1 * e, e, e), MetricPoint("loss", 1.0 / e, e, e))]


# ------------------------------------------------------------------ the delta's marks


@pytest.mark.parametrize(("key", "before", "after", "cell"), [
    ("loss", 1.0, 0.1265, "| Train loss | 1.0000 | 0.1265 | -0.8735 ▼ | better |"),  # min goal, fell
    ("loss", 0.1, 0.3, "| Train loss | 0.1000 | 0.3000 | +0.2000 ▲ | worse |"),  # min goal, rose
    ("f1", 0.8, 0.7, "| F1 | 0.8000 | 0.7000 | -0.1000 ▼ | worse |"),  # max goal, fell
    ("f1", 0.7, 0.8, "| F1 | 0.7000 | 0.8000 | +0.1000 ▲ | better |"),  # max goal, rose
    ("precision", 0.5, 0.5, "| Precision | 0.5000 | 0.5000 | +0.0000 | same |"),
])
def test_the_delta_shows_its_direction_and_whether_that_is_better(config: RunConfig, key: str, before: float,
                                                                   after: float, cell: str) -> None:
    comp = compare(config, {key: after}, {key: before}, baseline_run_id="b00", baseline_label="main @ 1a2b3c4")
    text = render(report_input(config, comparison=comp))
    assert cell in text, text
    assert "| Metric | Before | After | Δ | Change | Gate | Result |" in text
    assert "▲ it rose, ▼ it fell" in text and "Train loss: lower is better" in text and "F1: higher is better" in text


def test_without_a_baseline_the_delta_has_no_marks(config: RunConfig) -> None:
    text = render(report_input(config, comparison=compare(config, {"f1": 0.7, "loss": 0.2}, None)))
    assert "| F1 | — | 0.7000 | — | — |" in text and "▲" not in text.split("Δ is After")[0].split("## Metrics")[1]


# ------------------------------------------------------------------ statuses without a verdict


@pytest.mark.parametrize(("status", "sentence"), [
    (RunStatus.CANCELLED, "No comparison: the run was cancelled before its metrics were compared."),
    (RunStatus.JOB_FAILED, "No comparison: the training job failed (exit 3), so its metrics were not compared."),
    (RunStatus.ERROR, "No comparison: trainboard stopped on an error before the metrics were compared."),
    (RunStatus.CONFIG_ERROR, "No comparison: the config was refused, so nothing ran."),
    (RunStatus.RUNNING, "No comparison: the run is still running; its metrics are compared when the job ends."),
    (RunStatus.DETACHED, "No comparison: the job is still running, detached; its metrics are compared when it ends."),
    (RunStatus.SUCCEEDED, "No comparison: the run succeeded, but no comparison was recorded."),
    (RunStatus.GATE_FAILED, "No comparison: the run failed a gate, but no comparison was recorded."),
    ("lost", "No comparison: the run ended as lost."),
])
def test_each_status_without_a_comparison_reads_as_a_sentence(config: RunConfig, status: str, sentence: str) -> None:
    text = render(report_input(config, status=status, job_exit_code=3))
    assert f"**{sentence}**" in text
    assert not [s for s in RunStatus if no_comparison(s).endswith(f"as {s}.")], "a status without its sentence"


def test_the_report_is_titled_with_the_experiment(config: RunConfig) -> None:
    assert render(report_input(config)).startswith("# trainboard report: tiny (experiment intents-minilm)\n")
    assert render(report_input(config, experiment="tiny")).startswith("# trainboard report: tiny\n")


async def test_a_cancelled_run_says_so_in_its_report(repo: Path) -> None:
    from trainboard.backend import events as ev

    session = Session(load_config(repo / "tb.yaml", ["params.epochs=50", "params.sleep=0.2"]), root=repo)

    def cancel_once_epoch_1_is_seen(event: ev.Event) -> None:  # its first epoch is in the run's history
        seen = {p.key for p in session.state.metrics.points if p.step == 1}
        if isinstance(event, ev.MetricPoints) and seen >= {"f1", "loss"}:
            session.cancel()

    session.subscribe(cancel_once_epoch_1_is_seen)
    assert await asyncio.wait_for(session.run(), 120) is ExitCode.INTERRUPTED
    (record,) = RunStore(repo / ".trainboard").all()
    text = (record.path / "report.md").read_text()
    assert "**No comparison: the run was cancelled before its metrics were compared.**" in text
    assert "## Evaluations" in text and "| Epoch | F1 | Loss |" in text  # steps within the 50 epochs: epochs
    assert "| 1 | 0.7000 | 1.0000 |" in text


# ------------------------------------------------------------------ the table of evaluations


def test_step_level_evaluations_show_step_epoch_and_the_latest_train_loss(config: RunConfig) -> None:
    table = evaluation_table(config, step_level(), {"f1": 0.7, "precision": 0.65, "loss": 0.02})
    assert isinstance(table, EvaluationTable) and table.total == 4 and table.between == ("loss",)
    text = render(report_input(config, evaluations=table))
    assert ("4 evaluations of the followed metrics. Train loss: the latest value logged at each evaluation's "
            "step.") in text
    assert "| Step | Epoch | F1 | Precision | Train loss |" in text
    assert "| 32 | 0.25 | 0.5100 | 0.6100 | 0.0625 |" in text  # loss logged at step 32 too
    assert "| 128 | 1 | 0.5400 | 0.6400 | 0.0156 |" in text
    assert "| Baseline (final) |  | 0.7000 | 0.6500 | 0.0200 |" in text
    assert "| 8 |" not in text  # train loss alone makes no row


def test_train_loss_between_evaluations_is_the_latest_before_the_step(config: RunConfig) -> None:
    table = evaluation_table(config, step_level(every=30, loss_every=7), None)
    assert table is not None and table.baseline is None
    row = table.rows[0]
    assert (row.step, row.epoch) == (30, pytest.approx(30 / 128))
    assert row.values[2] == pytest.approx(2.0 / 28)  # loss last logged at step 28


def test_the_evaluation_steps_are_those_of_the_metrics_logged_together(config: RunConfig) -> None:
    # No epoch metric, one metric a cadence: the sparser one is evaluated, the other logged between.
    points = [MetricPoint("f1", 0.5, s, s) for s in (40, 80)]
    points += [MetricPoint("loss", 1.0, s, s) for s in range(5, 81, 5)]
    table = evaluation_table(config, points, None)
    assert table is not None and [r.step for r in table.rows] == [40, 80] and table.between == ("loss",)
    # The epoch metric marks the evaluations, even when it was read at some of them only.
    points += [MetricPoint("epoch", 0.5, 10, 10)] + [MetricPoint("precision", 0.6, s, s) for s in (10, 20)]
    table = evaluation_table(config, points, None)
    assert table is not None and [r.step for r in table.rows] == [10, 20] and table.between == ("f1", "loss")
    assert [r.values for r in table.rows] == [(None, 0.6, 1.0), (None, 0.6, 1.0)]


def test_epoch_level_evaluations_have_one_epoch_column(config: RunConfig) -> None:
    table = evaluation_table(config, epoch_level(), {"f1": 0.75})
    assert table is not None and table.axis.steps_are_epochs
    text = render(report_input(config, evaluations=table))
    assert "| Epoch | F1 | Train loss |" in text
    assert "| 1 | 0.7000 | 1.0000 |" in text and "| 2 | 0.8000 | 0.5000 |" in text
    assert "| Baseline (final) | 0.7500 | — |" in text
    assert "2 evaluations of the followed metrics." in text


def test_steps_beyond_the_epochs_asked_for_are_steps(config: RunConfig) -> None:
    points = [MetricPoint("f1", 0.5, s, s) for s in (10, 20, 30)]
    table = evaluation_table(config, points, None)
    assert table is not None and table.axis.label == "step" and not table.axis.knows_epochs
    text = render(report_input(config, evaluations=table))
    assert "| Step | F1 |" in text and "| 20 | 0.5000 |" in text


def test_a_long_history_shows_its_first_and_last_evaluations(config: RunConfig) -> None:
    table = evaluation_table(config, step_level(evaluations=50, every=10, loss_every=5), None)
    assert table is not None and table.total == 50 and table.omitted == 30 and len(table.rows) == 20
    assert [r.step for r in table.rows[:2]] == [10, 20] and table.rows[-1].step == 500
    text = render(report_input(config, evaluations=table))
    assert "50 evaluations of the followed metrics; the first 10 and the last 10 shown" in text
    lines = text.splitlines()
    gap = lines.index("| … 30 more | | | | |")
    assert lines[gap - 1].startswith("| 100 |") and lines[gap + 1].startswith("| 410 |")


def test_no_followed_metric_no_table(config: RunConfig) -> None:
    assert evaluation_table(config, [MetricPoint("accuracy", 0.5, 1, 1)], None) is None


def test_the_epoch_metric_maps_every_step() -> None:
    axis = step_axis([MetricPoint("epoch", 0.5, 64, 1), MetricPoint("epoch", 1.0, 128, 2)], {}, ["f1"])
    assert axis.label == "epoch" and not axis.steps_are_epochs
    assert [axis.x(s) for s in (0, 32, 64, 96, 128, 192)] == [0, 0.25, 0.5, 0.75, 1.0, 1.5]


# ------------------------------------------------------------------ the plot


def test_the_plot_labels_epochs_titles_panels_and_keeps_the_baseline_in_view(config: RunConfig) -> None:
    baseline = BaselineSeries({"f1": 0.9, "precision": 0.4, "loss": 1.5}, name="baseline (main @ 1a2b3c4)")
    fig = metrics_figure(config, step_level(), baseline)
    assert fig is not None
    assert fig.get_suptitle() == "tiny (experiment intents-minilm)"
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["F1", "Precision", "Train loss"]
    assert {ax.get_xlabel() for ax in panels} == {"epoch"}
    f1, precision, loss = panels
    assert f1.get_ylim()[0] < 0.51 and f1.get_ylim()[1] > 0.9  # the baseline's 0.9 is not clipped
    assert precision.get_ylim()[0] < 0.4
    assert loss.get_ylim()[1] > 1.5
    (run_line, _flat) = f1.get_lines()
    assert list(run_line.get_xdata()) == [0.25, 0.5, 0.75, 1.0] and run_line.get_marker() == "o"
    legend = [t.get_text() for t in f1.get_legend().get_texts()]
    assert legend == ["this run", "baseline (main @ 1a2b3c4): final value"]


def test_epoch_level_steps_are_labelled_epoch_and_one_point_says_its_value(config: RunConfig, tmp_path: Path) -> None:
    fig = metrics_figure(config, epoch_level(epochs=1), None)
    assert fig is not None
    f1 = fig.axes[0]
    assert f1.get_xlabel() == "epoch"
    assert [t.get_text() for t in f1.texts] == ["0.7000 at epoch 1"]
    steps = metrics_figure(config, [MetricPoint("f1", 0.5, s, s) for s in (100, 200)], None)
    assert steps is not None and steps.axes[0].get_xlabel() == "step"
    dest = metrics_plot(config, epoch_level(), None, tmp_path / "metrics.png")
    assert dest is not None and dest.read_bytes().startswith(b"\x89PNG") and dest.stat().st_size > 1000


def test_the_baseline_history_is_drawn_as_a_curve_on_the_same_axis(config: RunConfig) -> None:
    old = epoch_level(epochs=2)  # an older run: step = epoch
    baseline = BaselineSeries({"f1": 0.8, "loss": 0.5}, history=tuple(old), params={"epochs": "2"}, name="baseline")
    fig = metrics_figure(config, step_level(evaluations=8), baseline)
    assert fig is not None
    f1 = fig.axes[0]
    run_line, base_line = f1.get_lines()
    assert list(base_line.get_xdata()) == [1, 2] and list(base_line.get_ydata()) == pytest.approx([0.7, 0.8])
    assert base_line.get_linestyle() == "--" and base_line.get_label() == "baseline"
    assert f1.get_xlabel() == "epoch" and max(run_line.get_xdata()) == 2.0
    # A baseline whose steps are training steps while this run's are epochs: its final value only.
    steps = BaselineSeries({"f1": 0.8}, history=tuple(MetricPoint("f1", 0.8, s, s) for s in (100, 200)))
    fig = metrics_figure(config, epoch_level(), steps)
    assert fig is not None and fig.axes[0].get_legend().get_texts()[1].get_text() == "baseline: final value"


# ------------------------------------------------------------------ the baseline's history from MLflow


def store_with_runs(repo: Path) -> tuple[str, str]:
    """The repository's MLflow store (a real SQLite one) holding a base-branch run with a history."""
    uri = f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}"
    client = Tracking(uri, "tiny").client
    run_id = client.create_run(client.create_experiment("tiny")).info.run_id
    for step in (32, 64, 96, 128):
        client.log_metric(run_id, "f1", step / 200, step=step, timestamp=step)
        client.log_metric(run_id, "epoch", step / 128, step=step, timestamp=step)
        client.log_metric(run_id, "accuracy", 0.1, step=step, timestamp=step)  # not followed: not read
    return uri, run_id


def session_with(repo: Path, uri: str, baseline: Baseline) -> Session:
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    session.state.tracking.client = Tracking(uri, "tiny")
    session.state.metrics.baseline = baseline
    return session


async def test_the_baseline_history_is_read_once_from_mlflow(repo: Path) -> None:
    uri, run_id = store_with_runs(repo)
    session = session_with(repo, uri, Baseline(run_id, {"f1": 0.64}, {}, "1a2b3c4", ""))
    history = await baseline_history(session.ctx)
    assert history is not None and history.note == ""
    assert sorted((p.key, p.step) for p in history.points if p.key == "f1") == [
        ("f1", 32), ("f1", 64), ("f1", 96), ("f1", 128)]
    assert {p.key for p in history.points} == {"f1", "epoch"}
    (repo / ".trainboard" / "mlflow.db").unlink()  # read once: the store is not asked again
    assert await baseline_history(session.ctx) is history


@pytest.mark.parametrize(("case", "note"), [
    ("unreachable", "its history could not be read: connection refused"),
    ("git notes", "the baseline (merge base, from git notes) keeps final values only"),
    ("git notes, another store", "the baseline (merge base, from git notes) keeps final values only"),
    ("not opened", "its history was not read: MLflow was not opened for this run"),
    ("stale", "its history was not read: MLflow is not answering"),
    ("no history", "MLflow holds no history of the followed metrics for its run "),
    ("unknown run", "MLflow holds no history of the followed metrics for its run 0000"),
])
async def test_without_its_history_the_baseline_is_a_flat_line_and_the_report_says_why(
        repo: Path, case: str, note: str) -> None:
    from trainboard.backend import events as ev

    uri, run_id = store_with_runs(repo)
    client = Tracking(uri, "tiny").client
    bare = client.create_run(client.get_experiment_by_name("tiny").experiment_id).info.run_id
    ids = {"git notes": "", "no history": bare, "unknown run": "0" * 32, "git notes, another store": "1" * 32}
    source = "merge base, from git notes" if case.startswith("git notes") else ""
    session = session_with(repo, uri, Baseline(ids.get(case, run_id), {"f1": 0.64}, {}, "1a2b3c4", "", source=source))
    if case == "stale":
        session.state.metrics.stale = ev.MetricsStale(0.0, "MLflow unreachable: connection refused")
    if case == "not opened":
        session.state.tracking.client = None
    restore = limit_http_client()
    try:
        if case == "unreachable":
            session.state.tracking.client = Tracking(f"http://127.0.0.1:{closed_port()}", "tiny")
        began = time.monotonic()
        history = await baseline_history(session.ctx)
    finally:
        restore()
    assert time.monotonic() - began < HISTORY_TIMEOUT
    assert history is not None and history.points == () and history.note.startswith(note), history
    text = render(report_input(session.config, plot="metrics.png", baseline_curve=history.note))
    assert f"The baseline (dashed) is drawn at its final value: {history.note}." in text


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_second_run_reports_its_evaluations_and_the_baseline_curve(repo: Path) -> None:
    first = Session(load_config(repo / "tb.yaml"), root=repo)
    assert await first.run() is ExitCode.OK
    second = Session(load_config(repo / "tb.yaml", ["params.base_f1=0.65"]), root=repo)
    assert await second.run() is ExitCode.OK
    text = (second.store.runs / second.run_id / "report.md").read_text()
    assert "| F1 | 0.8000 | 0.8500 | +0.0500 ▲ | better |" in text
    assert "| Loss | 0.5000 | 0.5000 | +0.0000 | same |" in text
    assert "| Epoch | F1 | Loss |" in text and "| 1 | 0.7500 | 1.0000 |" in text
    assert "| Baseline (final) | 0.8000 | 0.5000 |" in text
    assert "The baseline (dashed) is its run's curve." in text
    assert second.state.metrics.baseline_history is not None
    assert sorted(p.step for p in second.state.metrics.baseline_history.points if p.key == "f1") == [1, 2]
    assert (second.store.runs / second.run_id / "metrics.png").stat().st_size > 1000


STEP_JOB = """
import os
from mlflow.tracking import MlflowClient
client, run_id = MlflowClient(), os.environ["MLFLOW_RUN_ID"]
for step in range(1, 65):  # one epoch of 64 steps: train loss every 4, an evaluation every 16
    if step % 4 == 0:
        client.log_metric(run_id, "loss", 2.0 / step, step=step)
    if step % 16 == 0:
        client.log_metric(run_id, "f1", 0.5 + step / 640, step=step)
        client.log_metric(run_id, "epoch", step / 64, step=step)
"""


async def test_a_step_level_job_reports_steps_and_epochs(repo: Path) -> None:
    (repo / "job.py").write_text(STEP_JOB)
    git(repo, "commit", "-qam", "a job that logs at its training steps")
    session = Session(load_config(repo / "tb.yaml", ["params.epochs=1"]), root=repo)
    assert await session.run() is ExitCode.OK
    text = (session.store.runs / session.run_id / "report.md").read_text()
    assert "4 evaluations of the followed metrics. Loss: the latest value logged at each evaluation's step." in text
    assert "| Step | Epoch | F1 | Loss |" in text
    assert "| 16 | 0.25 | 0.5250 | 0.1250 |" in text and "| 64 | 1 | 0.6000 | 0.0312 |" in text
    fig = metrics_figure(session.config, session.state.metrics.points, None)
    assert fig is not None and [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0.25, 0.5, 0.75, 1.0]

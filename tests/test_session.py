"""The whole run on the local runner, with real subprocess jobs and MLflow's SQLite store."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIG, git, interrupt_run, make_example_repo, run_acting_at, run_cli
from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.backend.store import RunStore
from trainboard.backend.tracking import Tracking


def records(repo: Path) -> list[dict]:
    return [r.data for r in RunStore(repo / ".trainboard").all()]


def mlflow_run(repo: Path, run_id: str):
    uri = f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}"
    return Tracking(uri, "tiny").client.get_run(run_id)


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def collect(session: Session) -> list[ev.Event]:
    seen: list[ev.Event] = []
    session.subscribe(seen.append)
    return seen


async def test_run_publishes_the_stages_in_order(tiny_repo: Path) -> None:
    session = Session(load_config(tiny_repo / "tb.yaml", ["params.epochs=3"]), root=tiny_repo)
    seen = collect(session)
    outcome = await session.run()
    assert outcome is ExitCode.OK
    assert isinstance(seen[1], ev.RunStarted) and isinstance(seen[-1], ev.RunFinished)
    done = [e.stage for e in seen if isinstance(e, ev.StageChanged) and e.state is StageState.DONE]
    assert done == list(Stage)
    lines = [line for e in seen if isinstance(e, ev.LogLines) and e.source == "job" for line in e.lines]
    assert [line for line in lines if line.startswith("epoch")] == [
        "epoch 1: f1=0.700", "epoch 2: f1=0.800", "epoch 3: f1=0.900"
    ]
    setup = [line for e in seen if isinstance(e, ev.LogLines) and e.source == "setup" for line in e.lines]
    assert "preparing" in setup
    # Every metric point is published once: never the same (key, step) twice.
    points = [(p.key, p.step) for e in seen if isinstance(e, ev.MetricPoints) for p in e.points]
    assert len(points) == len(set(points))
    assert ("f1", 3) in points
    final = [e for e in seen if isinstance(e, ev.ComparisonReady) and e.comparison.final]
    assert len(final) == 1 and final[0].comparison.rows[0].after == pytest.approx(0.9)


def test_cli_run_record_report_and_mlflow(tiny_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2: f1=0.800" in proc.stdout
    assert "no baseline yet" in proc.stdout
    (record,) = records(tiny_repo)
    assert record["status"] == "succeeded" and record["exit_code"] == 0 and record["job_exit_code"] == 0
    run_dir = tiny_repo / ".trainboard" / "runs" / record["run_id"]
    assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.8)}
    assert (run_dir / "job.log").read_text().count("epoch") == 2
    report = (run_dir / "report.md").read_text()
    assert "| F1 | — | 0.8000 |" in report
    assert "![metrics per step](metrics.png)" in report and (run_dir / "metrics.png").stat().st_size > 1000
    run = mlflow_run(tiny_repo, record["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.git.branch"] == "main"
    assert run.data.tags["mlflow.source.git.commit"] == git(tiny_repo, "rev-parse", "HEAD").strip()
    assert run.data.tags["trainboard.run_id"] == record["run_id"]
    assert run.data.params["epochs"] == "2"
    assert run.data.metrics["f1"] == pytest.approx(0.8)


def test_second_run_is_compared_with_the_first_and_gates_fail(tiny_repo: Path) -> None:
    assert run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo).returncode == 0
    git(tiny_repo, "checkout", "-q", "-b", "worse")
    worse = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.base_f1=0.5"], cwd=tiny_repo)
    assert worse.returncode == ExitCode.GATE_FAILED, worse.stdout + worse.stderr
    assert "FAIL: gate failed for F1" in worse.stdout
    first, second = records(tiny_repo)
    assert second["status"] == "gate-failed"
    report = (tiny_repo / ".trainboard" / "runs" / second["run_id"] / "report.md").read_text()
    assert "| F1 | 0.8000 | 0.7000 | -0.1000 ▼ |" in report
    assert "| `base_f1` | `0.6` | `0.5` |" in report  # params changed against the baseline
    # `trainboard compare` is the pre-merge check: non-zero on a failed gate.
    comp = run_cli(["compare", second["run_id"][:17]], cwd=tiny_repo)
    assert comp.returncode == ExitCode.GATE_FAILED and "FAIL" in comp.stdout
    assert run_cli(["compare", first["run_id"]], cwd=tiny_repo).returncode == 0
    listing = run_cli(["runs"], cwd=tiny_repo)
    assert first["run_id"] in listing.stdout and "gate-failed" in listing.stdout
    better = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.base_f1=0.7"], cwd=tiny_repo)
    assert better.returncode == 0
    assert "+0.1000" in better.stdout


def test_failing_job_exits_4_and_marks_mlflow_failed(tiny_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.exit_code=3"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.JOB_FAILED
    assert "the job exited with code 3" in proc.stderr
    (record,) = records(tiny_repo)
    assert record["status"] == "job-failed" and record["job_exit_code"] == 3
    assert record["stages"]["collect"]["state"] == "done"
    assert mlflow_run(tiny_repo, record["mlflow"]["run_id"]).info.status == "FAILED"
    report = (tiny_repo / ".trainboard" / "runs" / record["run_id"] / "report.md").read_text()
    assert "epoch 2: f1=0.800" in report  # the log's last lines say what happened


def test_failing_setup_stops_before_training(tiny_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.setup=['echo one', 'exit 7', 'echo never']"],
                   cwd=tiny_repo)
    assert proc.returncode == ExitCode.JOB_FAILED
    assert "setup failed with exit code 7" in proc.stderr
    assert "never" not in proc.stdout
    (record,) = records(tiny_repo)
    assert "train" not in record["stages"] and record["stages"]["sync"]["state"] == "failed"


def test_job_timeout_stops_the_job(tiny_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.timeout_minutes=0.02",
                    "--set", "params.sleep=30"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.JOB_FAILED
    assert "job.timeout_minutes" in proc.stderr
    (record,) = records(tiny_repo)
    assert not group_alive(record["job"]["pid"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("stage", ["setup", "train"])
def test_signal_tears_down_and_leaves_no_job(tiny_repo: Path, sig: signal.Signals, stage: str) -> None:
    overrides = ["params.sleep=60"] if stage == "train" else ["job.setup=['echo setting-up; sleep 60']"]
    marker = "epoch 1" if stage == "train" else "setting-up"
    proc = interrupt_run(tiny_repo, overrides, marker, sig)
    assert proc.returncode == ExitCode.INTERRUPTED, proc.stdout + proc.stderr
    (record,) = records(tiny_repo)
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert record["stages"]["teardown"]["state"] == "done"
    failed = [name for name, info in record["stages"].items() if info["state"] == "failed"]
    assert failed == []  # cancelled, not failed (issue 12), in whichever stage the signal came
    cut = record["stages"]["train" if stage == "train" else "sync"]
    assert (cut["state"], cut["detail"]) == ("skipped", "cancelled")
    time.sleep(0.2)
    assert not group_alive(record[stage if stage == "setup" else "job"]["pid"]), "the job outlived the run"
    if stage == "train":
        assert mlflow_run(tiny_repo, record["mlflow"]["run_id"]).info.status == "KILLED"


def test_poll_cost_is_one_point_per_key_whatever_the_history(tiny_repo: Path) -> None:
    uri = f"sqlite:///{tiny_repo / 'mlflow.db'}"
    tracking = Tracking(uri, "history")
    run_id = tracking.create_run("h", {}, {"a": 1})
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric("loss", 1.0 / (i + 1), now + i, i) for i in range(900)]
    for start in range(0, len(batch), 300):
        tracking.client.log_batch(run_id, metrics=batch[start : start + 300])
    tracking.client.log_metric(run_id, "f1", 0.5, step=1)
    latest = tracking.latest(run_id)
    assert sorted((p.key, p.step) for p in latest) == [("f1", 1), ("loss", 899)]
    from trainboard.backend.tracking import MetricCursor

    cursor = MetricCursor()
    assert len(cursor.newer(latest)) == 2
    assert cursor.newer(tracking.latest(run_id)) == []  # nothing new: nothing published
    tracking.client.log_metric(run_id, "f1", 0.6, step=2)
    assert [(p.key, p.step) for p in cursor.newer(tracking.latest(run_id))] == [("f1", 2)]


def test_workdir_missing_is_a_config_error_that_starts_nothing(tiny_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.workdir=nope"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "job.workdir" in proc.stderr
    assert not (tiny_repo / ".trainboard" / "runs").exists()


@pytest.mark.slow
def test_the_real_example_trains_minilm(tmp_path: Path) -> None:
    """The bundled example, end to end, on a tiny slice: real MiniLM, real MLflow."""
    repo = make_example_repo(tmp_path / "project")
    proc = run_cli(["run", "sample_params.yaml", "--no-tui", "--set", "params.max_train_samples=48",
                    "--set", "params.max_eval_samples=48"], cwd=repo, timeout=600)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
    (record,) = records(repo)
    run_dir = repo / ".trainboard" / "runs" / record["run_id"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["f1"] <= 1.0
    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000
    assert (run_dir / "workspace" / "model" / "config.json").exists()
    run = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "intents-minilm").client.get_run(
        record["mlflow"]["run_id"]
    )
    assert set(run.data.metrics) >= {"f1", "precision", "recall", "loss"}
    report = (run_dir / "report.md").read_text()
    assert "![confusion matrix](confusion_matrix.png)" in report


def test_outside_git_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "tb.yaml").write_text(TINY_CONFIG)
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tmp_path)
    assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stdout + proc.stderr
    assert "is not inside a git repository" in proc.stderr and "fix:" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb.yaml"]  # no .trainboard, no copy


def test_secrets_never_reach_events_or_the_report(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "ghp_" + "Z9" * 18
    secret = "s3cr3t-value-123"
    job = 'import os; print("token", os.environ["GITHUB_TOKEN"]); print("pw", os.environ["DB_PASSWORD"])'
    loaded = load_config(tiny_repo / "tb.yaml", [f"job.command=python -c '{job}'", "job.env.DB_PASSWORD=" + secret])
    monkeypatch.setenv("GITHUB_TOKEN", token)
    session = Session(loaded, root=tiny_repo)
    seen = collect(session)
    import asyncio

    asyncio.run(session.run())
    text = "\n".join(line for e in seen if isinstance(e, ev.LogLines) for line in e.lines)
    assert "token ***" in text and "pw ***" in text
    assert token not in text and secret not in text
    report = (session.run_dir / "report.md").read_text()
    assert token not in report and secret not in report and "token ***" in report


async def test_detach_leaves_the_job_running_and_attach_finishes_the_run(tiny_repo: Path) -> None:
    session = Session(load_config(tiny_repo / "tb.yaml", ["params.sleep=1.5", "params.epochs=3"]), root=tiny_repo)
    outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
    assert detached == [True] and outcome is ExitCode.DETACHED
    (record,) = records(tiny_repo)
    assert record["status"] == "detached" and record["stages"]["train"]["state"] == "running"
    assert group_alive(record["job"]["pid"]), "detach must leave the job running"
    # `trainboard attach` follows it to its end: the log once, then collect, compare, report.
    proc = run_cli(["attach", record["run_id"], "--no-tui"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("epoch")] == [
        "epoch 1: f1=0.700", "epoch 2: f1=0.800", "epoch 3: f1=0.900"
    ]
    (record,) = records(tiny_repo)
    assert record["status"] == "succeeded" and record["job_exit_code"] == 0
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.9)
    assert mlflow_run(tiny_repo, record["mlflow"]["run_id"]).info.status == "FINISHED"
    history = (tiny_repo / ".trainboard" / "runs" / record["run_id"] / "metrics.jsonl").read_text()
    assert sorted(json.loads(line)["step"] for line in history.splitlines() if '"f1"' in line) == [1, 2, 3]


def test_attach_to_a_finished_run_shows_it_and_changes_nothing(tiny_repo: Path) -> None:
    assert run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.exit_code=0"], cwd=tiny_repo).returncode == 0
    (before,) = records(tiny_repo)
    proc = run_cli(["attach", "--no-tui"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "epoch 2: f1=0.800" in proc.stdout and "no baseline yet" in proc.stdout
    assert "finished: succeeded" in proc.stdout
    (after,) = records(tiny_repo)
    assert after == before
    assert run_cli(["attach", "nope", "--no-tui"], cwd=tiny_repo).returncode == ExitCode.CONFIG_ERROR


def test_a_finished_run_without_the_followed_metrics_is_no_baseline(tiny_repo: Path) -> None:
    empty = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.command=python -c pass",
                     "--set", "job.outputs=[]"], cwd=tiny_repo)
    # A gated metric the job did not log fails the gate, but the MLflow run itself FINISHED.
    assert empty.returncode == ExitCode.GATE_FAILED and "not logged by the job" in empty.stdout
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    assert "baseline: none yet on main" in proc.stdout
    third = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo)
    (_, second, _) = records(tiny_repo)
    assert f"(run {second['run_id']})" in third.stdout  # the run with metrics is the baseline

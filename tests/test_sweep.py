"""Sweeps end to end: real members (the tiny job, and the bundled example), MLflow parent and
child runs, the best member and the verdict rule, a failing member, cancel, and a bad value
that starts nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import make_example_repo, run_cli

from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_events import MemberChanged
from trainboard.backend.sweep_record import MemberInfo, SweepStore
from trainboard.backend.sweep_spec import plan
from trainboard.backend.sweep_verdict import best_member, sweep_exit
from trainboard.backend.tracking import Tracking


def make_sweep(repo: Path, sweeps: list[str], overrides: list[str] = (), config: str = "tb.yaml") -> Sweep:
    loaded = load_config(repo / config, list(overrides))
    members, configs = plan(loaded, sweeps, repo)
    return Sweep(loaded, members, configs, root=repo)


def member_records(repo: Path) -> list[dict]:
    runs = repo / ".trainboard" / "runs"
    return [json.loads((p / "record.json").read_text()) for p in sorted(runs.iterdir())] if runs.exists() else []


def children(repo: Path, experiment: str, parent: str) -> list:
    client = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", experiment).client
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


async def test_members_run_in_parallel_as_children_of_one_mlflow_run_and_the_best_wins(repo: Path) -> None:
    sweep = make_sweep(repo, ["params.base_f1=0.5,0.7,0.6"], ["sweep.max_parallel=2", "params.sleep=0.4"])
    seen: list[MemberChanged] = []
    sweep.subscribe(lambda e: seen.append(e) if isinstance(e, MemberChanged) else None)
    most_at_once = 0

    def count(_: object) -> None:  # jobs at once (after its job a member's slot is the next one's)
        nonlocal most_at_once
        most_at_once = max(most_at_once, len([m for m in sweep.running if m.info.stage == "train"]))

    sweep.subscribe(count)
    assert await sweep.run() is ExitCode.OK  # no baseline yet: the best member's gates pass
    data = SweepStore(repo / ".trainboard").load(sweep.sweep_id)
    assert most_at_once == 2
    assert [m.status for m in data.members] == ["succeeded"] * 3
    assert data.best == 1 and data.members[1].values == {"params.base_f1": "0.7"}
    assert data.members[1].objective == pytest.approx(0.9)
    assert data.verdict.startswith("best: params.base_f1=0.7 · f1 0.9000")
    records = member_records(repo)
    assert sorted(r["sweep"]["index"] for r in records) == [0, 1, 2]
    assert {r["sweep"]["id"] for r in records} == {sweep.sweep_id}
    assert all(r["status"] == "succeeded" and r.get("pull_request") is None for r in records)
    kids = children(repo, "tiny", data.parent_run_id)
    assert len(kids) == 3
    assert {k.data.tags["trainboard.sweep.params.base_f1"] for k in kids} == {"0.5", "0.7", "0.6"}
    assert {k.data.tags["trainboard.sweep_id"] for k in kids} == {sweep.sweep_id}
    best = [k for k in kids if k.data.tags.get("trainboard.sweep.best") == "true"]
    assert [k.info.run_id for k in best] == [data.members[1].mlflow_run_id]
    parent = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "tiny").client.get_run(data.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_f1"] == pytest.approx(0.9)
    statuses = [(e.index, e.status) for e in seen if e.status != "running"]
    assert sorted(statuses) == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded")]

    # The next sweep compares with the best member of this one (only the best is a baseline).
    again = make_sweep(repo, ["params.base_f1=0.65,0.75"])
    assert await again.run() is ExitCode.OK  # its best, 0.95, against that 0.9
    second = SweepStore(repo / ".trainboard").load(again.sweep_id)
    assert [m.delta for m in second.members] == [pytest.approx(-0.05), pytest.approx(0.05)]


async def test_a_failing_member_does_not_stop_the_others(repo: Path) -> None:
    sweep = make_sweep(repo, ["params.exit_code=3,0"], ["sweep.max_parallel=2"])
    assert await sweep.run() is ExitCode.OK
    data = sweep.data
    assert [m.status for m in data.members] == ["job-failed", "succeeded"]
    assert data.members[0].exit_code == ExitCode.JOB_FAILED and "exited with code 3" in data.members[0].reason
    assert data.best == 1


async def test_every_member_failing_is_a_job_failure(repo: Path) -> None:
    sweep = make_sweep(repo, ["params.exit_code=3,5"], ["sweep.max_parallel=2"])
    assert await sweep.run() is ExitCode.JOB_FAILED
    assert sweep.data.best is None and sweep.data.verdict.startswith("no best member")


async def test_on_the_local_runner_the_next_member_is_ready_before_a_slot_frees(repo: Path) -> None:
    """max_parallel jobs at a time, and the next members check, sync and make their MLflow run
    meanwhile (queued to the views), so that a job follows the one before without waiting for them."""
    sweep = make_sweep(repo, ["params.base_f1=0.5,0.6,0.7"], ["sweep.max_parallel=1", "params.sleep=1"])
    seen: list[MemberChanged] = []
    sweep.subscribe(lambda e: seen.append(e) if isinstance(e, MemberChanged) else None)
    assert await sweep.run() is ExitCode.OK
    records = sorted(member_records(repo), key=lambda r: r["sweep"]["index"])
    train = [(r["stages"]["train"]["started_at"], r["stages"]["train"]["started_at"] + r["stages"]["train"]["elapsed"])
             for r in records]
    for (_, end), (start, _) in zip(train, train[1:], strict=False):
        assert start >= end - 0.01  # one job at a time
    for before_end, record in zip([end for _, end in train], records[1:], strict=False):
        assert record["stages"]["sync"]["started_at"] < before_end  # ready while the job before ran
        assert record["mlflow"]["run_id"]
    # The views saw each member queued, then running from its job on: no stage of its preparation.
    assert [(e.index, e.status, e.stage) for e in seen if e.index == 2 and e.status != "succeeded"] == [
        (2, "running", ""), (2, "running", "train"), (2, "running", "collect"), (2, "running", "compare"),
        (2, "running", "report"), (2, "running", "teardown")]


async def test_cancel_stops_every_member_and_launches_no_more(repo: Path) -> None:
    sweep = make_sweep(repo, ["params.base_f1=0.5,0.6,0.7,0.8"], ["sweep.max_parallel=2", "params.sleep=5"])

    def cancel_once_training(event: object) -> None:
        if isinstance(event, MemberChanged) and event.stage == "train":
            sweep.cancel("cancelled by the test")

    sweep.subscribe(cancel_once_training)
    code = await asyncio.wait_for(sweep.run(), 60)
    assert code is ExitCode.INTERRUPTED
    data = SweepStore(repo / ".trainboard").load(sweep.sweep_id)
    statuses = [m.status for m in data.members]
    assert statuses[2:] == ["skipped", "skipped"] and set(statuses[:2]) == {"cancelled"}
    assert data.reason == "cancelled by the test" and data.status == "cancelled"
    assert all(r["status"] == "cancelled" for r in member_records(repo))
    parent = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "tiny").client.get_run(data.parent_run_id)
    assert parent.info.status == "KILLED"


def test_headless_in_github_actions_puts_the_table_and_the_best_report_in_the_step_summary(repo: Path) -> None:
    summary = repo.parent / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    sweeps = ["--sweep", "params.base_f1=0.5,0.7", "--sweep", "params.exit_code=0,3"]
    proc = run_cli(["run", "tb.yaml", "--no-tui", *sweeps], cwd=repo, env=env)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    out = proc.stdout
    # One line a member state change, prefixed with its varied values.
    assert "[params.base_f1=0.5 params.exit_code=3] job-failed: the job exited with code 3" in out
    assert "[params.base_f1=0.7 params.exit_code=0] succeeded: f1 0.9000" in out
    assert "best: params.base_f1=0.7 params.exit_code=0 · f1 0.9000" in out
    assert "finished: sweep succeeded" in out and "(exit 0, OK)" in out
    (data,) = SweepStore(repo / ".trainboard").all()
    text = summary.read_text()
    best = data.members[data.best]
    assert all(m.run_id in text for m in data.members) and "job-failed" in text
    assert "Best member" in text and best.run_id in text


def test_a_bad_value_in_one_member_starts_nothing(repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "mlflow.poll_interval=0.5,-1"], cwd=repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stdout + proc.stderr
    assert "sweep member 1 (mlflow.poll_interval=-1) does not validate" in proc.stderr
    assert "mlflow.poll_interval" in proc.stderr and "fix:" in proc.stderr
    assert not (repo / ".trainboard" / "runs").exists() and not (repo / ".trainboard" / "sweeps").exists()


def test_an_objective_that_is_no_metric_is_refused(repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.epochs=1,2", "--set", "sweep.objective=auc"],
                   cwd=repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "sweep.objective" in proc.stderr and "'auc' is not one of the metrics" in proc.stderr
    assert not (repo / ".trainboard" / "runs").exists()


@pytest.mark.parametrize(("statuses", "objectives", "passed", "cancelled", "code", "best"), [
    (["succeeded", "gate-failed"], [0.8, 0.9], [True, False], False, ExitCode.GATE_FAILED, 1),
    (["succeeded", "job-failed"], [0.8, 0.95], [True, None], False, ExitCode.OK, 0),
    (["succeeded", "succeeded"], [0.8, 0.8], [True, False], False, ExitCode.OK, 0),  # a tie: the lower index
    (["job-failed", "error"], [None, None], [None, None], False, ExitCode.INFRA_ERROR, None),
    (["cancelled", "skipped"], [None, None], [None, None], False, ExitCode.INTERRUPTED, None),  # the cost cap
    (["succeeded", "cancelled"], [0.7, None], [True, None], True, ExitCode.INTERRUPTED, 0),  # a person
])
def test_the_verdict_rule(statuses, objectives, passed, cancelled, code, best) -> None:
    members = [MemberInfo(index=i, values={"params.x": str(i)}, status=s, objective=o, passed=p)
               for i, (s, o, p) in enumerate(zip(statuses, objectives, passed, strict=True))]
    assert best_member(members, "max") == best
    assert sweep_exit(members, best, cancelled=cancelled) is code


def test_a_min_goal_picks_the_lowest() -> None:
    members = [MemberInfo(index=i, values={}, status="succeeded", objective=v) for i, v in enumerate([0.3, 0.1, 0.2])]
    assert best_member(members, "min") == 1


@pytest.mark.slow
def test_a_sweep_of_the_example_job(tmp_path: Path) -> None:
    """Four members of the bundled example (real MiniLM, tiny slices), two at a time."""
    repo = make_example_repo(tmp_path / "project")
    tiny = ["params.max_train_samples=32", "params.max_eval_samples=32", "params.eval_slice=16",
            "params.max_length=16", "sweep.max_parallel=2"]
    args = ["run", "sample_params.yaml", "--no-tui", "--sweep", "params.learning_rate=1e-4,5e-5",
            "--sweep", "params.batch_size=8,16"]
    proc = run_cli([*args, *(a for o in tiny for a in ("--set", o))], cwd=repo, timeout=900)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr[-3000:]
    (data,) = SweepStore(repo / ".trainboard").all()
    assert [m.status for m in data.members] == ["succeeded"] * 4 or proc.returncode == ExitCode.GATE_FAILED
    scored = {m.index: m.objective for m in data.members if m.objective is not None}
    assert len(scored) == 4 and data.best == max(scored, key=lambda i: (scored[i], -i))
    best = data.members[data.best]
    assert proc.returncode == (ExitCode.OK if best.passed else ExitCode.GATE_FAILED)
    assert f"best: {' '.join(f'{k}={v}' for k, v in best.values.items())}" in proc.stdout
    assert len(children(repo, "intents-minilm", data.parent_run_id)) == 4
    reports = list((repo / ".trainboard" / "sweeps").glob("*/report.md"))
    assert len(reports) == 1 and best.run_id in reports[0].read_text()

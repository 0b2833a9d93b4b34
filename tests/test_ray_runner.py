"""The ray runner against a real Ray head on 127.0.0.1 (one per test session, tests/ray_support.py):
whole runs through the CLI, the log through dropped and short streams, stop, a retried start,
detach and attach, and clusters that are wrong or away."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, interrupt_run, run_acting_at, run_cli
from tests.ray_support import FaultProxy, processes_with, proxy, ray_head  # noqa: F401  (fixtures)
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.runners.ray.head import LocalHead

pytestmark = pytest.mark.xdist_group("ray")  # one worker starts the session's head and runs them all

SECRET = "tok-ray-0123456789"

# The tiny job, with a SIGTERM handler that checkpoints (a file named by the job's env).
STOPPABLE_JOB = textwrap.dedent("""
    import os, signal, sys, time
    def checkpoint(signum, frame):
        open(os.environ["CHECKPOINT_FILE"], "w").write("saved at SIGTERM\\n")
        print("checkpoint saved", flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, checkpoint)
    print("epoch 1: training", flush=True)
    time.sleep(120)
""")


def records(repo: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((repo / ".trainboard" / "runs").glob("*/record.json"))]


def on_ray(repo: Path, address: str, **runner: object) -> Path:
    """The tiny repo's config pointed at a Ray cluster's job server, committed."""
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["runner"] = {"kind": "ray", "address": address, **runner}
    config["job"]["command"] = f"{sys.executable} job.py"  # the cluster's PATH knows no venv
    config["job"]["env"] = {"API_TOKEN": SECRET}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "ray runner")
    return repo


def ray_jobs(head: LocalHead) -> dict[str, object]:
    from ray.job_submission import JobSubmissionClient

    return {job.submission_id: job for job in JobSubmissionClient(head.address).list_jobs()}


def test_a_run_on_a_ray_cluster_end_to_end(repo: Path, ray_head: LocalHead) -> None:  # noqa: F811
    on_ray(repo, ray_head.address)
    (repo / "job.py").write_text(f"print('token', {SECRET!r}, flush=True)\n" + (repo / "job.py").read_text())
    git(repo, "commit", "-qam", "job prints its token")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(repo)
    run_dir = repo / ".trainboard" / "runs" / record["run_id"]
    assert record["runner"]["kind"] == "ray" and record["runner"]["address"] == ray_head.address
    # The metrics went to MLflow (served here to the cluster), and came back for the comparison.
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.8)
    # The output reached the run folder through the MLflow run's artifacts.
    assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.8)}
    # One Ray job, its submission id the run id, with the branch and commit as metadata.
    job = ray_jobs(ray_head)[record["run_id"]]
    assert str(job.status) in ("SUCCEEDED", "JobStatus.SUCCEEDED")
    assert job.metadata["branch"] == "main" and job.metadata["commit"] == git(repo, "rev-parse", "HEAD").strip()
    # The plain output follows the Ray job's status, each change once.
    runner_lines = [line for line in proc.stdout.splitlines() if line.startswith("  runner ray:")]
    assert f"  runner ray: training (ray job {record['run_id']}: running)" in runner_lines
    assert runner_lines.count(f"  runner ray: training (ray job {record['run_id']}: succeeded)") == 1
    assert all(a != b for a, b in zip(runner_lines, runner_lines[1:], strict=False)), runner_lines
    log = (run_dir / "job.log").read_text()
    assert log.count("epoch 2: f1=0.800") == 1 and "token" in log
    for text in (log, proc.stdout, proc.stderr, (run_dir / "report.md").read_text(), json.dumps(record)):
        assert SECRET not in text
    assert not list((run_dir / "runner").glob("ray-*.log")), "the raw log copies hold secrets: removed"


def test_a_local_head_of_the_runs_own_is_started_and_stopped(repo: Path, ray_head: LocalHead) -> None:  # noqa: F811
    """--set runner.kind=ray --set runner.local=true on a local runner's config."""
    git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "runner.kind=ray", "--set", "runner.local=true"],
                   cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(repo)
    head = record["runner"]["state"]["head"]
    assert head["address"] != ray_head.address
    assert not LocalHead.from_state(head).alive(), "the run's head must be gone"
    assert not Path(head["temp_dir"]).exists()
    assert ray_head.alive(), "a head the run did not start is left alone"
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.8)
    assert (repo / ".trainboard" / "runs" / record["run_id"] / "metrics.json").exists()


async def test_200000_lines_arrive_exactly_once_through_dropped_log_streams(proxy: FaultProxy,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    """The session follows a job through a proxy that drops every log stream (the k-th after
    k x 256 KiB, each a replay from the first byte): each reconnect skips what was read."""
    from trainboard.backend import events as ev
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.config_schema import RayRunnerConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ray import RayRunner
    from trainboard.backend.session import Session

    proxy.faults.cut_after = 256 * 1024
    runner = RayRunner(RayRunnerConfig(kind="ray", address=proxy.url), tmp_path / "run", "lines-200k")
    await runner.provision()
    await runner.sync(tmp_path, [], {"job.py": b"import time\nfor i in range(200_000): print(f'line {i}')\n"
                                              b"print('done', flush=True)\ntime.sleep(4)\n"})
    config = RunConfig.model_validate({"job": {"command": "python job.py"}, "metrics": {"f1": {}}})
    session = Session(LoadedConfig(config, tmp_path / "tb.yaml", (), {}), root=tmp_path)
    session.runner = runner  # type: ignore[assignment]
    delivered: list[str] = []
    session.subscribe(lambda e: delivered.extend(e.lines) if isinstance(e, ev.LogLines) else None)
    try:
        handle = await runner.start(JobSpec(name="job", commands=("python job.py",), workdir="."))
        assert await asyncio.wait_for(session._follow(handle, "job"), 120) == 0
        pump = runner._pumps["lines-200k"]
        whole = await runner._server().full_log("lines-200k")
    finally:
        await runner.teardown()
    assert [line for line in delivered if line.startswith("line ")] == [f"line {i}" for i in range(200_000)]
    assert (session.run_dir / "job.log").read_bytes() == whole  # the kept log: each byte once
    assert proxy.faults.cuts >= 5, proxy.faults
    assert pump.reconnects >= 5 and pump.reconciled == 0  # the streams brought it all, the end added nothing


def test_the_last_lines_are_reconciled_when_the_log_stream_ends_early(repo: Path, proxy: FaultProxy) -> None:  # noqa: F811
    proxy.faults.end_early_after = 2048  # the stream ends short, and the log API refuses after it
    on_ray(repo, proxy.url)
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.lines=20000"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(repo)
    lines = (repo / ".trainboard" / "runs" / record["run_id"] / "job.log").read_text().splitlines()
    assert [line for line in lines if line.startswith("line ")] == [f"line {i}" for i in range(20_000)]
    assert lines.count("epoch 2: f1=0.800") == 1
    assert proxy.faults.refused >= 1  # so the lines past 2 KiB came from get_job_logs


def test_stop_during_training_runs_the_jobs_sigterm_handler(repo: Path, ray_head: LocalHead,  # noqa: F811
                                                            tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.txt"
    (repo / "job.py").write_text(STOPPABLE_JOB)
    on_ray(repo, ray_head.address, stop_wait_seconds=20)
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["job"]["env"]["CHECKPOINT_FILE"] = str(checkpoint)
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "a job that checkpoints on SIGTERM")
    proc = interrupt_run(repo, [], "epoch 1", signal.SIGINT)
    assert proc.returncode == ExitCode.INTERRUPTED, proc.stdout[-3000:] + proc.stderr
    assert checkpoint.read_text() == "saved at SIGTERM\n"
    (record,) = records(repo)
    job = ray_jobs(ray_head)[record["run_id"]]
    assert "STOPPED" in str(job.status)
    assert not processes_with(f"{sys.executable} job.py"), "nothing of the job is left"


def supervisor_resources(head: LocalHead, submission_id: str) -> dict[str, float]:
    """The resources Ray holds for a job's entrypoint (its supervisor actor's)."""
    from ray.util.state import list_actors

    for actor in list_actors(address=head.address, filters=[("class_name", "=", "JobSupervisor")], detail=True):
        if actor.name and actor.name.endswith(submission_id):
            return dict(actor.required_resources or {})
    return {}


async def test_a_retried_start_follows_the_job_it_started(repo: Path, ray_head: LocalHead,  # noqa: F811
                                                          tmp_path: Path) -> None:
    from trainboard.backend.config_schema import RayRunnerConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ray import RayRunner

    config = RayRunnerConfig(kind="ray", address=ray_head.address, num_cpus=2)
    runner = RayRunner(config, tmp_path / "run", "retry-run-1")
    await runner.provision()
    try:
        await runner.sync(repo, ["job.py"], {"params.yaml": b"epochs: 1\nsleep: 1\n"})
        spec = JobSpec(name="job", commands=(f"{sys.executable} job.py",), workdir=".")
        first = await runner.start(spec)
        again = await runner.start(spec)  # a start retried after, say, a lost answer
        assert first.exit_path == again.exit_path == "retry-run-1"
        assert await asyncio.to_thread(supervisor_resources, ray_head, "retry-run-1") == {"CPU": 2.0}
        while (status := await runner.status(again)).running:
            await asyncio.sleep(0.2)
        assert status.exit_code == 0
        log = (await runner.tail(again, 0, 1 << 20)).decode()
        assert log.count("epoch 1: f1=0.700") == 1, log  # it ran once
        assert [sid for sid in ray_jobs(ray_head) if sid.startswith("retry-run-1")] == ["retry-run-1"]
    finally:
        await runner.teardown()


async def test_detach_then_attach_finishes_the_run(repo: Path, ray_head: LocalHead) -> None:  # noqa: F811
    from trainboard.backend import events as ev
    from trainboard.backend.config import load_config
    from trainboard.backend.mlflow_server import LocalTrackingServer
    from trainboard.backend.session import Session

    on_ray(repo, ray_head.address)
    server = LocalTrackingServer(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", repo / "artifacts")
    await server.start()  # a tracking server both sides reach, as a team's would be
    try:
        overrides = ["params.sleep=1.5", "params.epochs=3", f"mlflow.tracking_uri={server.url}"]
        session = Session(load_config(repo / "tb.yaml", overrides), root=repo)
        outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
        assert detached == [True] and outcome is ExitCode.DETACHED
        (record,) = records(repo)
        assert record["status"] == "detached"
        assert "RUNNING" in str(ray_jobs(ray_head)[record["run_id"]].status), "detach leaves the job running"
        attached = Session.attach(session.store.load(record["run_id"]), repo)
        lines: list[str] = []
        attached.subscribe(lambda e: lines.extend(e.lines) if isinstance(e, ev.LogLines) else None)
        assert await asyncio.wait_for(attached.run(), 120) is ExitCode.OK
        assert [line for line in lines if line.startswith("epoch")] == [
            "epoch 1: f1=0.700", "epoch 2: f1=0.800", "epoch 3: f1=0.900"]
        (record,) = records(repo)
        assert record["status"] == "succeeded" and record["comparison"]["rows"][0]["after"] == pytest.approx(0.9)
        # The attached session found the outputs in the MLflow run the job uploaded them to.
        run_dir = repo / ".trainboard" / "runs" / record["run_id"]
        assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.9)}
    finally:
        await server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("case", ["not a url", "nothing listening", "no answer"])
def test_a_wrong_or_unreachable_cluster_is_a_clear_error_and_leaves_nothing(repo: Path, case: str) -> None:
    silent = socket.socket()  # accepts connections, never answers: a blackholed job server
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = {"not a url": "ray-head:8265", "nothing listening": f"http://127.0.0.1:{_closed_port()}",
               "no answer": f"http://127.0.0.1:{silent.getsockname()[1]}"}[case]
    try:
        on_ray(repo, address, connect_timeout=3)
        started = time.monotonic()
        proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo, timeout=120)
    finally:
        silent.close()
    out = proc.stdout + proc.stderr
    if case == "not a url":
        assert proc.returncode == ExitCode.CONFIG_ERROR, out
        assert "tb.yaml" in out and "runner.address" in out and "http://" in out
        return
    assert proc.returncode == ExitCode.INFRA_ERROR, out
    assert ("cannot reach the Ray cluster" if case == "nothing listening" else "did not answer within 3 s") in out
    assert time.monotonic() - started < 60
    (record,) = records(repo)
    assert record["status"] == "error"
    assert not processes_with(f"{sys.executable} job.py")


def test_reap_stops_the_head_of_a_run_whose_trainboard_was_killed(repo: Path) -> None:
    """kill -9 skips teardown: the run's own head is left; `trainboard reap` finds and stops it."""
    import os
    import subprocess

    from tests.conftest import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui", "--set", "runner.kind=ray",
            "--set", "runner.local=true", "--set", "params.sleep=30"]
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 1"):
            break
    proc.kill()
    proc.wait(30)
    (record,) = records(repo)
    head = LocalHead.from_state(record["runner"]["state"]["head"])
    try:
        assert head.alive(), "kill -9: no teardown ran, the head is still up"
        dry = run_cli(["reap", "--dry-run"], cwd=repo, env={"AWS_REGION": "", "AWS_DEFAULT_REGION": ""})
        assert "would stop ray head" in dry.stdout and head.address in dry.stdout, dry.stdout + dry.stderr
        assert head.alive()
        real = run_cli(["reap"], cwd=repo, env={"AWS_REGION": "", "AWS_DEFAULT_REGION": ""})
        assert "run crashed" in real.stdout, real.stdout + real.stderr
        assert not head.alive() and not Path(head.temp_dir).exists()
    finally:
        if head.alive():
            asyncio.run(head.stop())


def test_dvc_steps_on_the_ray_runner_are_refused_before_anything_starts(repo: Path) -> None:
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["runner"] = {"kind": "ray", "local": True}
    config["dvc"] = {"outputs": ["metrics.json"]}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "dvc on ray")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode == ExitCode.CONFIG_ERROR, out
    assert "runner.kind" in out and "DVC" in out and "dvc push" in out
    assert "provision" not in proc.stdout and "Ray head" not in proc.stdout  # nothing was started


async def test_a_detached_run_keeps_its_own_head_and_attach_stops_it_at_the_end(repo: Path) -> None:
    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session

    overrides = ["runner.kind=ray", "runner.local=true", "params.sleep=1.5", "params.epochs=3"]
    session = Session(load_config(repo / "tb.yaml", overrides), root=repo)
    outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
    assert detached == [True] and outcome is ExitCode.DETACHED
    (record,) = records(repo)
    head = LocalHead.from_state(record["runner"]["state"]["head"])
    try:
        assert head.alive(), "a detached run's head stays up: its job runs on"
        attached = Session.attach(session.store.load(record["run_id"]), repo)
        assert await asyncio.wait_for(attached.run(), 120) is ExitCode.OK
        (record,) = records(repo)
        assert record["status"] == "succeeded" and record["comparison"]["rows"][0]["after"] == pytest.approx(0.9)
        assert not head.alive(), "the attached run's teardown stops the head the run started"
    finally:
        if head.alive():
            await head.stop()


async def test_a_job_the_cluster_cannot_place_is_said_and_stopped_at_teardown(ray_head: LocalHead,  # noqa: F811
                                                                             tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from trainboard.backend import events as ev
    from trainboard.backend.config_schema import RayRunnerConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ray import RayRunner
    from trainboard.backend.runners.ray import runner as ray_runner

    monkeypatch.setattr(ray_runner, "PENDING_NOTICE", 1.0)
    runner = RayRunner(RayRunnerConfig(kind="ray", address=ray_head.address, num_gpus=1), tmp_path, "no-gpu-here")
    said: list[str] = []
    runner.notify = lambda e: said.append(e.message) if isinstance(e, ev.Notice) else None
    await runner.provision()
    try:
        await runner.sync(tmp_path, [], {"job.py": b"print('never')\n"})
        handle = await runner.start(JobSpec(name="job", commands=("python job.py",), workdir="."))
        deadline = time.monotonic() + 30
        while not any("waited" in m for m in said) and time.monotonic() < deadline:
            assert (await runner.status(handle)).running
            await asyncio.sleep(0.3)
        assert any("waited 1 s for the cluster" in m and "1 GPU" in m for m in said), said
    finally:
        await runner.teardown()
    assert any("never started" in m and "stops it if it ever starts" in m for m in said), said
    assert "RUNNING" not in str(ray_jobs(ray_head)["no-gpu-here"].status)


def test_a_cluster_that_shares_this_machines_files_gets_the_store_and_leaves_outputs_here(
        repo: Path, ray_head: LocalHead) -> None:  # noqa: F811
    on_ray(repo, ray_head.address, shared_filesystem=True)
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(repo)
    run_dir = repo / ".trainboard" / "runs" / record["run_id"]
    assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.8)}
    job = ray_jobs(ray_head)[record["run_id"]]
    env = job.runtime_env["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("sqlite:///")  # the store itself, no server between
    assert env["TRAINBOARD_OUTPUT_DIR"] == str((run_dir / "runner" / "ray-outputs").resolve())
    assert "upload" not in (run_dir / "job.log").read_text()
    assert not list(repo.rglob("trainboard-outputs"))  # nothing went through MLflow's artifacts


def test_a_sweep_on_a_ray_cluster_is_a_ray_job_a_member(repo: Path, ray_head: LocalHead) -> None:  # noqa: F811
    on_ray(repo, ray_head.address, shared_filesystem=True)
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.epochs=1,2"], cwd=repo)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
    members = records(repo)
    assert len(members) == 2
    jobs = ray_jobs(ray_head)
    for record in members:
        assert "SUCCEEDED" in str(jobs[record["run_id"]].status)
    assert sorted(r["comparison"]["rows"][0]["after"] for r in members) == [pytest.approx(0.7), pytest.approx(0.8)]

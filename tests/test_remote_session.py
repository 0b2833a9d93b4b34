"""Whole runs on the ssh runner, through the real CLI: a real sshd on 127.0.0.1,
MLflow on SQLite here served to the job through an SSH port forward."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, interrupt_run, run_acting_at, run_cli
from tests.sshd_support import Sshd, sshd  # noqa: F401  (the module's sshd fixture)
from trainboard.backend.exitcodes import ExitCode


def records(repo: Path) -> list[dict]:
    runs = sorted((repo / ".trainboard" / "runs").glob("*/record.json"))
    return [json.loads(p.read_text()) for p in runs]


def remote_jobs(marker: str) -> list[str]:
    """Processes on the "remote" host (this machine) whose command line holds ``marker``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and " Z" not in line and "ps -eo" not in line]


@pytest.fixture
def ssh_repo(repo: Path, sshd: Sshd, tmp_path: Path) -> Path:  # noqa: F811
    """The tiny repo configured for the ssh runner on the test sshd, committed."""
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["runner"] = {
        "kind": "ssh",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "identity_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "remote_dir": str(tmp_path / "remote runs"),
    }
    # The remote login shell knows no venv: name the interpreter that has mlflow and yaml.
    config["job"]["command"] = f"{sys.executable} job.py"
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "ssh runner")
    return repo


def test_ssh_run_end_to_end_logs_metrics_through_the_forwarded_tracking_server(ssh_repo: Path, tmp_path: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=ssh_repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(ssh_repo)
    run_dir = ssh_repo / ".trainboard" / "runs" / record["run_id"]
    assert record["runner"]["kind"] == "ssh" and record["status"] == "succeeded"
    # The job reached MLflow through 127.0.0.1 on the runner, forwarded to the server here.
    assert "metrics @ step 2: f1=0.8000" in proc.stdout, proc.stdout
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.8)
    # The log came back over SSH and is kept here, the outputs fetched.
    assert "epoch 2: f1=0.800" in (run_dir / "job.log").read_text()
    assert "preparing" in (run_dir / "setup.log").read_text()
    assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.8)}
    # The remote run folder holds the workspace; nothing of the run is still running.
    remote = tmp_path / "remote runs" / record["run_id"]
    assert (remote / "workspace" / "job.py").is_file() and (remote / "workspace" / "params.yaml").is_file()
    assert not remote_jobs(record["run_id"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("stage", ["setup", "train"])
def test_signal_on_the_ssh_runner_kills_the_remote_job(ssh_repo: Path, sig: signal.Signals, stage: str) -> None:
    overrides = ["params.sleep=60"] if stage == "train" else ["job.setup=['echo setting-up; sleep 60']"]
    marker = "epoch 1" if stage == "train" else "setting-up"
    proc = interrupt_run(ssh_repo, overrides, marker, sig)
    assert proc.returncode == ExitCode.INTERRUPTED, proc.stdout + proc.stderr
    (record,) = records(ssh_repo)
    assert record["status"] == "cancelled" and record["stages"]["teardown"]["state"] == "done"
    time.sleep(0.3)
    assert not remote_jobs(record["run_id"]), "the remote job outlived the run"


def test_secrets_and_hostile_values_reach_the_remote_job_verbatim(ssh_repo: Path, tmp_path: Path) -> None:
    hostile = "it's \"quoted\" $(touch pwned) `touch pwned2` ; rm -rf / #\nsecond line"
    config = yaml.safe_load((ssh_repo / "tb.yaml").read_text())
    config["job"]["env"] = {"HOSTILE": hostile, "API_TOKEN": "tok-abcdef123456"}
    config["params"]["note"] = hostile
    config["job"]["command"] = (
        f"{sys.executable} -c \"import os, yaml; "
        "open('seen.json', 'w').write(__import__('json').dumps([os.environ['HOSTILE'], "
        "yaml.safe_load(open('params.yaml'))['note']])); print('token is', os.environ['API_TOKEN'])\""
    )
    config["job"]["outputs"] = ["seen.json"]
    config["compare"]["gates"] = {}
    (ssh_repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(ssh_repo, "commit", "-qam", "hostile")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=ssh_repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    (record,) = records(ssh_repo)
    run_dir = ssh_repo / ".trainboard" / "runs" / record["run_id"]
    assert json.loads((run_dir / "seen.json").read_text()) == [hostile, hostile]
    assert not list(tmp_path.rglob("pwned*")) and not list(ssh_repo.rglob("pwned*"))
    assert "tok-abcdef123456" not in proc.stdout + proc.stderr
    assert "tok-abcdef123456" not in (run_dir / "report.md").read_text()


async def test_detach_and_attach_on_the_ssh_runner_with_a_shared_tracking_server(ssh_repo: Path) -> None:
    """With a tracking server both sides reach, a remote job can be left and come back to."""
    import asyncio

    from trainboard.backend import events as ev
    from trainboard.backend.config import load_config
    from trainboard.backend.mlflow_server import LocalTrackingServer
    from trainboard.backend.session import Session

    server = LocalTrackingServer(f"sqlite:///{ssh_repo / '.trainboard' / 'mlflow.db'}", ssh_repo / "artifacts")
    await server.start()  # MLflow's own tracking app, standing in for a team's server
    try:
        overrides = ["params.sleep=1.5", "params.epochs=3", f"mlflow.tracking_uri={server.url}"]
        session = Session(load_config(ssh_repo / "tb.yaml", overrides), root=ssh_repo)
        outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
        assert detached == [True] and outcome is ExitCode.DETACHED
        (record,) = records(ssh_repo)
        assert record["status"] == "detached" and remote_jobs(record["run_id"]), "detach must leave the job running"
        attached = Session.attach(session.store.load(record["run_id"]), ssh_repo)
        lines: list[str] = []
        attached.subscribe(lambda e: lines.extend(e.lines) if isinstance(e, ev.LogLines) else None)
        assert await asyncio.wait_for(attached.run(), 120) is ExitCode.OK
        # The log resumed where it was: each epoch once.
        assert [line for line in lines if line.startswith("epoch")] == [
            "epoch 1: f1=0.700", "epoch 2: f1=0.800", "epoch 3: f1=0.900"]
        (record,) = records(ssh_repo)
        assert record["status"] == "succeeded" and record["comparison"]["rows"][0]["after"] == pytest.approx(0.9)
        assert not remote_jobs(record["run_id"])
    finally:
        await server.stop()


async def test_a_forwarded_tracking_store_cannot_be_detached_and_says_why(ssh_repo: Path) -> None:

    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session

    session = Session(load_config(ssh_repo / "tb.yaml", ["params.sleep=0.5", "params.epochs=2"]), root=ssh_repo)
    outcome, answers = await run_acting_at(session, "epoch 1", lambda: (session.detach(), session.detach_blocker))
    assert outcome is ExitCode.OK
    assert answers and answers[0][0] is False and "SSH forward" in answers[0][1]


def test_host_port_user_key_and_known_hosts_come_from_the_users_ssh_config(ssh_repo: Path, sshd: Sshd,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host gpu-box\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {sshd.known_hosts}\n")
    config = yaml.safe_load((ssh_repo / "tb.yaml").read_text())
    config["runner"] = {"kind": "ssh", "host": "gpu-box", "remote_dir": str(tmp_path / "remote")}
    (ssh_repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(ssh_repo, "commit", "-qam", "alias")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=ssh_repo, env={"HOME": str(home)})
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    assert f"runner ssh: ready ({sshd.user}@127.0.0.1:{sshd.port})" in proc.stdout
    # Without the alias's known_hosts entry the host is refused, with the command that adds it.
    (home / ".ssh" / "config").write_text((home / ".ssh" / "config").read_text().replace(
        f"  UserKnownHostsFile {sshd.known_hosts}\n", f"  UserKnownHostsFile {home / 'empty_known_hosts'}\n"))
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=ssh_repo, env={"HOME": str(home)})
    assert proc.returncode == ExitCode.INFRA_ERROR
    assert "host key" in proc.stderr and "is unknown" in proc.stderr and "ssh-keyscan -p" in proc.stderr

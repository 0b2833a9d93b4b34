"""No secret on disk: whole runs through the real CLI (local runner, ssh runner on a real
sshd) whose job prints its secrets in every shape it could; afterwards no file trainboard
wrote here (and none left in the ssh host's run folder) holds one, raw or encoded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from tests.conftest import git, run_acting_at, run_cli
from tests.sshd_support import Sshd, sshd  # noqa: F401  (the module's sshd fixture)
from trainboard.backend.exitcodes import ExitCode

# Characters that every encoding changes: / + " \ space & = %
API_TOKEN = 'tb-Tok/9f3Ka+Zq "quoted" \\back&amp=1%20end'
DB_PASSWORD = "hunter2-7c1e9b0d4a"
TRACKING_TOKEN = "mlf-TrackTok/55e1+c0ffee"  # this machine's MLflow credential, forwarded to an ssh job

# Prints each named variable raw, URL-encoded, JSON-escaped and base64 (standard and urlsafe,
# at the three alignments, inside a longer blob), and a hash of it: the job did get it.
SECRETS_JOB = textwrap.dedent(
    """
    import base64, hashlib, json, os, sys, urllib.parse
    names = sys.argv[1:]
    for name in names:
        v = os.environ[name]
        print("raw", v)
        print("quote", urllib.parse.quote(v, safe=""), urllib.parse.quote(v))
        print("quote_plus", urllib.parse.quote_plus(v))
        print("json", json.dumps({"value": v}))
        for k in range(3):
            blob = b"P" * k + v.encode() + b"-and-what-follows"
            print("b64", k, base64.b64encode(blob).decode(), base64.urlsafe_b64encode(blob).decode())
        print("sha", name, hashlib.sha256(v.encode()).hexdigest())
    if os.path.exists("../job.env"):  # on an ssh host: the run folder holds it, beside the wrapper
        print("envfile-mode", oct(os.stat("../job.env").st_mode & 0o777))
        wrapper = open("../job.sh").read()
        print("wrapper-clean", all(os.environ[n] not in wrapper for n in names))
    """
)


def needles(secret: str) -> dict[str, bytes]:
    """What would give ``secret`` away in a file: raw, percent-encoded, JSON-escaped, and the
    base64 characters that carry only its bits at each alignment (standard and urlsafe)."""
    found = {"raw": secret, "quote": quote(secret, safe=""), "quote/": quote(secret),
             "quote_plus": quote_plus(secret), "json": json.dumps(secret)[1:-1]}
    data = secret.encode()
    for k in range(3):
        blob = base64.b64encode(b"P" * k + data + b"-and-what-follows").decode()
        first, last = (8 * k + 5) // 6, 8 * (k + len(data)) // 6  # the characters with its bits only
        found[f"b64-{k}"] = blob[first:last]
        found[f"b64url-{k}"] = blob[first:last].translate(str.maketrans("+/", "-_"))
    return {name: text.encode() for name, text in found.items()}


def leaks(folder: Path, secrets: list[str]) -> list[str]:
    """Every file under ``folder`` (binary ones too: the MLflow store) holding a needle."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in secrets:
            found += [f"{path} ({name})" for name, needle in needles(secret).items() if needle in data]
    return found


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def secrets_config(repo: Path, names: list[str]) -> dict:
    (repo / "secrets_job.py").write_text(SECRETS_JOB)
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["job"]["env"] = {"API_TOKEN": API_TOKEN, "DB_PASSWORD": DB_PASSWORD, "EPOCHS_NOTE": "three"}
    config["job"]["command"] = f"{sys.executable} job.py && {sys.executable} secrets_job.py {' '.join(names)}"
    config["compare"]["gates"] = {}
    return config


def check_run(repo: Path, out: str, secrets: list[str]) -> dict:
    """The job got every secret and printed it; no file under .trainboard/ nor `runs --json` holds one."""
    (record_path,) = (repo / ".trainboard" / "runs").glob("*/record.json")
    run_dir = record_path.parent
    log = (run_dir / "job.log").read_text()
    for secret in secrets:
        assert f"{sha(secret)}" in log, log[-2000:]  # the job received the value
    assert "raw ***" in log and "quote_plus ***" in log, log[-2000:]  # and printed it, masked here
    assert leaks(repo / ".trainboard", secrets) == []
    runs = run_cli(["runs", "--json"], cwd=repo)
    assert runs.returncode == 0, runs.stderr
    shown = runs.stdout.encode()
    assert [n for s in secrets for n, needle in needles(s).items() if needle in shown] == []
    record = json.loads(runs.stdout)[0]
    env = record["config"]["job"]["env"]
    assert {"API_TOKEN", "DB_PASSWORD", "EPOCHS_NOTE"} <= set(env) and set(env.values()) == {"***"}
    assert API_TOKEN not in out and DB_PASSWORD not in out
    return record


def test_a_local_run_leaves_no_secret_in_any_file(repo: Path) -> None:
    config = secrets_config(repo, ["API_TOKEN", "DB_PASSWORD", "EXTRA_SECRET"])
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "secrets")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.env.EXTRA_SECRET=set-on-the-line-42"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    record = check_run(repo, proc.stdout + proc.stderr, [API_TOKEN, DB_PASSWORD, "set-on-the-line-42"])
    assert record["overrides"] == ["job.env.EXTRA_SECRET=***"]
    # The workspace has the config file, masked; the job had its values in its environment.
    copy = yaml.safe_load((repo / ".trainboard" / "runs" / record["run_id"] / "workspace" / "tb.yaml").read_text())
    assert copy["job"]["env"]["API_TOKEN"] == "***" and copy["job"]["env"]["EPOCHS_NOTE"] == "three"


@pytest.fixture
def ssh_secrets_repo(repo: Path, sshd: Sshd, tmp_path: Path) -> Path:  # noqa: F811
    config = secrets_config(repo, ["API_TOKEN", "DB_PASSWORD", "MLFLOW_TRACKING_TOKEN"])
    config["runner"] = {"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                        "identity_file": str(sshd.client_key), "known_hosts": str(sshd.known_hosts),
                        "remote_dir": str(tmp_path / "remote runs")}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "secrets on ssh")
    return repo


async def test_an_ssh_run_keeps_secrets_in_a_0600_file_gone_at_teardown(ssh_secrets_repo: Path,
                                                                        tmp_path: Path) -> None:
    from trainboard.backend.mlflow_server import LocalTrackingServer

    repo = ssh_secrets_repo
    # A tracking server both sides reach: this machine's MLflow credentials go to the job.
    server = LocalTrackingServer(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", tmp_path / "artifacts")
    await server.start()
    try:
        proc = await asyncio.to_thread(run_cli, ["run", "tb.yaml", "--no-tui", "--set",
                                                 f"mlflow.tracking_uri={server.url}"], repo,
                                       env={"MLFLOW_TRACKING_TOKEN": TRACKING_TOKEN})
    finally:
        await server.stop()
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    secrets = [API_TOKEN, DB_PASSWORD, TRACKING_TOKEN]
    record = check_run(repo, proc.stdout + proc.stderr, secrets)
    log = (repo / ".trainboard" / "runs" / record["run_id"] / "job.log").read_text()
    # During the run the values were in a 0600 file, never in the wrapper.
    assert "envfile-mode 0o600" in log and "wrapper-clean True" in log, log[-2000:]
    remote = tmp_path / "remote runs" / record["run_id"]
    assert (remote / "job.sh").is_file() and (remote / "workspace" / "secrets_job.py").is_file()
    assert not list(remote.glob("*.env*")) and not list(remote.glob("*.log"))  # gone at teardown
    assert leaks(remote, secrets) == []
    assert yaml.safe_load((remote / "workspace" / "tb.yaml").read_text())["job"]["env"]["DB_PASSWORD"] == "***"


async def test_attach_masks_the_jobs_secrets_with_the_config_file_gone(repo: Path) -> None:
    """The record has them masked and the config file is gone: the running job's own
    environment tells the attached session what to mask."""
    from trainboard.backend import events as ev
    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session

    config = secrets_config(repo, ["API_TOKEN"])
    config["params"].update(sleep=1.0, epochs=2)
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "secrets")
    os.environ.pop("API_TOKEN", None)
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
    assert detached == [True] and outcome is ExitCode.DETACHED
    (repo / "tb.yaml").unlink()
    attached = Session.attach(session.store.load(session.run_id), repo)
    lines: list[str] = []
    attached.subscribe(lambda e: lines.extend(e.lines) if isinstance(e, ev.LogLines) else None)
    assert await asyncio.wait_for(attached.run(), 120) is ExitCode.OK
    assert f"sha API_TOKEN {sha(API_TOKEN)}" in lines and "raw ***" in lines, lines
    assert leaks(repo / ".trainboard", [API_TOKEN]) == []

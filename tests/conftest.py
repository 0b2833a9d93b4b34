"""Shared fixtures: a throwaway git repository with a tiny real job that logs to MLflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# A job that logs real MLflow metrics: fast (no torch), but every part is real.
TINY_JOB = textwrap.dedent(
    """
    import json, os, sys, time
    import yaml
    params = yaml.safe_load(open("params.yaml"))
    run_id = os.environ.get("MLFLOW_RUN_ID")
    client = None
    if run_id:
        from mlflow.tracking import MlflowClient
        client = MlflowClient()
    f1 = 0.0
    for epoch in range(1, int(params.get("epochs", 2)) + 1):
        f1 = float(params.get("base_f1", 0.6)) + 0.1 * epoch
        print(f"epoch {epoch}: f1={f1:.3f}", flush=True)
        if client:
            client.log_metric(run_id, "f1", f1, step=epoch)
            client.log_metric(run_id, "loss", 1.0 / epoch, step=epoch)
        time.sleep(float(params.get("sleep", 0.0)))
    for i in range(int(params.get("lines", 0))):
        print(f"line {i}")
    json.dump({"f1": f1}, open("metrics.json", "w"))
    sys.exit(int(params.get("exit_code", 0)))
    """
)

TINY_CONFIG = textwrap.dedent(
    """\
    name: tiny
    runner:
      kind: local
    job:
      setup:
        - echo preparing
      command: python job.py
      outputs: [metrics.json]
    mlflow:
      tracking_uri: sqlite:///.trainboard/mlflow.db
      experiment: tiny
      poll_interval: 0.2
    metrics:
      f1: {display: F1, goal: max}
      loss: {display: Loss, goal: min}
    compare:
      base: main
      gates:
        f1: {min_delta: -0.005}
    params:
      epochs: 2
      base_f1: 0.6
      sleep: 0.0
    """
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A git repo on branch main holding job.py and tb.yaml, committed."""
    return make_tiny_repo(tmp_path / "repo")


def make_tiny_repo(repo: Path, files: dict[str, str] | None = None) -> Path:
    """The ``tiny_repo`` fixture's repository, at ``repo``; ``files`` (name: text) in place
    of its job.py and tb.yaml."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    for name, text in (files or {"job.py": TINY_JOB, "tb.yaml": TINY_CONFIG}).items():
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text(".trainboard/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def make_example_repo(repo: Path) -> Path:
    """A git repository on main holding the bundled example (examples/ and sample_params.yaml), committed."""
    repo.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(ROOT / "examples"), str(ROOT / "sample_params.yaml"), str(repo)], check=True)
    (repo / ".gitignore").write_text(".trainboard/\ndata/\nmodel/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@e.st", "-c", "user.name=T", "commit", "-q", "-m", "example")
    return repo


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema made, once per test session.

    Creating the schema (MLflow's alembic migrations) takes about five seconds;
    a test's run starts from a copy of it instead of a blank file. The store is
    MLflow's own either way.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def repo(tiny_repo: Path, empty_mlflow_db: Path) -> Path:
    """``tiny_repo`` with its MLflow store (tb.yaml: .trainboard/mlflow.db) schema-ready."""
    store = tiny_repo / ".trainboard"
    store.mkdir(exist_ok=True)
    shutil.copy(empty_mlflow_db, store / "mlflow.db")
    return tiny_repo


def trainboard_cmd() -> list[str]:
    """The installed console script, run with this interpreter."""
    return [sys.executable, "-m", "trainboard.tui.cli"]


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None,
            **kw) -> subprocess.CompletedProcess[str]:
    """`trainboard ARGS` in ``cwd``; ``env`` adds to (or replaces values of) this environment."""
    full = dict(os.environ)
    full.pop("GITHUB_ACTIONS", None)
    full["PYTHONPATH"] = str(ROOT)
    full.update(env or {})
    return subprocess.run(
        [*trainboard_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full, **kw
    )


def interrupt_run(repo: Path, overrides: list[str], marker: str, sig: int,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`trainboard run tb.yaml --no-tui` with ``overrides``, sent ``sig`` once a line starts with ``marker``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_ACTIONS", None)
    args = [a for o in overrides for a in ("--set", o)]
    proc = subprocess.Popen([sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui", *args],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker) or time.monotonic() > deadline:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(seen) + out, err)


async def run_acting_at(session: Any, marker: str, action: Callable[[], T],
                        timeout: float = 120) -> tuple[Any, list[T]]:
    """Run ``session``; each time a batch of log lines holds one starting with ``marker``,
    call ``action``. The run's exit code and what ``action`` returned."""
    import asyncio

    from trainboard.backend import events as ev

    answers: list[T] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.LogLines) and any(line.startswith(marker) for line in event.lines):
            answers.append(action())

    session.subscribe(on_event)
    outcome = await asyncio.wait_for(session.run(), timeout)
    return outcome, answers

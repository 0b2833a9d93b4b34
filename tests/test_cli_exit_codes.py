"""Exit codes and messages of `compare`, `attach` and `reap` when there is nothing to act on (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.store import RunStore

NO_RUNS = "no runs yet: start one with `trainboard run CONFIG`"
LATE = "29991231-000000-"  # sorts after any run made today


def store(repo: Path) -> RunStore:
    return RunStore(repo / ".trainboard")


@pytest.mark.parametrize("command", [["compare"], ["attach", "--no-tui"]])
def test_no_runs_is_a_config_error_with_the_same_message(tiny_repo: Path, command: list[str]) -> None:
    result = run_cli(command, cwd=tiny_repo)
    assert result.returncode == ExitCode.CONFIG_ERROR, result.stdout + result.stderr
    assert result.stderr.strip() == f"error: {NO_RUNS}"


@pytest.mark.parametrize("status", [RunStatus.CANCELLED, RunStatus.ERROR, RunStatus.JOB_FAILED,
                                    RunStatus.RUNNING, RunStatus.DETACHED, RunStatus.CONFIG_ERROR])
def test_compare_of_a_run_without_a_result_names_its_status(tiny_repo: Path, status: RunStatus) -> None:
    run_id = LATE + "0001"
    store(tiny_repo).create(run_id, status=status)
    result = run_cli(["compare", run_id], cwd=tiny_repo)
    assert result.returncode == ExitCode.CONFIG_ERROR, result.stdout + result.stderr
    assert f"run {run_id} cannot be compared: its status is {status}" in result.stderr


def test_compare_of_an_unknown_run_is_a_config_error(tiny_repo: Path) -> None:
    store(tiny_repo).create(LATE + "0001", status=RunStatus.SUCCEEDED)
    result = run_cli(["compare", "nope"], cwd=tiny_repo)
    assert result.returncode == ExitCode.CONFIG_ERROR, result.stdout + result.stderr
    assert "no run matching 'nope'" in result.stderr


def test_compare_without_a_run_and_no_result_is_a_config_error(tiny_repo: Path) -> None:
    store(tiny_repo).create(LATE + "0001", status=RunStatus.JOB_FAILED)
    store(tiny_repo).create(LATE + "0002", status=RunStatus.ERROR)
    result = run_cli(["compare"], cwd=tiny_repo)
    assert result.returncode == ExitCode.CONFIG_ERROR, result.stdout + result.stderr
    assert "no run has a result to compare yet" in result.stderr and f"{LATE}0002, is error" in result.stderr


def test_compare_without_a_run_picks_the_latest_with_a_result(repo: Path) -> None:
    first = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    assert first.returncode == ExitCode.OK, first.stdout + first.stderr
    (done,) = store(repo).all()
    store(repo).create(LATE + "0001", status=RunStatus.ERROR)  # started later, errored
    result = run_cli(["compare"], cwd=repo)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert f"comparing run {done.run_id}, the latest with a result (succeeded)" in result.stderr
    assert f"run {done.run_id} ·" in result.stdout


def test_reap_without_a_region_says_how_reap_takes_one(tiny_repo: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # run_cli starts from this environment
    env = {"HOME": str(home), "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none")}
    result = run_cli(["reap", "--dry-run"], cwd=tiny_repo, env=env)
    assert result.returncode == ExitCode.INFRA_ERROR, result.stdout + result.stderr
    assert "--region R" in result.stdout and "AWS_REGION" in result.stdout
    assert "AWS_DEFAULT_REGION" in result.stdout and "runner.region does not apply" in result.stdout

"""CI mode under GitHub Actions (the workflows `trainboard init` writes: tests/test_init.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from trainboard.backend.exitcodes import ExitCode


def test_github_actions_mode_groups_stages_annotates_failures_and_writes_the_summary(tiny_repo: Path,
                                                                                    tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    ok = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo, env=env)
    assert ok.returncode == ExitCode.OK, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    groups = [line for line in lines if line.startswith("::group::")]
    assert groups == [f"::group::trainboard: {s}" for s in
                      ("check", "provision", "sync", "train", "collect", "compare", "report", "teardown")]
    # Every group is closed before the next opens; the job's log sits inside the train group.
    depth = 0
    for line in lines:
        depth += line.startswith("::group::") - (line == "::endgroup::")
        assert depth in (0, 1)
    assert depth == 0
    train = lines.index("::group::trainboard: train")
    assert "epoch 2: f1=0.800" in lines[train:lines.index("::endgroup::", train)]
    assert "::error" not in ok.stdout
    text = summary.read_text()
    assert text.startswith("**trainboard: succeeded** (exit 0, OK)")
    assert "| F1 |" in text and "](metrics.png)" not in text

    # A failed gate: exit 1, and an annotation that says why.
    worse = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.base_f1=0.5"], cwd=tiny_repo, env=env)
    assert worse.returncode == ExitCode.GATE_FAILED
    assert "::error title=trainboard%3A gate::FAIL: gate failed for F1" in worse.stdout
    assert "**trainboard: gate-failed** (exit 1, GATE_FAILED)" in summary.read_text()

    # A failed job: exit 4, annotated with the stage, the message on one line.
    failed = run_cli(["run", "tb.yaml", "--no-tui", "--set", "params.exit_code=3"], cwd=tiny_repo, env=env)
    assert failed.returncode == ExitCode.JOB_FAILED
    annotations = [line for line in failed.stdout.splitlines() if line.startswith("::error")]
    assert annotations == ["::error title=trainboard%3A train::the job exited with code 3"]


def test_outside_github_actions_there_are_no_workflow_commands(tiny_repo: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=tiny_repo, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == ExitCode.OK
    assert "::group::" not in proc.stdout and not summary.exists()
    assert json.loads((tiny_repo / ".trainboard" / "runs").iterdir().__next__().joinpath("record.json")
                      .read_text())["status"] == "succeeded"

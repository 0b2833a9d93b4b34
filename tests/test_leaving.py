"""Leaving the dashboard says how the run ended (issue 12 item 3).

Once Textual has given the terminal back, `trainboard run` and `attach` print the
verdict (with the primary metric and its change, or why there is no comparison), the
exit code with its name and the report's path; a detached run says how to come back.
The lines are read from a real terminal (tmux, as tests/test_tmux_e2e.py) after ``q``,
and built from real finished sessions on the local runner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tmux_support import Terminal, terminals
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.session import Session
from trainboard.tui.leaving import leaving_lines


@pytest.fixture
def held_terminal(tmp_path: Path) -> Iterator[Callable[[Path, list[str]], Terminal]]:
    """``trainboard ARGS`` in REPO in a tmux session that stays open after it exits, so that
    what it printed on leaving can be read."""
    yield from terminals(tmp_path, hold=True)


def after_exit(term: Terminal) -> tuple[int, list[str]]:
    """The exit status, and the terminal's lines once the dashboard has gone."""
    code = term.exit_status(timeout=90)
    lines = [line.rstrip() for line in term.screen().splitlines() if line.strip()]
    return code, lines


def test_q_on_a_finished_run_prints_the_verdict_the_exit_code_and_the_report(
    tiny_repo: Path, held_terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = held_terminal(tiny_repo, ["run", "tb.yaml"])
    term.wait_for("the verdict", lambda s: "succeeded" in s and "PASS" in s)
    term.press("q")
    code, lines = after_exit(term)
    assert code == ExitCode.OK
    text = "\n".join(lines)
    assert "Metrics" not in text and "╭" not in text, text  # the dashboard has gone
    run_id = next(p.name for p in (tiny_repo / ".trainboard" / "runs").iterdir())
    assert re.search(rf"^trainboard: run {run_id} succeeded in \d", text, re.M), text
    assert "verdict: PASS (no baseline yet on main: deltas start with the next run) · F1 0.8000" in text, text
    assert "exit 0 (OK): ok: the run finished and every gate passed" in text, text
    assert f"report: .trainboard/runs/{run_id}/report.md" in text, text
    assert (tiny_repo / ".trainboard" / "runs" / run_id / "report.md").is_file()
    assert "trainboard attach" not in text


def test_detaching_prints_how_to_come_back(
    tiny_repo: Path, held_terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = held_terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=2", "--set", "params.epochs=3"])
    term.wait_for("the job's first epoch", lambda s: "epoch 1: f1=0.700" in s)
    term.press("q")
    term.wait_for("the quit question", lambda s: "Detach" in s)
    term.press("d")
    code, lines = after_exit(term)
    assert code == ExitCode.DETACHED
    text = "\n".join(lines)
    run_id = next(p.name for p in (tiny_repo / ".trainboard" / "runs").iterdir())
    assert f"trainboard: run {run_id} detached" in text, text
    assert "verdict: none yet, the job runs on" in text, text
    assert "exit 5 (DETACHED)" in text, text
    assert f"`trainboard attach {run_id}` comes back to it" in text, text

    # And it does: attach follows the job to its end (and leaves no job behind).
    done = run_cli(["attach", run_id, "--no-tui"], tiny_repo, timeout=120)
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr


async def test_a_gate_failure_names_the_primary_metric_and_its_change(repo: Path) -> None:
    first = Session(load_config(repo / "tb.yaml"), root=repo)
    assert await first.run() == ExitCode.OK  # the baseline: F1 0.8 on main
    second = Session(load_config(repo / "tb.yaml", ["params.base_f1=0.5"]), root=repo)  # F1 0.7
    code = await second.run()
    assert code == ExitCode.GATE_FAILED
    lines = leaving_lines(second.record, code)
    assert lines[0].startswith(f"trainboard: run {second.run_id} gate-failed in ")
    assert lines[1] == "verdict: FAIL: gate failed for F1 · F1 0.7000 (-0.1000 vs main)"
    assert lines[2] == "exit 1 (GATE_FAILED): gate failed: the job succeeded but a metric gate failed"
    assert lines[3].startswith("report: ") and lines[3].endswith(f"{second.run_id}/report.md")
    assert len(lines) == 4


async def test_a_failed_job_says_why_there_is_no_comparison(repo: Path) -> None:
    session = Session(load_config(repo / "tb.yaml", ["params.exit_code=7"]), root=repo)
    code = await session.run()
    assert code == ExitCode.JOB_FAILED
    assert session.record is not None and session.record.status == RunStatus.JOB_FAILED
    lines = leaving_lines(session.record, code)
    assert lines[1] == "verdict: no comparison, the job failed (exit 7)"
    assert lines[2] == "exit 4 (JOB_FAILED): job failed: the training job exited non-zero"

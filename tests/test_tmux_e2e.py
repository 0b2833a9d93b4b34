"""The real dashboard in a real terminal: ``trainboard run`` inside tmux.

The CLI runs the tiny job on the local runner with its metrics in MLflow; the
test reads the screen with ``tmux capture-pane`` and types with ``send-keys``,
as a user would. tmux runs on a private socket, so a tmux server of the user's
is never touched. The shell writes the CLI's exit status to a file when it ends.

tmux is required: CI installs it (.ci/run). Without it these tests fail.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 100, 30
TIMEOUT = 120.0  # a first run creates MLflow's schema (seconds) before the job starts


@dataclass
class Terminal:
    """One tmux session on a private server, running one command."""

    socket: Path
    name: str
    rc_file: Path

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=10)

    def screen(self) -> str:
        done = self.tmux("capture-pane", "-p", "-t", self.name)
        return done.stdout if done.returncode == 0 else ""

    def press(self, *keys: str) -> None:
        done = self.tmux("send-keys", "-t", self.name, *keys)
        assert done.returncode == 0, done.stderr

    def wait_for(self, what: str, test: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if test(screen):
                return screen
            if self.rc_file.exists():
                raise AssertionError(f"trainboard exited ({self.rc_file.read_text().strip()}) before {what}:\n{screen}")
            time.sleep(0.2)
        raise AssertionError(f"waited {timeout:g}s for {what}; the screen:\n{screen}")

    def exit_status(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rc_file.exists() and self.rc_file.read_text().strip():
                return int(self.rc_file.read_text())
            time.sleep(0.1)
        raise AssertionError(f"trainboard did not exit in {timeout:g}s; the screen:\n{self.screen()}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Start ``trainboard ARGS`` (or ``python -m MODULE ARGS``) in REPO in a 100x30 tmux session; killed at the end."""
    assert shutil.which("tmux"), "tmux is not installed: these tests need it (apt-get install tmux)"
    started: list[Terminal] = []

    def start(repo: Path, args: list[str], module: str = "trainboard.tui.cli") -> Terminal:
        term = Terminal(tmp_path / "tmux.sock", f"tb-{uuid.uuid4().hex[:8]}", tmp_path / f"rc-{len(started)}")
        command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", module, *args])
        shell = f"cd {shlex.quote(str(repo))} && {command}; echo $? > {shlex.quote(str(term.rc_file))}"
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "GITHUB_ACTIONS")}
        env.update(PYTHONPATH=str(ROOT), SHELL="/bin/sh", TERM=os.environ.get("TERM") or "xterm-256color")
        done = subprocess.run(
            ["tmux", "-S", str(term.socket), "-f", "/dev/null", "new-session", "-d", "-s", term.name,
             "-x", str(WIDTH), "-y", str(HEIGHT), shell],
            env=env, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert done.returncode == 0, f"tmux new-session failed: {done.stderr}"
        started.append(term)
        return term

    try:
        yield start
    finally:
        for term in started:
            term.tmux("kill-session", "-t", term.name)
        if started:
            started[0].tmux("kill-server")  # the private server of this test only


def stage_running(screen: str, stage: str) -> bool:
    return re.search(rf"●\s+{stage}\b", screen) is not None


def test_a_run_in_tmux_streams_the_log_and_metrics_then_exits_0_on_q(
    tiny_repo: Path, terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=0.5", "--set", "params.epochs=4"])

    screen = term.wait_for(
        "the train stage to run with the job's log showing",
        lambda s: stage_running(s, "train") and "epoch 1: f1=0.700" in s,
    )
    assert "$ python job.py" in screen
    assert "stage 4/8 train" in screen  # the header
    screen = term.wait_for("a metric value in the metrics panel", lambda s: re.search(r"F1\s+0\.\d{4}", s) is not None)
    assert re.search(r"Loss\s+\d\.\d{4}", screen), screen

    screen = term.wait_for("the verdict", lambda s: "succeeded" in s and "PASS" in s)
    assert "epoch 4: f1=1.000" in screen
    assert re.search(r"F1\s+1\.0000", screen), screen
    assert not stage_running(screen, r"\w+"), screen  # every stage has ended

    term.press("q")
    assert term.exit_status() == 0


def test_cancel_in_tmux_tears_down_and_exits_130(
    tiny_repo: Path, terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=30"])
    term.wait_for("the job's first epoch", lambda s: "epoch 1: f1=0.700" in s)

    term.press("c")
    term.wait_for("the cancel question", lambda s: "Cancel the run?" in s)
    term.press("y")
    screen = term.wait_for("the run to be cancelled", lambda s: "cancelled" in s and "exit 130" in s)
    assert re.search(r"✓\s+teardown", screen), screen

    term.press("q")
    assert term.exit_status() == 130

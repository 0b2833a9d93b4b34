"""tmux for the end-to-end tests: a private tmux server per test (a user's own is never
touched), one session per command, the screen read with ``capture-pane`` and keys typed
with ``send-keys``; the shell writes the command's exit status to a file when it ends."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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


def terminals(tmp_path: Path, hold: bool = False) -> Iterator[Callable[..., Terminal]]:
    """Start commands in tmux sessions on a private server, killed at the end. ``hold``:
    the pane stays open after the command exits (its last output can still be read)."""
    assert shutil.which("tmux"), "tmux is not installed: these tests need it (apt-get install tmux)"
    started: list[Terminal] = []

    def start(repo: Path, args: list[str], module: str = "trainboard.tui.cli") -> Terminal:
        term = Terminal(tmp_path / "tmux.sock", f"tb-{uuid.uuid4().hex[:8]}", tmp_path / f"rc-{len(started)}")
        command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", module, *args])
        rc = shlex.quote(str(term.rc_file))
        shell = f"cd {shlex.quote(str(repo))} && {command}; echo $? > {rc}.tmp && mv {rc}.tmp {rc}"
        shell += "; sleep 600" if hold else ""
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

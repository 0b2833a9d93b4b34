"""A Ray head node of trainboard's own on 127.0.0.1 (``runner.local: true``).

It runs ``ray start --head --block`` in a process session of its own, on free ports, with a
temp folder of its own: stopping it signals that session and then any process still naming
that folder, so a Ray cluster trainboard did not start (``ray stop`` would stop them all) is
never touched. The head outlives trainboard on a detach; :meth:`LocalHead.from_state` finds it
again for an attach, and teardown stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from trainboard.backend.runners.base import RunnerError

START_TIMEOUT = 90.0  # seconds for a head to answer; about 5 on two idle cores
MARKER = "TRAINBOARD_RAY_HEAD"  # in the environment of every process of a head of ours: its temp folder
TEMP_PREFIX = "tb-ray-"  # short: Ray's socket paths under the temp folder must fit in 107 bytes

# Ray's fixed default ports, each given a free one so that a head of the user's own (or a second
# of ours, in a sweep or the tests) is never in the way.
_PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
               "--node-manager-port", "--object-manager-port")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (all held open until every one is found)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def ray_command() -> str:
    """The ``ray`` command beside this Python (a venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise RunnerError("the ray command is not installed: pip install 'trainboard[ray]' "
                          "(runner.local: true starts a Ray head on this machine)")
    return found


class LocalHead:
    """One head on 127.0.0.1; ``address`` is its job server's (the dashboard's) URL."""

    def __init__(self, pid: int, temp_dir: str, address: str) -> None:
        self.pid, self.temp_dir, self.address = pid, temp_dir, address

    @classmethod
    async def start(cls, cpus: int | None = None, timeout: float = START_TIMEOUT) -> LocalHead:
        temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir="/tmp")
        ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        args = [ray_command(), "start", "--head", "--block", "--disable-usage-stats",
                "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
                "--temp-dir", temp_dir, "--num-cpus", str(cpus or os.cpu_count() or 1)]
        for flag, port in ports.items():
            args += [flag, str(port)]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", MARKER: temp_dir}
        # `python` in its jobs is the interpreter trainboard runs in, as on the local runner.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("RAY_ADDRESS", None)  # a head of its own, not the one the user's shell points at
        with open(Path(temp_dir) / "trainboard-head.log", "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        head = cls(proc.pid, temp_dir, f"http://127.0.0.1:{ports['--dashboard-port']}")
        try:
            await head._wait_ready(proc, timeout)
        except BaseException:
            await head.stop()
            raise
        return head

    async def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RunnerError(f"the local Ray head exited with code {proc.returncode} before it was up: "
                                  f"{self.log_tail()}")
            if await asyncio.to_thread(self._answers):
                return
            await asyncio.sleep(0.25)
        raise RunnerError(f"the local Ray head did not answer within {timeout:g} s: {self.log_tail()}")

    def _answers(self) -> bool:
        """The job server is up and has an agent to run jobs (Ray's own readiness check)."""
        try:
            with urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (Path(self.temp_dir) / "trainboard-head.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def state(self) -> dict[str, Any]:
        return {"pid": self.pid, "temp_dir": self.temp_dir, "address": self.address}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalHead:
        return cls(int(state["pid"]), str(state["temp_dir"]), str(state["address"]))

    def alive(self) -> bool:
        return bool(self._processes())

    def _processes(self) -> list[int]:
        """Every live process of this head: its own, Ray's workers and the jobs' drivers (which
        run in sessions of their own) all inherit the head's marker in their environment."""
        found = []
        marker = f"{MARKER}={self.temp_dir}".encode() + b"\0"
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                        continue  # dead already, waiting for its parent to collect it
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if marker in f.read():
                        found.append(int(entry.name))
            except OSError:
                continue
        return found

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the head's session (Ray shuts down in order: at once, all signalled together
        they wait on each other), SIGKILL what is left of it after ``grace`` and any process still
        carrying its marker (a job's driver, in a session of its own); then its temp folder."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_session(pid) == self.pid for pid in self._processes()) and time.monotonic() < deadline:
            _reap(self.pid)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + grace
        while (left := self._processes()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            _reap(self.pid)
            await asyncio.sleep(0.1)
        _reap(self.pid)
        await asyncio.to_thread(shutil.rmtree, self.temp_dir, True)


def _session(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _reap(pid: int) -> None:
    """Collect the head's exit status when it is this process's child (else it lingers a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)

"""A local MLflow tracking server for jobs on remote runners.

A job on an SSH host or an EC2 instance cannot open this machine's SQLite
store. When the tracking URI is local (``sqlite:`` or ``file:``) and the runner
is remote, trainboard serves the same store over HTTP on 127.0.0.1 here and the
runner forwards a port on *its* 127.0.0.1 to it through the SSH connection: the
job logs to ``http://127.0.0.1:<port>`` there and nothing listens on a public
address. trainboard itself keeps reading the store directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from backend.tracking import TrackingError

LOCAL_SCHEMES = ("sqlite:", "file:")
START_TIMEOUT = 120.0  # seconds: the first start creates the store's tables


def needs_forwarding(tracking_uri: str, runner_kind: str) -> bool:
    """Whether a job on this runner needs the local server to reach the tracking store."""
    return runner_kind != "local" and tracking_uri.startswith(LOCAL_SCHEMES)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalTrackingServer:
    """``mlflow server`` on 127.0.0.1, serving ``backend_uri``; stopped with its whole process group."""

    def __init__(self, backend_uri: str, log_path: Path) -> None:
        self.backend_uri = backend_uri
        self.log_path = log_path
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = _free_port()
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TrackingError(f"the local MLflow server exited with code {self._proc.returncode}: "
                                    f"see {self.log_path}")
            if await asyncio.to_thread(self._healthy):
                return
            await asyncio.sleep(0.2)
        await self.stop()
        raise TrackingError(f"the local MLflow server did not answer within {START_TIMEOUT:.0f} s: see {self.log_path}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)

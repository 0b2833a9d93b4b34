"""The ssh runner itself: the runner protocol over the helpers it holds (the link to the host,
the log reader, the jobs, the forwards, the watchdog), provisioning, attach and letting go."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
from pathlib import Path
from typing import Any

from trainboard.backend import events as ev
from trainboard.backend.runners.base import Capabilities, Host, JobHandle, JobSpec, JobStatus, Notify, RunnerError
from trainboard.backend.runners.ssh import workspace as transfer
from trainboard.backend.runners.ssh.connection import SshLink
from trainboard.backend.runners.ssh.files import LogReader
from trainboard.backend.runners.ssh.forwarding import Forwards
from trainboard.backend.runners.ssh.jobs import Jobs
from trainboard.backend.runners.ssh.shell import MARK, RUN_ID, as_text, marked, remote_path_expr
from trainboard.backend.runners.ssh.target import SshTarget, expand
from trainboard.backend.runners.ssh.watchdog import DETACHED, Watchdog

CLEANUP_TIMEOUT = 15.0  # seconds teardown tries to remove the secrets files and raw logs from the host


class SshRunner:
    """Runs jobs on a host over SSH; see the package docstring for the layout on the host."""

    kind = "ssh"

    def __init__(self, target: SshTarget, run_dir: Path, run_id: str, remote_dir: str = "~/.trainboard/runs",
                 reconnect_timeout: float = 300.0, kind: str = "ssh") -> None:
        if not RUN_ID.match(run_id):
            raise RunnerError(f"bad run id {run_id!r}")
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.remote_dir = remote_dir
        self.kind = kind
        self.capabilities = Capabilities(shares_filesystem=False, relays_tracking=True,
                                         orphan_timeout=target.orphan_timeout)
        self.notify: Notify | None = None
        self.workspace = ""  # on the host; known after provision() or reattach()
        self.link = SshLink(target, kind, reconnect_timeout, self._emit)
        self.logs = LogReader(self.link)
        self.forwards = Forwards(self.link)
        self.watchdog = Watchdog(self.link)
        self.jobs = Jobs(self.link, self.logs, self.watchdog)

    @classmethod
    def from_config(cls, cfg: Any, run_dir: Path, run_id: str) -> SshRunner:
        """From a ``runner: {kind: ssh, ...}`` section (trainboard.backend.config.SshRunnerConfig)."""
        target = SshTarget(
            host=cfg.host,
            port=cfg.port,
            user=cfg.user,
            client_keys=[expand(cfg.identity_file) or ""] if cfg.identity_file else None,
            known_hosts=expand(cfg.known_hosts),
            config_path=expand(cfg.ssh_config),
            keepalive=float(cfg.keepalive_seconds),
            connect_timeout=float(cfg.connect_timeout),
            stall_timeout=float(cfg.stall_timeout),
            orphan_timeout=float(cfg.orphan_timeout),
        )
        return cls(target, run_dir, run_id, remote_dir=cfg.remote_dir, reconnect_timeout=float(cfg.reconnect_timeout))

    # -- settings the helpers share, kept on the link --------------------------------------------------------------

    @property
    def target(self) -> SshTarget:
        return self.link.target

    @target.setter
    def target(self, target: SshTarget) -> None:
        self.link.target = target

    @property
    def run_folder(self) -> str:
        """The run folder, absolute, on the host; known after provision() or reattach()."""
        return self.link.run_folder

    @run_folder.setter
    def run_folder(self, folder: str) -> None:
        self.link.run_folder = folder

    @property
    def details(self) -> tuple[tuple[str, str], ...]:
        return self.link.details

    @details.setter
    def details(self, details: tuple[tuple[str, str], ...]) -> None:
        self.link.details = details

    @property
    def reconnect_timeout(self) -> float:
        return self.link.reconnect_timeout

    @reconnect_timeout.setter
    def reconnect_timeout(self, seconds: float) -> None:
        self.link.reconnect_timeout = seconds

    @property
    def read_ahead(self) -> int:
        """Reads tail() keeps under way after a full one; 0: none."""
        return self.logs.read_ahead

    @read_ahead.setter
    def read_ahead(self, chunks: int) -> None:
        self.logs.read_ahead = chunks

    @property
    def relay_wait(self) -> float:
        """How long a job's MLflow call waits at the relay for a forward."""
        return self.forwards.relay_wait

    @relay_wait.setter
    def relay_wait(self, seconds: float) -> None:
        self.forwards.relay_wait = seconds

    def _emit(self, event: ev.Event) -> None:
        if self.notify is not None:
            self.notify(event)

    # -- connecting, provisioning, attaching -----------------------------------------------------------------------

    async def execute(self, script: str, input: bytes | None = None, retry: bool = True) -> tuple[int, bytes, bytes]:
        """Run a bash script on the host (reconnecting first if needed): exit status, stdout, stderr.

        With ``retry`` the script runs again after a dropped connection: it must be idempotent.
        """
        return await self.link.execute(script, input=input, retry=retry)

    async def wait_ready(self, timeout: float) -> None:
        """Connect, retrying with backoff, until sshd answers and its host key verifies.

        A host key that is unknown or does not match fails at once (HostKeyError).
        """
        await self.link.wait_ready(timeout)

    async def provision(self) -> Host:
        """Connect, make the run folder (0700) and its workspace; the host's python version and cpus."""
        run = remote_path_expr(posixpath.join(self.remote_dir, self.run_id))
        script = (
            f"umask 077; d={run}; mkdir -p \"$d/workspace\" && chmod 700 \"$d\" && cd \"$d\" || exit 1\n"
            f"printf '{MARK}run=%s\\n' \"$(pwd)\"\n"
            f"printf '{MARK}host=%s\\n' \"$(uname -n 2>/dev/null)\"\n"
            f"printf '{MARK}python=%s\\n' \"$(python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)\"\n"
            f"printf '{MARK}cpus=%s\\n' \"$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)\"\n"
        )
        status, out, err = await self.execute(script)
        found = marked(as_text(out))
        if status != 0 or not found.get("run", "").startswith("/"):
            raise RunnerError(f"could not make the run folder under {self.remote_dir} on {self.link.address}: "
                              f"{as_text(err).strip() or as_text(out).strip() or f'exit status {status}'}")
        self.run_folder = found["run"]
        self.workspace = posixpath.join(self.run_folder, "workspace")
        self.details = (("host", found.get("host", "")), ("python", found.get("python", "")),
                             ("cpus", found.get("cpus", "")))
        return self._host_record()

    def _host_record(self) -> Host:
        return Host(kind=self.kind, address=self.link.address, workspace=self.workspace, details=self.details)

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target.to_dict(),
            "address": self.link.address,
            "run_id": self.run_id,
            "remote_dir": self.remote_dir,
            "run_folder": self.run_folder,
            "workspace": self.workspace,
            "details": [list(pair) for pair in self.details],
            "reconnect_timeout": self.reconnect_timeout,
        }

    async def reattach(self, state: dict[str, Any]) -> Host:
        """Reconnect (in a new process) to the run folder a previous session made."""
        try:
            self.target = SshTarget.from_dict(state["target"])
            self.run_folder = str(state["run_folder"])
            self.workspace = str(state["workspace"])
        except (KeyError, TypeError) as exc:
            raise RunnerError(f"the run record has no usable ssh runner state ({exc})") from exc
        self.remote_dir = str(state.get("remote_dir", self.remote_dir))
        self.run_id = str(state.get("run_id", self.run_id))
        self.details = tuple((str(k), str(v)) for k, v in state.get("details") or ())
        self.link.forget_settings()
        detached = shlex.quote(posixpath.join(self.run_folder, DETACHED))
        status, _, _ = await self.execute(f"test -d {shlex.quote(self.workspace)} && rm -f {detached}")
        if status != 0:
            raise RunnerError(f"{self.workspace} is gone from {self.link.address}")
        self.watchdog.sent = True  # the first session sent it
        self.watchdog.keep_alive()
        return self._host_record()

    def _require_provisioned(self) -> None:
        if not self.run_folder:
            raise RunnerError("the ssh runner is not provisioned")

    # -- the runner protocol: the helpers' work --------------------------------------------------------------------

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
        """The listed files (and ``extra`` members) into the workspace: one tar over one channel."""
        self._require_provisioned()
        await transfer.sync(self.link, self.workspace, source, files, extra)

    async def fetch(self, relpath: str, dest: Path) -> bool:
        """A file or folder of the workspace into ``dest`` (a tar stream back); False when missing."""
        self._require_provisioned()
        return await transfer.fetch(self.link, self.workspace, relpath, dest)

    async def start(self, spec: JobSpec) -> JobHandle:
        """Write the job's wrapper and start it detached (setsid); its pid, log and exit-file paths."""
        self._require_provisioned()
        return await self.jobs.start(spec, self.workspace)

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the log from ``offset`` (b"" when nothing is new); see LogReader.tail."""
        return await self.logs.tail(handle, offset, limit)

    async def status(self, handle: JobHandle) -> JobStatus:
        return await self.jobs.status(handle)

    async def idle(self, handle: JobHandle, seconds: float) -> None:
        await asyncio.sleep(seconds)  # the host says nothing of the job's end: the next look tells

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        await self.jobs.stop(handle, grace)

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        """The job's environment as its secrets file holds it; {} when the file is gone (after teardown)."""
        return await self.jobs.read_env(handle)

    async def forward(self, port: int) -> int:
        """Make 127.0.0.1:``port`` here reachable from the host; the port the job uses there (see Forwards)."""
        if not self.forwards.holds(port):
            self._require_provisioned()
        return await self.forwards.forward(port)

    async def undelivered_metrics(self) -> float | None:
        """When the relay last gave up on a call of the job's MLflow client with none getting
        through after it (wall-clock time); None when every call got through (or no relay)."""
        return await self.forwards.undelivered_metrics()

    # -- letting go ----------------------------------------------------------------------------------------------

    async def _close(self) -> None:
        self.logs.close()
        self.forwards.cancel()
        self.watchdog.stop_heartbeat()
        await self.link.close()

    async def detach(self) -> None:
        """Close the connection; the job, its run folder and the host stay as they are
        (its watchdog waits: the run was left on purpose)."""
        if self.run_folder and self.link.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.execute(f"touch {shlex.quote(posixpath.join(self.run_folder, DETACHED))}", retry=False),
                    self.target.stall_timeout)
        await self._close()

    async def teardown(self) -> None:
        """Remove the jobs' secrets files and raw logs from the host, close the connection.

        The raw logs may hold what a job printed of its secrets; the session keeps the
        masked copy of each (``<run_dir>/<name>.log`` here). The rest of the run folder
        (workspace, wrappers, exit codes) stays on the host. Safe at any point, before
        provision() too. A job still running is not stopped here (the session stops it
        first when the run is cancelled). RunnerError when the host could not be cleaned.
        """
        try:
            await self._remove_secrets()
        finally:
            await self.forwards.stop_relay()
            await self.watchdog.stop_watchdogs()
            await self._close()

    async def _remove_secrets(self) -> None:
        if not self.run_folder or not self.link.connected_once:
            return
        folder = shlex.quote(self.run_folder)
        # Each job's (a wrapper <name>.sh says which): not the relay's own log.
        script = (f"cd {folder} 2>/dev/null || exit 0\n"
                  'for sh in ./*.sh; do [ -e "$sh" ] || continue; n="${sh%.sh}"; '
                  'rm -f -- "$n.log" || exit 1; done\n'
                  "rm -f -- ./*.env ./*.env.tmp\n")
        try:
            status, _, err = await asyncio.wait_for(self.execute(script), CLEANUP_TIMEOUT)
            problem = "" if status == 0 else as_text(err).strip() or f"exit status {status}"
        except (RunnerError, TimeoutError) as exc:
            problem = str(exc) or "timed out"
        if problem:
            raise RunnerError(f"could not remove the jobs' secrets files and raw logs from {self.run_folder} on "
                              f"{self.link.address} ({problem}): remove {self.run_folder}/*.env and *.log by hand")

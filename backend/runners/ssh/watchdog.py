"""The dead-man switch: a job whose trainboard is gone for good is stopped by the host.

Each job gets a watchdog (orphan_watchdog.sh, package data, run in the run folder) that
stops it once the run folder's ALIVE file has not been touched for ``orphan_timeout``
seconds, unless DETACHED says the run was left on purpose. While a session holds the
run, its heartbeat touches ALIVE.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from importlib import resources

from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ssh.connection import SshLink
from trainboard.backend.runners.ssh.shell import as_text

WATCHDOG_SOURCE = "orphan_watchdog.sh"  # package data of trainboard.backend.runners
ALIVE = "alive"  # in the run folder: touched while a session holds the run
DETACHED = "detached"  # in the run folder: the run was left on purpose; its watchdogs wait


class Watchdog:
    """The jobs' watchdogs on the host, and this session's heartbeat for them."""

    def __init__(self, link: SshLink) -> None:
        self.link = link
        self.sent = False  # orphan_watchdog.sh is in the run folder
        self._heartbeat_task: asyncio.Task[None] | None = None  # touches ALIVE for the jobs' watchdogs

    def command(self, name: str, pid_path: str, exit_path: str) -> str:
        """Shell (run in the run folder, after the job's start) that starts ``name``'s watchdog
        unless it runs already (a start made again after a drop starts no second one)."""
        limit = int(self.link.target.orphan_timeout)
        if limit <= 0:
            return ""
        q = shlex.quote
        folder = self.link.run_folder
        wd = q(posixpath.join(folder, f"{name}.watchdog"))
        args = " ".join(q(posixpath.join(folder, f)) for f in (ALIVE, DETACHED)) + f" {limit} " + q(
            posixpath.join(folder, f"{name}.orphaned")) + " " + q(exit_path)
        return (f"if [ -s {q(pid_path)} ] && ! {{ [ -s {wd} ] && kill -0 \"$(cat {wd})\" 2>/dev/null; }}; then\n"
                f"  touch {q(posixpath.join(folder, ALIVE))}\n"
                f"  (setsid bash {q(posixpath.join(folder, WATCHDOG_SOURCE))} \"$(cat {q(pid_path)})\" {args}"
                f" </dev/null >/dev/null 2>&1 & echo $! > {wd})\n"
                "fi\n")

    async def send(self) -> None:
        """orphan_watchdog.sh into the run folder, once."""
        if self.sent or self.link.target.orphan_timeout <= 0:
            return
        source = resources.files("trainboard.backend.runners").joinpath(WATCHDOG_SOURCE).read_bytes()
        dest = shlex.quote(posixpath.join(self.link.run_folder, WATCHDOG_SOURCE))
        status, _, err = await self.link.execute(f"cat > {dest}.tmp && mv -f {dest}.tmp {dest}", input=source)
        if status != 0:
            raise RunnerError(f"could not write {WATCHDOG_SOURCE} on {self.link.address}: {as_text(err).strip()}")
        self.sent = True

    def keep_alive(self) -> None:
        """Touch ALIVE every few seconds while this session holds the run (see orphan_watchdog.sh)."""
        if self.link.target.orphan_timeout <= 0 or self._heartbeat_task is not None:
            return
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    def stop_heartbeat(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None

    async def _heartbeat(self) -> None:
        link = self.link
        path = posixpath.join(link.run_folder, ALIVE)
        every = max(1.0, min(30.0, link.target.orphan_timeout / 4))
        while True:
            conn = link.conn
            if conn is not None:
                try:
                    sftp = await link.sftp_client(conn, link.gen)
                    await asyncio.wait_for(sftp.utime(path), every)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a drop: the health check and the reconnect deal with it
                    pass
            await asyncio.sleep(every)

    async def stop_watchdogs(self) -> None:
        """End the jobs' watchdogs (each also ends by itself within a second of its job)."""
        if self.link.target.orphan_timeout > 0:
            await self.link.in_run_folder_quietly(
                'for wd in ./*.watchdog; do [ -s "$wd" ] && kill -TERM "$(cat "$wd")" 2>/dev/null; done\n')

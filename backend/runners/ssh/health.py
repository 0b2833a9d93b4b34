"""The ssh connection's health check: a probe whenever the host has been quiet, a reconnect when
nothing at all has come back from it for ``stall_timeout`` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import asyncssh

from trainboard.backend.runners.base import RunnerError

if TYPE_CHECKING:
    from trainboard.backend.runners.ssh.connection import SshLink

PROBE_EVERY = 2.0  # at most this long between two probes of a connection that has said nothing


class HealthCheck:
    """Watches the link's connection for as long as it is the link's.

    Keepalives alone find a dead connection only after ``keepalive`` x 3 seconds (a
    blackhole: packets dropped, a NAT or VPN that forgot the session) and say nothing
    meanwhile. Here, whenever the host has said nothing for a moment, an SFTP stat
    probes it; when nothing at all has come back from it (the log's reads count too)
    for ``stall_timeout`` seconds, the connection is dropped, the views are told
    (RunnerChanged "reconnecting" and a notice with the reason), and it is made again
    with the usual backoff. A connection that ends (a cut) is made again at once too.
    """

    def __init__(self, link: SshLink) -> None:
        self.link = link
        self.heard = 0.0  # monotonic time of the last answer from the host
        self._bulk = 0  # bulk transfers under way (their data may queue a probe's answer behind it)
        self._task: asyncio.Task[None] | None = None

    def mark(self) -> None:
        """The host has just answered."""
        self.heard = time.monotonic()

    def start(self, conn: asyncssh.SSHClientConnection, gen: int) -> None:
        """Watch ``conn`` (generation ``gen``), the link's new connection."""
        self.mark()
        self._task = asyncio.get_running_loop().create_task(self._watch(conn, gen))

    def stop(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    @contextlib.contextmanager
    def bulk_transfer(self) -> Iterator[None]:
        """While a large transfer runs, a probe's answer may queue behind its data: keepalives judge then."""
        self._bulk += 1
        try:
            yield
        finally:
            self._bulk -= 1
            self.mark()

    async def _watch(self, conn: asyncssh.SSHClientConnection, gen: int) -> None:
        link = self.link
        stall = link.target.stall_timeout
        every = min(PROBE_EVERY, stall / 3)
        loop = asyncio.get_running_loop()
        while link.conn is conn:
            quiet = time.monotonic() - self.heard
            if quiet < every:
                await asyncio.sleep(every - quiet)
                continue
            probe = loop.create_task(self._probe(conn, gen))
            probe.add_done_callback(_retrieve)
            while not probe.done():
                await asyncio.wait({probe}, timeout=min(0.25, every))
                if link.conn is not conn:
                    return
                if not probe.done() and time.monotonic() - self.heard >= stall and not self._bulk:
                    await self._recover(gen, f"no answer from the host for {stall:g} s")
                    return
            if link.client is not None and link.client.lost and link.conn is conn:
                await self._recover(gen, "the connection was closed")
                return

    async def _probe(self, conn: asyncssh.SSHClientConnection, gen: int) -> None:
        link = self.link
        if link.gen != gen:
            return
        sftp = await link.sftp_client(conn, gen)
        await sftp.stat(link.run_folder or ".")
        if link.conn is conn:
            self.mark()

    async def _recover(self, gen: int, reason: str) -> None:
        """The link's recover: a failure is kept (the next operation raises it), never raised here."""
        with contextlib.suppress(RunnerError):
            await self.link.recover(gen, reason)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A done callback: the task's outcome is read, so an error is never logged as lost."""
    if not task.cancelled():
        task.exception()

"""A Ray job's log, copied here every byte exactly once.

Ray's log streams replay the log from its first byte on every connection, and may stop early or
drop silently (ray#46413, #48701, #57002). The pump keeps a local copy (``path``) and the count of
bytes it holds: after a reconnect it skips that many bytes of the replay. Once the job is over it
reconciles: the whole log, read to its end (the log API's file read, else ``get_job_logs``), and
whatever lies past the copy's end is appended, so the last lines are never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

RETRY_FIRST, RETRY_MAX = 0.2, 5.0  # seconds between reconnects, doubling


class LogSource(Protocol):
    def stream(self, node_id: str, submission_id: str) -> AsyncIterator[bytes]: ...

    async def whole(self, node_id: str, submission_id: str) -> bytes: ...

    async def full_log(self, submission_id: str) -> bytes: ...


class LogPump:
    """Follows one job's log into ``path`` until :meth:`finish`."""

    def __init__(self, source: LogSource, submission_id: str, path: Path,
                 on_trouble: Callable[[str], None] = lambda message: None) -> None:
        self.source, self.submission_id, self.path = source, submission_id, path
        self.on_trouble = on_trouble
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(path, "ab")  # noqa: SIM115 - held open while the job runs; closed by finish()
        self.consumed = self._out.tell()  # what an earlier session of this run copied already
        self.reconnects = 0
        self.reconciled = 0  # bytes only the reconcile brought
        self._task: asyncio.Task[None] | None = None
        self.node_id = ""

    def start(self, node_id: str) -> None:
        self.node_id = node_id
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name=f"ray-log-{self.submission_id}")

    async def _follow(self) -> None:
        delay, said = RETRY_FIRST, False
        while True:
            before = self.consumed
            try:
                await self._read_once()
                problem = "the log stream ended"
            except Exception as exc:  # OSError, aiohttp's ClientError, RunnerError: reconnect
                problem = f"the log stream broke: {type(exc).__name__}: {exc}"
            self.reconnects += 1
            if self.consumed > before:
                delay, said = RETRY_FIRST, False
            elif not said:  # said once, until a connection reads again
                self.on_trouble(f"{problem}; reconnecting (the log is complete at the job's end either way)")
                said = True
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    async def _read_once(self) -> None:
        """One connection: its replay's first ``consumed`` bytes are skipped, the rest appended."""
        pos = 0
        async for block in self.source.stream(self.node_id, self.submission_id):
            end = pos + len(block)
            if end > self.consumed:
                fresh = block[self.consumed - pos:] if pos < self.consumed else block
                self._out.write(fresh)
                self._out.flush()  # the session reads the copy as it grows
                self.consumed += len(fresh)
            pos = end

    async def finish(self) -> None:
        """The job is over: stop following, append what the copy lacks, close it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._out.closed:
            return
        whole = await self._whole()
        if len(whole) > self.consumed:
            rest = whole[self.consumed:]
            self._out.write(rest)
            self.reconciled += len(rest)
            self.consumed += len(rest)
        self._out.close()

    async def _whole(self) -> bytes:
        """The whole log: the log API's file read (in 64 KiB blocks), else get_job_logs."""
        if self.node_id:
            try:
                return await self.source.whole(self.node_id, self.submission_id)
            except Exception as exc:  # OSError, aiohttp's ClientError, RunnerError
                self.on_trouble(f"could not read the whole log from the log API ({exc}); asking get_job_logs")
        return await self.source.full_log(self.submission_id)

    def read(self, offset: int, limit: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(limit)

    def close(self) -> None:
        """Let go without reconciling (a detach: the next session goes on from the copy)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if not self._out.closed:
            self._out.close()

"""Reading files on the ssh runner's host over SFTP: the job's log, tailed by byte offset with
reads kept under way ahead of the caller (read-ahead), and small files (exit codes, /proc)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass

import asyncssh

from trainboard.backend.runners.base import JobHandle
from trainboard.backend.runners.ssh.connection import SshLink

READ_AHEAD = 2  # chunks read ahead of the caller (see LogReader.tail)
SMALL_FILE = 65536  # bytes read of an exit code, interruption notice or /proc file


@dataclass
class _Prefetch:
    offset: int
    limit: int
    task: asyncio.Task[bytes]


async def read_small(sftp: asyncssh.SFTPClient, path: str) -> bytes | None:
    """A small file's content (a /proc file too: their size reads 0); None when missing. A process's
    /proc file read as the process ends fails with ESRCH, which the SFTP server says as a bare
    "Failure": the process is gone, and that is None too."""
    try:
        async with sftp.open(path, "rb") as fh:
            data = await fh.read(SMALL_FILE, 0)
    except asyncssh.SFTPNoSuchFile:
        return None
    except asyncssh.SFTPFailure:
        if path.startswith("/proc/"):
            return None
        raise
    return data if isinstance(data, bytes) else data.encode()


class LogReader:
    """The jobs' logs, each kept open over the connection's SFTP session for its life."""

    def __init__(self, link: SshLink) -> None:
        self.link = link
        self.read_ahead = READ_AHEAD  # reads tail() keeps under way after a full one; 0: none
        self._files: dict[str, tuple[int, asyncssh.SFTPClientFile]] = {}
        self._open_lock = asyncio.Lock()
        self._prefetch: dict[str, collections.deque[_Prefetch]] = {}  # log path -> reads under way, in order
        self._stray: set[asyncio.Task[bytes]] = set()  # reads no longer wanted, left to finish
        link.on_connect.append(lambda conn: self._files.clear())
        link.on_drop.append(self._files.clear)

    async def _file(self, conn: asyncssh.SSHClientConnection, gen: int, path: str) -> asyncssh.SFTPClientFile:
        """The log open for reading over SFTP, kept open for the life of the connection."""
        held = self._files.get(path)
        if held is not None and held[0] == gen:
            return held[1]
        sftp = await self.link.sftp_client(conn, gen)
        async with self._open_lock:
            held = self._files.get(path)
            if held is not None and held[0] == gen:
                return held[1]
            fh = await sftp.open(path, "rb")
            self._files[path] = (gen, fh)
            return fh

    async def _read(self, conn: asyncssh.SSHClientConnection, gen: int, path: str, offset: int, limit: int) -> bytes:
        try:
            fh = await self._file(conn, gen, path)
        except asyncssh.SFTPNoSuchFile:
            return b""
        block = fh.read_len or limit
        health = self.link.health

        async def answered(size: int, at: int) -> bytes | str:
            data = await fh.read(size, at)
            health.mark()  # a slow link's reads keep the health check content
            return data

        if limit <= block:
            data = await answered(limit, offset)
            return data if isinstance(data, bytes) else data.encode()
        # The blocks at once (asyncssh's own parallel read leaves failed requests unretrieved
        # when the connection drops); contiguous up to the first short block.
        parts = await asyncio.gather(*(answered(min(block, limit - at), offset + at) for at in range(0, limit, block)),
                                     return_exceptions=True)
        out = bytearray()
        for at, part in zip(range(0, limit, block), parts, strict=True):
            if isinstance(part, BaseException):
                raise part
            out += part if isinstance(part, bytes) else part.encode()
            if len(part) < min(block, limit - at):
                break
        return bytes(out)

    def forget(self, path: str) -> None:
        """Reads of ``path`` under way, and its open handle, are let go of (a new job writes it)."""
        for pending in self._prefetch.pop(path, ()):
            self._discard(pending)
        self._files.pop(path, None)

    def close(self) -> None:
        """Every read under way is let go of."""
        for queue in self._prefetch.values():
            for pending in queue:
                self._discard(pending)
        self._prefetch.clear()

    def _discard(self, pending: _Prefetch) -> None:
        """Drop a read under way without cancelling it (a cancelled asyncssh read leaves its
        own request tasks' errors unretrieved); it finishes on its own, unseen."""
        self._stray.add(pending.task)
        pending.task.add_done_callback(self._stray.discard)

    def _read_ahead(self, path: str, offset: int, limit: int) -> None:
        """Keep ``read_ahead`` reads of ``limit`` bytes under way after ``offset``."""
        conn, gen = self.link.conn, self.link.gen
        if conn is None or self.read_ahead <= 0:
            return
        queue = self._prefetch.setdefault(path, collections.deque())
        while len(queue) < self.read_ahead:
            at = queue[-1].offset + limit if queue else offset
            task = asyncio.get_running_loop().create_task(self._read(conn, gen, path, at, limit))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: never logged as lost
            queue.append(_Prefetch(at, limit, task))

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the log from ``offset`` (b"" when nothing is new).

        A full read keeps the next ``read_ahead`` reads under way (read-ahead), so
        the transfer of the next chunks overlaps the caller's work on this one.
        """
        path = handle.log_path
        data: bytes | None = None
        queue = self._prefetch.get(path)
        if queue:
            head = queue.popleft()
            if head.offset == offset and head.limit == limit and not head.task.cancelled():
                with contextlib.suppress(Exception):
                    data = await head.task
            else:
                self._discard(head)
            if data is None or len(data) < limit:
                # Short or failed: what was read after it is not contiguous with it.
                for later in queue:
                    self._discard(later)
                queue.clear()
            data = data or None  # nothing then: read again, the log may have grown since
        if data is None:
            data = await self.link.retry(lambda conn: self._read(conn, self.link.gen, path, offset, limit))
        if data and len(data) == limit:
            self._read_ahead(path, offset + len(data), limit)
        return data

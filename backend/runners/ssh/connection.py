"""The ssh runner's connection to its host: made on demand, with its SFTP session, made again
after a drop with exponential backoff (several attempts under way at once), and the retry of
every operation that needs it."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncssh

from trainboard.backend import events as ev
from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ssh.health import HealthCheck
from trainboard.backend.runners.ssh.shell import as_text
from trainboard.backend.runners.ssh.target import HostKeyError, SshTarget, connect_options, host_key_message, trusted

T = TypeVar("T")

BACKOFF_START = 0.05  # seconds before the first reconnect attempt
BACKOFF_CAP = 0.5  # the longest wait between attempts: a host that is back is found within this
MAX_ATTEMPTS = 4  # connection attempts under way at once while reconnecting (see SshLink.open_with_backoff)

# Errors that mean the connection is gone (others are only when it is also closed).
_LOST: tuple[type[BaseException], ...] = (
    asyncssh.DisconnectError,  # ConnectionLost among them
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    ConnectionError,
    EOFError,
    asyncio.IncompleteReadError,
    TimeoutError,
)


class _Unreachable(RunnerError):
    """A connection attempt failed in a way that may pass (refused, timed out, reset)."""


class _Lost(Exception):
    """A remote command ended without an exit status: the connection went away under it."""


class _Client(asyncssh.SSHClient):
    """Notes when its connection ends, so errors on a dead connection are told apart from real ones."""

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


Attempt = asyncio.Task[tuple[asyncssh.SSHClientConnection, _Client]]


class SshLink:
    """One run's connection to its host. ``on_connect`` hooks run for each new connection
    (the forwards are made again there), ``on_drop`` hooks when one is let go of."""

    def __init__(self, target: SshTarget, kind: str, reconnect_timeout: float,
                 emit: Callable[[ev.Event], None]) -> None:
        self.target = target
        self.kind = kind
        self.reconnect_timeout = reconnect_timeout
        self.emit = emit  # RunnerChanged and Notice events, to the runner's notify
        self.run_folder = ""  # absolute, on the host (the health probe stats it)
        self.details: tuple[tuple[str, str], ...] = ()
        self.address = target.host
        self.host, self.port = target.host, target.port or 22
        self.conn: asyncssh.SSHClientConnection | None = None
        self.client: _Client | None = None
        self.gen = 0  # bumped on every new connection
        self.connected_once = False
        self.lock = asyncio.Lock()  # one (re)connect at a time
        self.health = HealthCheck(self)
        self.on_connect: list[Callable[[asyncssh.SSHClientConnection], None]] = []
        self.on_drop: list[Callable[[], None]] = []
        self._kwargs: dict[str, Any] | None = None  # asyncssh.connect arguments, resolved once
        self._known_hosts_files: list[str] = []
        self._sftp: tuple[int, asyncssh.SFTPClient] | None = None
        self._sftp_lock = asyncio.Lock()
        self._gave_up: tuple[int, str] | None = None  # (generation, why): a reconnect that failed for good

    # -- one connection -----------------------------------------------------------------------------------------

    async def _connect_kwargs(self) -> dict[str, Any]:
        """asyncssh.connect arguments: the target, completed from the ssh config; host keys always checked."""
        if self._kwargs is not None:
            return self._kwargs
        kwargs, probe = await connect_options(self.target)
        self.address = f"{probe.username}@{probe.host}:{probe.port}"
        self.host, self.port = probe.host, probe.port
        kwargs["known_hosts"], self._known_hosts_files = trusted(self.target, probe.known_hosts)
        self._kwargs = kwargs
        return kwargs

    def forget_settings(self) -> None:
        """Let go of the connection and resolve the (new) target again on the next connect."""
        self._kwargs = None
        self.drop()
        self.connected_once = False

    async def _attempt(self, timeout: float) -> tuple[asyncssh.SSHClientConnection, _Client]:
        """One connection attempt: the connection, not yet the runner's."""
        kwargs = await self._connect_kwargs()
        client = _Client()
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(client_factory=lambda: client, **kwargs), max(0.05, timeout))
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(host_key_message(self.target, self.host, self.port, self.address,
                                                self._known_hosts_files, exc)) from exc
        except asyncssh.PermissionDenied as exc:
            raise _Unreachable(f"{self.address} refused the login ({exc}): check the user, the key "
                               "(identity_file, ssh-agent) and the host's authorized_keys") from exc
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise RunnerError(f"cannot use the ssh settings for {self.address}: {exc}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused (is sshd running there, on that port?)"
            elif isinstance(exc, socket.gaierror):
                reason = f"unknown host name ({exc})"
            raise _Unreachable(f"could not connect to {self.address}: {reason}") from exc
        return conn, client

    def _adopt(self, conn: asyncssh.SSHClientConnection, client: _Client) -> None:
        """``conn`` becomes the runner's connection: watched, with its forwards made again."""
        self.conn, self.client = conn, client
        self.gen += 1
        self.connected_once = True
        self._gave_up = None
        self._sftp = None
        self.health.start(conn, self.gen)
        for hook in self.on_connect:
            hook(conn)

    def alive(self) -> bool:
        return self.conn is not None and self.client is not None and not self.client.lost

    def drop(self) -> None:
        """Let go of the connection at once (aborted: it may be dead)."""
        conn = self._forget()
        if conn is not None:
            conn.abort()

    def _forget(self) -> asyncssh.SSHClientConnection | None:
        conn, self.conn = self.conn, None
        self._sftp = None
        for hook in self.on_drop:
            hook()
        return conn

    async def close(self) -> None:
        """Close the connection (waiting a moment for it) and stop watching it."""
        self.health.stop()
        conn = self._forget()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2.0)

    async def sftp_client(self, conn: asyncssh.SSHClientConnection, gen: int) -> asyncssh.SFTPClient:
        """The connection's SFTP session (one per connection)."""
        if self._sftp is not None and self._sftp[0] == gen:
            return self._sftp[1]
        async with self._sftp_lock:
            if self._sftp is None or self._sftp[0] != gen:
                self._sftp = (gen, await conn.start_sftp_client())
            return self._sftp[1]

    # -- connecting and reconnecting ------------------------------------------------------------------------------

    async def ensure(self) -> tuple[asyncssh.SSHClientConnection, int]:
        """The live connection and its generation; connects (once, or with backoff after a drop)."""
        conn = self.conn
        if conn is not None and self.alive():
            return conn, self.gen
        if self.connected_once:
            await self.recover(self.gen, "the connection was closed")
        else:
            async with self.lock:
                if self.conn is None:
                    self._adopt(*await self._attempt(self.target.connect_timeout))
        assert self.conn is not None
        return self.conn, self.gen

    def _changed(self, state: str) -> ev.RunnerChanged:
        return ev.RunnerChanged(state=state, kind=self.kind, address=self.address, details=self.details)

    async def recover(self, gen: int, reason: str) -> None:
        """Reconnect with exponential backoff after the connection of generation ``gen`` was lost."""
        async with self.lock:
            if self.gen != gen and self.alive():
                return  # another caller has reconnected already
            if self._gave_up is not None and self._gave_up[0] == gen:
                raise RunnerError(self._gave_up[1])  # tried for reconnect_timeout already: not again
            self.drop()
            self.emit(self._changed("reconnecting"))
            self.emit(ev.Notice(f"lost the connection to {self.address} ({reason}): reconnecting"))
            started = time.monotonic()
            try:
                await self.open_with_backoff(
                    started + self.reconnect_timeout, BACKOFF_START, 2.0, BACKOFF_CAP,
                    f"lost the connection to {self.address} and could not reconnect "
                    f"within {self.reconnect_timeout:g} s")
            except RunnerError as exc:
                self._gave_up = (gen, str(exc))
                raise
            self.emit(self._changed("ready"))
            self.emit(ev.Notice(f"reconnected to {self.address} after {time.monotonic() - started:.1f} s"))

    async def open_with_backoff(self, deadline: float, delay: float, factor: float, cap: float,
                                failure: str) -> None:
        """Connection attempts until one succeeds, a new one every ``delay`` s (growing by ``factor``
        up to ``cap``); RunnerError(``failure``: the last reason) once ``deadline`` (monotonic) has passed.

        An attempt that hangs (a host that does not answer yet: packets dropped, a blackhole)
        does not hold the next one back: up to MAX_ATTEMPTS are under way at once, the oldest
        given up for a new one, so that an attempt made after the network heals gets through
        at once rather than after connect_timeout.
        """
        pending: dict[Attempt, float] = {}
        last = "no answer"
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0 and not pending:
                    raise RunnerError(f"{failure}: {last}")
                if remaining > 0:
                    if len(pending) >= MAX_ATTEMPTS:
                        oldest = min(pending, key=pending.__getitem__)
                        del pending[oldest]
                        _abandon(oldest)
                    attempt = loop.create_task(self._attempt(min(self.target.connect_timeout, max(remaining, 0.05))))
                    pending[attempt] = now
                made, last = await self._wait_attempts(pending, now + delay if remaining > 0 else None, last)
                if made:
                    return
                delay = min(delay * factor, cap)
        finally:
            for task in pending:
                _abandon(task)

    async def _wait_attempts(self, pending: dict[Attempt, float], tick: float | None, last: str) -> tuple[bool, str]:
        """Until ``tick`` (monotonic; None: until one ends): whether an attempt got through (it is
        adopted), and the latest reason one failed. A host key or settings problem is raised."""
        while True:
            left = tick - time.monotonic() if tick is not None else None
            if left is not None and left <= 0:
                return False, last
            if not pending:
                if left is not None:
                    await asyncio.sleep(left)
                return False, last
            done, _ = await asyncio.wait(set(pending), timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                return False, last
            for task in done:
                del pending[task]
            made = [task.result() for task in done if task.exception() is None]
            if made:
                self._adopt(*made[0])
                for extra, _client in made[1:]:
                    extra.close()
                return True, last
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, _Unreachable):
                    raise exc  # a host key or settings problem: final
                last = str(exc)

    async def wait_ready(self, timeout: float) -> None:
        """Connect, retrying with backoff, until sshd answers and its host key verifies."""
        deadline = time.monotonic() + timeout
        async with self.lock:
            if self.alive():
                return
            await self.open_with_backoff(deadline, 0.25, 1.5, 2.0,
                                         f"{self.address} did not accept SSH within {timeout:g} s")

    # -- operations on the connection -----------------------------------------------------------------------------

    def _is_lost(self, exc: BaseException, gen: int) -> bool:
        if isinstance(exc, (_Lost, *_LOST)):
            return True
        if isinstance(exc, OSError | asyncssh.Error):
            return gen != self.gen or self.client is None or self.client.lost
        return False

    async def retry(self, op: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]) -> T:
        """Run ``op`` on the connection; after a drop, reconnect and run it again."""
        while True:
            conn, gen = await self.ensure()
            try:
                return await op(conn)
            except (OSError, asyncssh.Error, EOFError, TimeoutError, _Lost) as exc:
                await asyncio.sleep(0)  # let the connection's own close callbacks run first
                if not self._is_lost(exc, gen):
                    raise RunnerError(f"{self.address}: {exc}") from exc
                reason = str(exc) or type(exc).__name__
            await self.recover(gen, reason)

    async def run(self, conn: asyncssh.SSHClientConnection, script: str, input: bytes | None = None,
                  ) -> tuple[int, bytes, bytes]:
        """``bash -c script`` on the host: exit status, stdout, stderr."""
        result = await conn.run("bash -c " + shlex.quote(script), input=input, encoding=None, check=False)
        if result.exit_status is None and result.exit_signal is None:
            raise _Lost("the command ended without an exit status")
        status = result.exit_status if result.exit_status is not None else 255
        stdout = result.stdout if isinstance(result.stdout, bytes) else as_text(result.stdout).encode()
        stderr = result.stderr if isinstance(result.stderr, bytes) else as_text(result.stderr).encode()
        return status, stdout, stderr

    async def execute(self, script: str, input: bytes | None = None, retry: bool = True) -> tuple[int, bytes, bytes]:
        """Run a bash script on the host (reconnecting first if needed): exit status, stdout, stderr.

        With ``retry`` the script runs again after a dropped connection: it must be idempotent.
        """
        if retry:
            return await self.retry(lambda conn: self.run(conn, script, input))
        conn, _ = await self.ensure()
        try:
            return await self.run(conn, script, input)
        except (OSError, asyncssh.Error, _Lost) as exc:
            raise RunnerError(f"{self.address}: {exc}") from exc

    async def in_run_folder_quietly(self, script: str) -> None:
        """Best effort, for teardown: ``script`` in the run folder, if connected, within stall_timeout."""
        if not self.run_folder or self.conn is None:
            return
        script = f"cd {shlex.quote(self.run_folder)} 2>/dev/null || exit 0\n{script}exit 0\n"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.execute(script, retry=False), self.target.stall_timeout)


def _abandon(attempt: Attempt) -> None:
    """Give up on a connection attempt; should it have got through meanwhile, close that connection."""
    attempt.cancel()

    def closed(task: Attempt) -> None:
        if not task.cancelled() and task.exception() is None:
            task.result()[0].close()

    attempt.add_done_callback(closed)

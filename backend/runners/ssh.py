"""The `ssh` runner: any host reached over SSH (asyncssh). The ec2 runner reuses it.

On the host, each run has one folder, ``<remote_dir>/<run_id>/`` (mode 0700;
``~`` is the remote home, resolved once), holding::

    workspace/            the synced code (and params.yaml)
    <name>.sh             the job wrapper (name: setup or job), see local.job_script
    <name>.env            the job's environment (0600), sourced by the wrapper; gone at teardown
    <name>.log            everything the job printed; tailed by byte offset; gone at teardown
                          (the session keeps the masked copy)
    <name>.exit           its exit code, written when it ends
    <name>.pid            the wrapper's pid: the job's session and process-group id
    interruption          written by the EC2 watchdog on a spot interruption notice

The job is started detached in its own session (``setsid``), so it outlives
the SSH connection. Host keys are always verified: against ``known_hosts``
(or ~/.ssh/known_hosts, or the ssh config's UserKnownHostsFile), or, when the
target lists ``host_keys``, against those only. A dropped connection is
re-established with exponential backoff by every operation that needs it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import os
import posixpath
import re
import secrets
import shlex
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from trainboard.backend import events as ev
from trainboard.backend.runners.base import Capabilities, Host, JobHandle, JobSpec, JobStatus, Notify, RunnerError
from trainboard.backend.runners.local import job_script

T = TypeVar("T")

BACKOFF_START = 0.05  # seconds before the first reconnect attempt
BACKOFF_CAP = 0.5  # the longest wait between attempts: a host that is back is found within this
KEEPALIVE_COUNT_MAX = 3  # unanswered keepalives before the connection counts as lost
STALL_TIMEOUT = 10.0  # default: seconds without an answer before a connection counts as lost (see _watch)
PROBE_EVERY = 2.0  # at most this long between two probes of a connection that has said nothing
MAX_ATTEMPTS = 4  # connection attempts under way at once while reconnecting (see _open_with_backoff)
RELAY_WAIT = 60.0  # seconds a job's connection waits at the relay for a forward (see forward_relay.py)
RELAY_SOURCE = "forward_relay.py"  # package data, run on the host with its python3
WATCHDOG_SOURCE = "orphan_watchdog.sh"  # package data: each job's dead-man switch on the host
ORPHAN_TIMEOUT = 900.0  # seconds without word from trainboard before a job's watchdog stops it (0: never)
ALIVE = "alive"  # in the run folder: touched while a session holds the run
DETACHED = "detached"  # in the run folder: the run was left on purpose; its watchdogs wait
SMALL_FILE = 65536  # bytes read of an exit code, interruption notice or /proc file
READ_AHEAD = 2  # chunks read ahead of the caller (see SshRunner.tail)
PID_WAIT_STEPS = 200  # x 0.025 s: how long start() waits for the job to write its pid
CLEANUP_TIMEOUT = 15.0  # seconds teardown tries to remove the secrets files and raw logs from the host
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RUN_ID = re.compile(r"[A-Za-z0-9._-]+\Z")
# AES-GCM first (AES-NI makes it the cheapest cipher here: ~1.5x the log throughput of
# asyncssh's default chacha20-poly1305); the rest of asyncssh's list after it. An ssh
# config's Ciphers line wins.
PREFERRED_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
MARK = "TRAINBOARD "  # prefixes the lines this runner parses: login noise is ignored

# A shell function: whether any process of group $1 is alive (zombies, which
# `kill -0` still finds, do not count).
ALIVE_FN = (
    "alive() { kill -0 -- \"-$1\" 2>/dev/null || return 1; command -v ps >/dev/null 2>&1 || return 0; "
    "ps -eo pgid=,stat= | awk -v g=\"$1\" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }"
)

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


class HostKeyError(RunnerError):
    """The host's key is unknown or does not match: never retried, never skipped."""


class _Unreachable(RunnerError):
    """A connection attempt failed in a way that may pass (refused, timed out, reset)."""


class _Lost(Exception):
    """A remote command ended without an exit status: the connection went away under it."""


@dataclass
class SshTarget:
    """Where and how to connect. ``None`` fields come from the ssh config, then the defaults."""

    host: str
    port: int | None = 22  # None: the ssh config's Port, else 22
    user: str | None = None
    client_keys: list[str] | None = None  # private key paths; None = asyncssh defaults (agent, ~/.ssh/id_*)
    known_hosts: str | None = None  # known_hosts path; None = ~/.ssh/known_hosts
    host_keys: list[str] = field(default_factory=list)  # "ssh-ed25519 AAAA..." lines; when given, ONLY these
    config_path: str | None = None  # ssh config file; None = ~/.ssh/config if it exists
    keepalive: float = 15.0
    connect_timeout: float = 20.0
    stall_timeout: float = STALL_TIMEOUT  # no answer this long: the connection is dropped and made again
    orphan_timeout: float = ORPHAN_TIMEOUT  # no word from trainboard this long: the host stops the job

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "user": self.user, "client_keys": self.client_keys,
            "known_hosts": self.known_hosts, "host_keys": list(self.host_keys), "config_path": self.config_path,
            "keepalive": self.keepalive, "connect_timeout": self.connect_timeout,
            "stall_timeout": self.stall_timeout, "orphan_timeout": self.orphan_timeout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SshTarget:
        return cls(
            host=str(data["host"]), port=data.get("port"), user=data.get("user"),
            client_keys=data.get("client_keys"), known_hosts=data.get("known_hosts"),
            host_keys=list(data.get("host_keys") or []), config_path=data.get("config_path"),
            keepalive=float(data.get("keepalive", 15.0)), connect_timeout=float(data.get("connect_timeout", 20.0)),
            stall_timeout=float(data.get("stall_timeout", STALL_TIMEOUT)),
            orphan_timeout=float(data.get("orphan_timeout", ORPHAN_TIMEOUT)),
        )


class _Client(asyncssh.SSHClient):
    """Notes when its connection ends, so errors on a dead connection are told apart from real ones."""

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@dataclass
class _Prefetch:
    offset: int
    limit: int
    task: asyncio.Task[bytes]


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path


def _remote_path_expr(path: str) -> str:
    """A shell word for a remote path, with a leading ``~`` meaning the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def _marked(output: str) -> dict[str, str]:
    """``TRAINBOARD key=value`` lines of a remote command's output."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(MARK) and "=" in line:
            key, _, value = line[len(MARK):].partition("=")
            found[key] = value
    return found


def _build_tar(source: Path, files: list[str], extra: dict[str, bytes]) -> bytes:
    """A gzip (level 1) tar of ``files`` (relative to ``source``; symlinks kept as links) plus ``extra``."""
    buf = io.BytesIO()

    def owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            src = source / rel
            if src.is_symlink() or src.is_file():
                tar.add(str(src), arcname=rel, recursive=False, filter=owned_by_nobody)
        now = time.time()
        for rel, data in extra.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(now)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class SshRunner:
    """Runs jobs on a host over SSH; see the module docstring for the layout on the host."""

    kind = "ssh"

    def __init__(self, target: SshTarget, run_dir: Path, run_id: str, remote_dir: str = "~/.trainboard/runs",
                 reconnect_timeout: float = 300.0, kind: str = "ssh") -> None:
        if not RUN_ID.match(run_id):
            raise RunnerError(f"bad run id {run_id!r}")
        self.target = target
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.remote_dir = remote_dir
        self.reconnect_timeout = reconnect_timeout
        self.kind = kind
        self.capabilities = Capabilities(shares_filesystem=False, relays_tracking=True,
                                         orphan_timeout=target.orphan_timeout)
        self.notify: Notify | None = None
        self.read_ahead = READ_AHEAD  # reads tail() keeps under way after a full one; 0: none
        self.run_folder = ""  # absolute, on the host; known after provision() or reattach()
        self.workspace = ""
        self.details: tuple[tuple[str, str], ...] = ()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: _Client | None = None
        self._gen = 0  # bumped on every new connection
        self._connected_once = False
        self._lock = asyncio.Lock()  # one (re)connect at a time
        self._kwargs: dict[str, Any] | None = None  # asyncssh.connect arguments, resolved once
        self._address = target.host
        self._host, self._port = target.host, target.port or 22
        self._known_hosts_files: list[str] = []
        self._sftp: tuple[int, asyncssh.SFTPClient] | None = None
        self._files: dict[str, tuple[int, asyncssh.SFTPClientFile]] = {}
        self._open_lock = asyncio.Lock()
        self._sftp_lock = asyncio.Lock()
        self._prefetch: dict[str, collections.deque[_Prefetch]] = {}  # log path -> reads under way, in order
        self._stray: set[asyncio.Task[bytes]] = set()  # reads no longer wanted, left to finish
        self._forwards: dict[int, int] = {}  # local port -> port on the host
        self._listeners: dict[int, asyncssh.SSHListener] = {}
        self._reforwards: set[asyncio.Task[None]] = set()
        self._relay_port = 0  # the relay's port on the host (0: no relay, the job uses the forward itself)
        self.relay_wait = RELAY_WAIT  # how long a job's MLflow call waits at the relay for a forward
        self._watch_task: asyncio.Task[None] | None = None  # the connection's health check (see _watch)
        self._heartbeat_task: asyncio.Task[None] | None = None  # touches ALIVE for the jobs' watchdogs
        self._watchdog_sent = False  # orphan_watchdog.sh is in the run folder
        self._heard = 0.0  # monotonic time of the last answer from the host
        self._bulk = 0  # bulk transfers under way (their data may queue a probe's answer behind it)
        self._gave_up: tuple[int, str] | None = None  # (generation, why): a reconnect that failed for good

    @classmethod
    def from_config(cls, cfg: Any, run_dir: Path, run_id: str) -> SshRunner:
        """From a ``runner: {kind: ssh, ...}`` section (trainboard.backend.config.SshRunnerConfig)."""
        target = SshTarget(
            host=cfg.host,
            port=cfg.port,
            user=cfg.user,
            client_keys=[_expand(cfg.identity_file) or ""] if cfg.identity_file else None,
            known_hosts=_expand(cfg.known_hosts),
            config_path=_expand(cfg.ssh_config),
            keepalive=float(cfg.keepalive_seconds),
            connect_timeout=float(cfg.connect_timeout),
            stall_timeout=float(cfg.stall_timeout),
            orphan_timeout=float(cfg.orphan_timeout),
        )
        return cls(target, run_dir, run_id, remote_dir=cfg.remote_dir, reconnect_timeout=float(cfg.reconnect_timeout))

    # -- connection -------------------------------------------------------------------------------------------

    async def _connect_kwargs(self) -> dict[str, Any]:
        """asyncssh.connect arguments: the target, completed from the ssh config; host keys always checked."""
        if self._kwargs is not None:
            return self._kwargs
        t = self.target
        kwargs: dict[str, Any] = {
            "host": t.host,
            "keepalive_interval": t.keepalive,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "connect_timeout": t.connect_timeout,
        }
        if t.config_path:
            if not os.path.isfile(t.config_path):
                raise RunnerError(f"ssh config file {t.config_path} does not exist")
            kwargs["config"] = [t.config_path]
        elif os.access(default_config := os.path.expanduser("~/.ssh/config"), os.R_OK):
            # Named explicitly: building the options by hand does not read the default file.
            kwargs["config"] = [default_config]
        if t.port is not None:
            kwargs["port"] = t.port
        if t.user:
            kwargs["username"] = t.user
        if t.client_keys is not None:
            kwargs["client_keys"] = [_expand(k) for k in t.client_keys]
        try:
            probe = await asyncssh.SSHClientConnectionOptions.construct(**kwargs)
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise RunnerError(f"bad ssh settings for {t.host}: {exc}") from exc
        if probe.config.get("Ciphers") is None:
            kwargs["encryption_algs"] = PREFERRED_CIPHERS
        self._address = f"{probe.username}@{probe.host}:{probe.port}"
        self._host, self._port = probe.host, probe.port
        kwargs["known_hosts"] = self._trusted(probe.known_hosts)
        self._kwargs = kwargs
        return kwargs

    def _trusted(self, from_config: Any) -> Any:
        """What asyncssh's ``known_hosts`` gets: never None (that would turn checking off)."""
        t = self.target
        if t.host_keys:
            try:
                keys = [asyncssh.import_public_key(k) for k in t.host_keys]
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise RunnerError(f"bad host key for {t.host}: {exc}") from exc
            self._known_hosts_files = []
            return (keys, [], [])
        if t.known_hosts:
            candidates = [t.known_hosts]
        elif isinstance(from_config, list | tuple) and from_config and all(isinstance(p, str) for p in from_config):
            candidates = [os.path.expanduser(p) for p in from_config]  # UserKnownHostsFile from the ssh config
        else:
            candidates = [os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts"]
        existing = [p for p in candidates if os.path.isfile(p)]
        self._known_hosts_files = existing or candidates[:1]
        return existing if existing else ([], [], [])  # no file: nothing is trusted

    def _host_key_message(self, exc: Exception) -> str:
        host, port = self._host, self._port
        shown = host if port == 22 else f"[{host}]:{port}"
        if self.target.host_keys:
            return (f"the host key of {shown} does not match the key trainboard expected for it ({exc}): "
                    "refusing to connect")
        files = self._known_hosts_files
        known: list[Any] = []
        with contextlib.suppress(Exception):
            known = list(asyncssh.read_known_hosts([f for f in files if os.path.isfile(f)])
                         .match(host, host, None if port == 22 else port)[0])
        where = ", ".join(files) or "~/.ssh/known_hosts"
        if known:
            return (f"the host key of {shown} does not match the one in {where}: it may be a different machine "
                    f"(or an attack). If the host was reinstalled, remove the old key (ssh-keygen -R '{shown}'"
                    f"{' -f ' + files[0] if files else ''}) and add the new one after checking its fingerprint")
        port_opt = "" if port == 22 else f"-p {port} "
        return (f"the host key of {shown} is unknown (not in {where}). Check its fingerprint and add it: "
                f"ssh-keyscan {port_opt}{host} >> {files[0] if files else '~/.ssh/known_hosts'} "
                f"(or connect once with ssh {port_opt}{self._address.split(':')[0]})")

    async def _open(self, timeout: float) -> None:
        """One connection attempt; on success it becomes the runner's connection."""
        self._adopt(*await self._attempt(timeout))

    async def _attempt(self, timeout: float) -> tuple[asyncssh.SSHClientConnection, _Client]:
        """One connection attempt: the connection, not yet the runner's."""
        kwargs = await self._connect_kwargs()
        client = _Client()
        try:
            conn = await asyncio.wait_for(
                asyncssh.connect(client_factory=lambda: client, **kwargs), max(0.05, timeout))
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(self._host_key_message(exc)) from exc
        except asyncssh.PermissionDenied as exc:
            raise _Unreachable(f"{self._address} refused the login ({exc}): check the user, the key "
                               "(identity_file, ssh-agent) and the host's authorized_keys") from exc
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise RunnerError(f"cannot use the ssh settings for {self._address}: {exc}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused (is sshd running there, on that port?)"
            elif isinstance(exc, socket.gaierror):
                reason = f"unknown host name ({exc})"
            raise _Unreachable(f"could not connect to {self._address}: {reason}") from exc
        return conn, client

    def _adopt(self, conn: asyncssh.SSHClientConnection, client: _Client) -> None:
        """``conn`` becomes the runner's connection: watched, with its forwards made again."""
        self._conn, self._client = conn, client
        self._gen += 1
        self._connected_once = True
        self._gave_up = None
        self._sftp = None
        self._files.clear()
        self._heard = time.monotonic()
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(conn, self._gen))
        for local_port, remote_port in list(self._forwards.items()):
            self._reforward(conn, local_port, remote_port)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._sftp = None
        self._files.clear()
        self._listeners.clear()
        if conn is not None:
            conn.abort()

    def _publish(self, event: ev.Event) -> None:
        if self.notify is not None:
            self.notify(event)

    async def _ensure(self) -> tuple[asyncssh.SSHClientConnection, int]:
        """The live connection and its generation; connects (once, or with backoff after a drop)."""
        conn = self._conn
        if conn is not None and self._client is not None and not self._client.lost:
            return conn, self._gen
        if self._connected_once:
            await self._recover(self._gen, "the connection was closed")
        else:
            async with self._lock:
                if self._conn is None:
                    await self._open(self.target.connect_timeout)
        assert self._conn is not None
        return self._conn, self._gen

    async def _recover(self, gen: int, reason: str) -> None:
        """Reconnect with exponential backoff after the connection of generation ``gen`` was lost."""
        async with self._lock:
            if self._gen != gen and self._conn is not None and self._client is not None and not self._client.lost:
                return  # another caller has reconnected already
            if self._gave_up is not None and self._gave_up[0] == gen:
                raise RunnerError(self._gave_up[1])  # tried for reconnect_timeout already: not again
            self._drop_connection()
            self._publish(ev.RunnerChanged(state="reconnecting", kind=self.kind, address=self._address,
                                           details=self.details))
            self._publish(ev.Notice(f"lost the connection to {self._address} ({reason}): reconnecting"))
            started = time.monotonic()
            try:
                await self._open_with_backoff(
                    started + self.reconnect_timeout, BACKOFF_START, 2.0, BACKOFF_CAP,
                    f"lost the connection to {self._address} and could not reconnect "
                    f"within {self.reconnect_timeout:g} s")
            except RunnerError as exc:
                self._gave_up = (gen, str(exc))
                raise
            self._publish(ev.RunnerChanged(state="ready", kind=self.kind, address=self._address,
                                           details=self.details))
            self._publish(ev.Notice(f"reconnected to {self._address} after {time.monotonic() - started:.1f} s"))

    async def _open_with_backoff(self, deadline: float, delay: float, factor: float, cap: float,
                                 failure: str) -> None:
        """Connection attempts until one succeeds, a new one every ``delay`` s (growing by ``factor``
        up to ``cap``); RunnerError(``failure``: the last reason) once ``deadline`` (monotonic) has passed.

        An attempt that hangs (a host that does not answer yet: packets dropped, a blackhole)
        does not hold the next one back: up to MAX_ATTEMPTS are under way at once, the oldest
        given up for a new one, so that an attempt made after the network heals gets through
        at once rather than after connect_timeout.
        """
        pending: dict[asyncio.Task[tuple[asyncssh.SSHClientConnection, _Client]], float] = {}
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
                tick = now + delay
                while True:
                    left = tick - time.monotonic() if remaining > 0 else None
                    if left is not None and left <= 0:
                        break
                    if not pending:
                        if left is not None:
                            await asyncio.sleep(left)
                        break
                    done, _ = await asyncio.wait(set(pending), timeout=left, return_when=asyncio.FIRST_COMPLETED)
                    if not done:
                        break
                    for task in done:
                        del pending[task]
                    made = [task.result() for task in done if task.exception() is None]
                    if made:
                        self._adopt(*made[0])
                        for extra, _client in made[1:]:
                            extra.close()
                        return
                    for task in done:
                        exc = task.exception()
                        if exc is not None and not isinstance(exc, _Unreachable):
                            raise exc  # a host key or settings problem: final
                        last = str(exc)
                delay = min(delay * factor, cap)
        finally:
            for task in pending:
                _abandon(task)

    async def _watch(self, conn: asyncssh.SSHClientConnection, gen: int) -> None:
        """The connection's health check, for as long as it is the runner's.

        Keepalives alone find a dead connection only after ``keepalive`` x 3 seconds (a
        blackhole: packets dropped, a NAT or VPN that forgot the session) and say nothing
        meanwhile. Here, whenever the host has said nothing for a moment, an SFTP stat
        probes it; when nothing at all has come back from it (the log's reads count too)
        for ``stall_timeout`` seconds, the connection is dropped, the views are told
        (RunnerChanged "reconnecting" and a notice with the reason), and it is made again
        with the usual backoff. A connection that ends (a cut) is made again at once too.
        """
        stall = self.target.stall_timeout
        every = min(PROBE_EVERY, stall / 3)
        loop = asyncio.get_running_loop()
        while self._conn is conn:
            quiet = time.monotonic() - self._heard
            if quiet < every:
                await asyncio.sleep(every - quiet)
                continue
            probe = loop.create_task(self._probe(conn, gen))
            probe.add_done_callback(_retrieve)
            while not probe.done():
                await asyncio.wait({probe}, timeout=min(0.25, every))
                if self._conn is not conn:
                    return
                if not probe.done() and time.monotonic() - self._heard >= stall and not self._bulk:
                    await self._recover_in_background(gen, f"no answer from the host for {stall:g} s")
                    return
            if self._client is not None and self._client.lost and self._conn is conn:
                await self._recover_in_background(gen, "the connection was closed")
                return

    @contextlib.contextmanager
    def _bulk_transfer(self) -> Iterator[None]:
        """While a large transfer runs, a probe's answer may queue behind its data: keepalives judge then."""
        self._bulk += 1
        try:
            yield
        finally:
            self._bulk -= 1
            self._heard = time.monotonic()

    async def _probe(self, conn: asyncssh.SSHClientConnection, gen: int) -> None:
        if self._gen != gen:
            return
        sftp = await self._sftp_client(conn, gen)
        await sftp.stat(self.run_folder or ".")
        if self._conn is conn:
            self._heard = time.monotonic()

    async def _recover_in_background(self, gen: int, reason: str) -> None:
        """_recover for the health check: a failure is kept (the next operation raises it), never raised here."""
        with contextlib.suppress(RunnerError):
            await self._recover(gen, reason)

    def _is_lost(self, exc: BaseException, gen: int) -> bool:
        if isinstance(exc, (_Lost, *_LOST)):
            return True
        if isinstance(exc, OSError | asyncssh.Error):
            return gen != self._gen or self._client is None or self._client.lost
        return False

    async def _retry(self, op: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]) -> T:
        """Run ``op`` on the connection; after a drop, reconnect and run it again."""
        while True:
            conn, gen = await self._ensure()
            try:
                return await op(conn)
            except (OSError, asyncssh.Error, EOFError, TimeoutError, _Lost) as exc:
                await asyncio.sleep(0)  # let the connection's own close callbacks run first
                if not self._is_lost(exc, gen):
                    raise RunnerError(f"{self._address}: {exc}") from exc
                reason = str(exc) or type(exc).__name__
            await self._recover(gen, reason)

    async def _run(self, conn: asyncssh.SSHClientConnection, script: str, input: bytes | None = None,
                   ) -> tuple[int, bytes, bytes]:
        """``bash -c script`` on the host: exit status, stdout, stderr."""
        result = await conn.run("bash -c " + shlex.quote(script), input=input, encoding=None, check=False)
        if result.exit_status is None and result.exit_signal is None:
            raise _Lost("the command ended without an exit status")
        status = result.exit_status if result.exit_status is not None else 255
        stdout = result.stdout if isinstance(result.stdout, bytes) else _text(result.stdout).encode()
        stderr = result.stderr if isinstance(result.stderr, bytes) else _text(result.stderr).encode()
        return status, stdout, stderr

    async def execute(self, script: str, input: bytes | None = None, retry: bool = True) -> tuple[int, bytes, bytes]:
        """Run a bash script on the host (reconnecting first if needed): exit status, stdout, stderr.

        With ``retry`` the script runs again after a dropped connection: it must be idempotent.
        """
        if retry:
            return await self._retry(lambda conn: self._run(conn, script, input))
        conn, _ = await self._ensure()
        try:
            return await self._run(conn, script, input)
        except (OSError, asyncssh.Error, _Lost) as exc:
            raise RunnerError(f"{self._address}: {exc}") from exc

    async def wait_ready(self, timeout: float) -> None:
        """Connect, retrying with backoff, until sshd answers and its host key verifies.

        A host key that is unknown or does not match fails at once (HostKeyError).
        """
        deadline = time.monotonic() + timeout
        async with self._lock:
            if self._conn is not None and self._client is not None and not self._client.lost:
                return
            await self._open_with_backoff(deadline, 0.25, 1.5, 2.0,
                                          f"{self._address} did not accept SSH within {timeout:g} s")

    # -- the runner protocol ------------------------------------------------------------------------------------

    async def provision(self) -> Host:
        """Connect, make the run folder (0700) and its workspace; the host's python version and cpus."""
        run = _remote_path_expr(posixpath.join(self.remote_dir, self.run_id))
        script = (
            f"umask 077; d={run}; mkdir -p \"$d/workspace\" && chmod 700 \"$d\" && cd \"$d\" || exit 1\n"
            f"printf '{MARK}run=%s\\n' \"$(pwd)\"\n"
            f"printf '{MARK}host=%s\\n' \"$(uname -n 2>/dev/null)\"\n"
            f"printf '{MARK}python=%s\\n' \"$(python3 -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)\"\n"
            f"printf '{MARK}cpus=%s\\n' \"$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)\"\n"
        )
        status, out, err = await self.execute(script)
        found = _marked(_text(out))
        if status != 0 or not found.get("run", "").startswith("/"):
            raise RunnerError(f"could not make the run folder under {self.remote_dir} on {self._address}: "
                              f"{_text(err).strip() or _text(out).strip() or f'exit status {status}'}")
        self.run_folder = found["run"]
        self.workspace = posixpath.join(self.run_folder, "workspace")
        self.details = (("host", found.get("host", "")), ("python", found.get("python", "")),
                        ("cpus", found.get("cpus", "")))
        return self._host_record()

    def _host_record(self) -> Host:
        return Host(kind=self.kind, address=self._address, workspace=self.workspace, details=self.details)

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target.to_dict(),
            "address": self._address,
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
        self._kwargs = None
        self._drop_connection()
        self._connected_once = False
        detached = shlex.quote(posixpath.join(self.run_folder, DETACHED))
        status, _, _ = await self.execute(f"test -d {shlex.quote(self.workspace)} && rm -f {detached}")
        if status != 0:
            raise RunnerError(f"{self.workspace} is gone from {self._address}")
        self._watchdog_sent = True  # the first session sent it
        self._keep_alive()
        return self._host_record()

    def _require_provisioned(self) -> None:
        if not self.run_folder:
            raise RunnerError("the ssh runner is not provisioned")

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
        """The listed files (and ``extra`` members) into the workspace: one tar over one channel."""
        self._require_provisioned()
        data = await asyncio.to_thread(_build_tar, Path(source), files, extra)
        ws = shlex.quote(self.workspace)
        with self._bulk_transfer():
            status, _, err = await self.execute(f"mkdir -p {ws} && tar -xzf - --no-same-owner -C {ws}", input=data)
        if status != 0:
            raise RunnerError(f"could not unpack the code on {self._address}: {_text(err).strip()}")

    def _paths(self, name: str) -> dict[str, str]:
        base = posixpath.join(self.run_folder, name)
        return {k: f"{base}.{k}" for k in ("sh", "log", "exit", "pid", "env")}

    async def start(self, spec: JobSpec) -> JobHandle:
        """Write the job's wrapper and start it detached (setsid); its pid, log and exit-file paths."""
        self._require_provisioned()
        if not RUN_ID.match(spec.name):
            raise RunnerError(f"bad job name {spec.name!r}")
        for name in spec.env:
            if not ENV_NAME.match(name):
                raise RunnerError(f"bad environment variable name {name!r}")
        p = self._paths(spec.name)
        workdir = posixpath.normpath(posixpath.join(self.workspace, spec.workdir))
        nonce = secrets.token_hex(8)
        env = {"PYTHONUNBUFFERED": "1", **spec.env}
        header, _, body = job_script(spec, workdir, p["log"], p["exit"], p["pid"]).partition("\n")
        q = shlex.quote
        # The values (job.env, forwarded MLflow credentials) are in a 0600 file the wrapper
        # sources, never in the wrapper itself; teardown removes it (detach leaves it for attach).
        await self._write_env(p["env"], env)
        script = f"{header}\n# trainboard job {nonce}\n. {q(p['env'])} || exit 95\n{body}".encode()
        sh, tmp = q(p["sh"]), q(p["sh"] + ".tmp")
        # Idempotent, so that it can run again after a drop: a wrapper carrying this
        # start's nonce is in place only once the job has been started.
        command = (
            f"cd {q(self.run_folder)} || exit 97\n"
            f"[ -d {q(workdir)} ] || {{ echo {q('no such folder in the workspace: ' + spec.workdir)} >&2; exit 98; }}\n"
            f"if ! grep -qsF {nonce} {sh}; then\n"
            f"  rm -f {q(p['exit'])} {q(p['exit'] + '.tmp')} {q(p['pid'])} {q(p['pid'] + '.tmp')} &&"
            f" : > {q(p['log'])} && cat > {tmp} && [ $(( $(wc -c < {tmp}) )) -eq {len(script)} ] &&"
            f" chmod 700 {tmp} && mv -f {tmp} {sh} || exit 96\n"
            f"  (setsid bash {sh} </dev/null >/dev/null 2>&1 &)\n"
            "fi\n"
            f"i=0; while [ ! -s {q(p['pid'])} ] && [ $i -lt {PID_WAIT_STEPS} ]; do sleep 0.025; i=$((i+1)); done\n"
            f"printf '{MARK}pid=%s\\n' \"$(cat {q(p['pid'])} 2>/dev/null)\"\n"
        )
        command += self._watchdog_command(spec.name, p["pid"], p["exit"])
        await self._send_watchdog()
        self._forget_log(p["log"])
        status, out, err = await self.execute(command, input=script)
        pid_text = _marked(_text(out)).get("pid", "")
        if status != 0 or not pid_text.isdigit() or int(pid_text) <= 1:
            why = _text(err).strip() or f"exit status {status}"
            raise RunnerError(f"could not start the {spec.name} on {self._address}: {why}")
        self._keep_alive()
        return JobHandle(name=spec.name, pid=int(pid_text), log_path=p["log"], exit_path=p["exit"],
                         started_at=time.time())

    # -- the dead-man switch: a job whose trainboard is gone for good is stopped by the host ---------------------

    def _watchdog_command(self, name: str, pid_path: str, exit_path: str) -> str:
        """Shell (run in the run folder, after the job's start) that starts ``name``'s watchdog
        unless it runs already (a start made again after a drop starts no second one)."""
        limit = int(self.target.orphan_timeout)
        if limit <= 0:
            return ""
        q = shlex.quote
        folder = self.run_folder
        wd = q(posixpath.join(folder, f"{name}.watchdog"))
        args = " ".join(q(posixpath.join(folder, f)) for f in (ALIVE, DETACHED)) + f" {limit} " + q(
            posixpath.join(folder, f"{name}.orphaned")) + " " + q(exit_path)
        return (f"if [ -s {q(pid_path)} ] && ! {{ [ -s {wd} ] && kill -0 \"$(cat {wd})\" 2>/dev/null; }}; then\n"
                f"  touch {q(posixpath.join(folder, ALIVE))}\n"
                f"  (setsid bash {q(posixpath.join(folder, WATCHDOG_SOURCE))} \"$(cat {q(pid_path)})\" {args}"
                f" </dev/null >/dev/null 2>&1 & echo $! > {wd})\n"
                "fi\n")

    async def _send_watchdog(self) -> None:
        if self._watchdog_sent or self.target.orphan_timeout <= 0:
            return
        source = resources.files("trainboard.backend.runners").joinpath(WATCHDOG_SOURCE).read_bytes()
        dest = shlex.quote(posixpath.join(self.run_folder, WATCHDOG_SOURCE))
        status, _, err = await self.execute(f"cat > {dest}.tmp && mv -f {dest}.tmp {dest}", input=source)
        if status != 0:
            raise RunnerError(f"could not write {WATCHDOG_SOURCE} on {self._address}: {_text(err).strip()}")
        self._watchdog_sent = True

    def _keep_alive(self) -> None:
        """Touch ALIVE every few seconds while this session holds the run (see orphan_watchdog.sh)."""
        if self.target.orphan_timeout <= 0 or self._heartbeat_task is not None:
            return
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        path = posixpath.join(self.run_folder, ALIVE)
        every = max(1.0, min(30.0, self.target.orphan_timeout / 4))
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    sftp = await self._sftp_client(conn, self._gen)
                    await asyncio.wait_for(sftp.utime(path), every)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a drop: the health check and the reconnect deal with it
                    pass
            await asyncio.sleep(every)

    async def _write_env(self, path: str, env: dict[str, str]) -> None:
        """``export NAME='value'`` lines into ``path`` on the host, created 0600 (umask 077:
        never readable by others, not even while it is written), through stdin."""
        data = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode()
        q = shlex.quote
        tmp = q(path + ".tmp")
        command = (f"umask 077 && cat > {tmp} && [ $(( $(wc -c < {tmp}) )) -eq {len(data)} ] &&"
                   f" chmod 600 {tmp} && mv -f {tmp} {q(path)}")
        status, _, err = await self.execute(command, input=data)  # idempotent: retried after a drop
        if status != 0:
            raise RunnerError(f"could not write the job's environment file {path} on {self._address}: "
                              f"{_text(err).strip() or f'exit status {status}'}")

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        """The job's environment as its secrets file holds it (attach's redactor needs the
        values); {} when the file is gone (after teardown)."""
        path = posixpath.join(posixpath.dirname(handle.exit_path), f"{handle.name}.env")

        async def read(conn: asyncssh.SSHClientConnection) -> bytes | None:
            sftp = await self._sftp_client(conn, self._gen)
            try:
                async with sftp.open(path, "rb") as fh:
                    data = await fh.read()
            except asyncssh.SFTPNoSuchFile:
                return None
            return data if isinstance(data, bytes) else data.encode()

        data = await self._retry(read)
        if not data:
            return {}
        try:
            words = shlex.split(data.decode("utf-8", "replace"))
        except ValueError as exc:
            raise RunnerError(f"the job's environment file {path} on {self._address} is unreadable: {exc}") from exc
        pairs = (w.partition("=") for w in words if w != "export")
        return {name: value for name, sep, value in pairs if sep and ENV_NAME.match(name)}

    # -- the log ----------------------------------------------------------------------------------------------

    async def _file(self, conn: asyncssh.SSHClientConnection, gen: int, path: str) -> asyncssh.SFTPClientFile:
        """The log open for reading over SFTP, kept open for the life of the connection."""
        held = self._files.get(path)
        if held is not None and held[0] == gen:
            return held[1]
        sftp = await self._sftp_client(conn, gen)
        async with self._open_lock:
            held = self._files.get(path)
            if held is not None and held[0] == gen:
                return held[1]
            fh = await sftp.open(path, "rb")
            self._files[path] = (gen, fh)
            return fh

    async def _sftp_client(self, conn: asyncssh.SSHClientConnection, gen: int) -> asyncssh.SFTPClient:
        """The connection's SFTP session (one per connection)."""
        if self._sftp is not None and self._sftp[0] == gen:
            return self._sftp[1]
        async with self._sftp_lock:
            if self._sftp is None or self._sftp[0] != gen:
                self._sftp = (gen, await conn.start_sftp_client())
            return self._sftp[1]

    async def _small(self, sftp: asyncssh.SFTPClient, path: str) -> bytes | None:
        """A small file's content (a /proc file too: their size reads 0); None when missing."""
        try:
            async with sftp.open(path, "rb") as fh:
                data = await fh.read(SMALL_FILE, 0)
        except asyncssh.SFTPNoSuchFile:
            return None
        return data if isinstance(data, bytes) else data.encode()

    async def _read(self, conn: asyncssh.SSHClientConnection, gen: int, path: str, offset: int, limit: int) -> bytes:
        try:
            fh = await self._file(conn, gen, path)
        except asyncssh.SFTPNoSuchFile:
            return b""
        block = fh.read_len or limit

        async def answered(size: int, at: int) -> bytes | str:
            data = await fh.read(size, at)
            self._heard = time.monotonic()  # a slow link's reads keep the health check content
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

    def _forget_log(self, path: str) -> None:
        for pending in self._prefetch.pop(path, ()):
            self._discard(pending)
        self._files.pop(path, None)

    def _discard(self, pending: _Prefetch) -> None:
        """Drop a read under way without cancelling it (a cancelled asyncssh read leaves its
        own request tasks' errors unretrieved); it finishes on its own, unseen."""
        self._stray.add(pending.task)
        pending.task.add_done_callback(self._stray.discard)

    def _read_ahead(self, path: str, offset: int, limit: int) -> None:
        """Keep ``read_ahead`` reads of ``limit`` bytes under way after ``offset``."""
        conn, gen = self._conn, self._gen
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
            data = await self._retry(lambda conn: self._read(conn, self._gen, path, offset, limit))
        if data and len(data) == limit:
            self._read_ahead(path, offset + len(data), limit)
        return data

    async def status(self, handle: JobHandle) -> JobStatus:
        """Running or not, the exit code, and the host's interruption notice.

        Over the SFTP session while the job's leader is alive or its exit code is
        written (three small reads, no process started on the host); otherwise
        (the leader gone without an exit code, or a host without /proc) one remote
        command checks the job's whole process group.
        """
        pid = _valid_pid(handle.pid)
        interruption_path = posixpath.join(posixpath.dirname(handle.exit_path), "interruption")

        async def quick(conn: asyncssh.SSHClientConnection) -> JobStatus | None:
            sftp = await self._sftp_client(conn, self._gen)
            code, stat, notice = await asyncio.gather(
                self._small(sftp, handle.exit_path), self._small(sftp, f"/proc/{pid}/stat"),
                self._small(sftp, interruption_path))
            interruption = _text(notice).strip()
            exit_code = _exit_code(_text(code))
            if exit_code is not None:
                return JobStatus(running=False, exit_code=exit_code, interruption=interruption)
            # /proc/<pid>/stat: "pid (comm) state ppid pgrp ...": the leader, alive, of its own group
            fields = _text(stat)[_text(stat).rfind(")") + 2:].split()
            if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pid):
                return JobStatus(running=True, exit_code=None, interruption=interruption)
            return None

        known = await self._retry(quick)
        if known is not None:
            return known
        q = shlex.quote
        script = (
            f"{ALIVE_FN}\n"
            f"if alive {pid}; then a=1; else a=0; fi\n"
            f"printf '{MARK}alive=%s\\n' $a\n"
            f"printf '{MARK}exit=%s\\n' \"$(cat {q(handle.exit_path)} 2>/dev/null)\"\n"
            f"printf '{MARK}interruption=\\n'\n"
            f"cat {q(posixpath.join(posixpath.dirname(handle.exit_path), 'interruption'))} 2>/dev/null\n"
        )
        _, out, _ = await self.execute(script)
        text = _text(out)
        head, sep, interruption = text.partition(f"{MARK}interruption=\n")
        found = _marked(head)
        if not sep or "alive" not in found:
            raise RunnerError(f"unexpected answer from {self._address} about the {handle.name}: {text[-300:]!r}")
        exit_code = _exit_code(found.get("exit", ""))
        running = found["alive"] == "1" and exit_code is None
        return JobStatus(running=running, exit_code=exit_code, interruption=interruption.strip())

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        """SIGTERM the job's process group, SIGKILL what is left after ``grace`` s (all on the host)."""
        pid = _valid_pid(handle.pid)
        steps = max(1, int(grace / 0.05))
        script = (
            f"{ALIVE_FN}\n"
            f"alive {pid} || exit 0\n"
            f"kill -TERM -- -{pid} 2>/dev/null\n"
            f"n=0; while alive {pid} && [ $n -lt {steps} ]; do sleep 0.05; n=$((n+1)); done\n"
            f"alive {pid} || exit 0\n"
            f"kill -KILL -- -{pid} 2>/dev/null\n"
            f"n=0; while alive {pid} && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n"
            "exit 0\n"
        )
        await self.execute(script)

    async def fetch(self, relpath: str, dest: Path) -> bool:
        """A file or folder of the workspace into ``dest`` (a tar stream back); False when missing."""
        self._require_provisioned()
        rel = posixpath.normpath(relpath)
        if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
            raise RunnerError(f"{relpath!r} is outside the workspace")
        parent, base = posixpath.split(rel)
        q = shlex.quote
        script = (
            f"cd {q(posixpath.join(self.workspace, parent or '.'))} 2>/dev/null || exit 44\n"
            f"[ -e {q(base)} ] || [ -L {q(base)} ] || exit 44\n"
            f"exec tar -cf - -- {q(base)}\n"
        )
        with self._bulk_transfer():
            status, out, err = await self.execute(script)
        if status == 44:
            return False
        if status != 0:
            raise RunnerError(f"could not fetch {relpath} from {self._address}: {_text(err).strip()}")
        try:
            await asyncio.to_thread(_unpack_one, out, base, Path(dest))
        except (tarfile.TarError, OSError) as exc:
            raise RunnerError(f"could not unpack {relpath} from {self._address} into {dest}: {exc}") from exc
        return True

    # -- port forwarding ------------------------------------------------------------------------------------------

    async def forward(self, port: int) -> int:
        """Make 127.0.0.1:``port`` here reachable from the host; the port the job uses there.

        The job talks to a relay in the run folder (forward_relay.py, run with the host's
        python3), whose port stays the same for the whole run. Behind it, the SSH forward's
        own port may change: after a reconnect it is a new one (the host may still hold the
        old one for a half-open session), and so after an attach, in a new process; each
        time it is written to the run folder's forward.port, which the relay re-reads.
        Without python3 on the host, the job uses the forward's port itself, asked for again
        after each reconnect.
        """
        if port in self._forwards:
            return self._relay_port or self._forwards[port]
        self._require_provisioned()
        self._relay_port = await self._start_relay()
        listener = await self._retry(lambda conn: self._listen(conn, port, 0))
        remote = listener.get_port()
        self._forwards[port] = remote
        self._listeners[port] = listener
        if self._relay_port:
            await self._retry(lambda conn: self._point_relay(conn, remote))
        return self._relay_port or remote

    async def _listen(self, conn: asyncssh.SSHClientConnection, local_port: int,
                      remote_port: int) -> asyncssh.SSHListener:
        """127.0.0.1:``remote_port`` (0: any) on the host, forwarded to 127.0.0.1:``local_port`` here."""
        try:
            return await conn.forward_remote_port("127.0.0.1", remote_port, "127.0.0.1", local_port)
        except asyncssh.ChannelListenError as exc:  # not an asyncssh.Error: caught here, never a traceback
            raise RunnerError(
                f"{self._address} refused to forward port {remote_port or '(any)'} on its 127.0.0.1 to this "
                f"machine ({exc}): its sshd must allow it (AllowTcpForwarding yes in sshd_config), or set "
                "mlflow.tracking_uri to a tracking server both sides reach") from exc

    async def _point_relay(self, conn: asyncssh.SSHClientConnection, remote_port: int) -> None:
        """Tell the relay the forward's port now (with a new generation: connections through an
        older forward lead to an SSH session that is gone, and the relay closes them)."""
        generation = time.time_ns() // 1_000_000  # grows across processes too (an attach)
        folder = shlex.quote(self.run_folder)
        status, _, err = await self._run(
            conn, f"cd {folder} && printf '%s %s\\n' {remote_port} {generation} > forward.port.tmp && "
                  "mv -f forward.port.tmp forward.port")
        if status != 0:
            raise RunnerError(f"could not write {self.run_folder}/forward.port on {self._address}: "
                              f"{_text(err).strip() or f'exit status {status}'}")

    async def _start_relay(self) -> int:
        """The run folder's relay, started unless it runs already; its port (0: no python3 on the host).

        A relay started again (after a reboot, say) listens on the port it had when that is free.
        """
        source = resources.files("trainboard.backend.runners").joinpath(RELAY_SOURCE).read_bytes()
        q = shlex.quote
        script = (
            f"cd {q(self.run_folder)} || exit 97\n"
            f"cat > {RELAY_SOURCE}.tmp && mv -f {RELAY_SOURCE}.tmp {RELAY_SOURCE} || exit 96\n"
            "if [ -s relay.pid ] && kill -0 \"$(cat relay.pid)\" 2>/dev/null && [ -s relay.port ]; then\n"
            f"  printf '{MARK}relay=%s\\n' \"$(cat relay.port)\"; exit 0\n"
            "fi\n"
            f"command -v python3 >/dev/null 2>&1 || {{ printf '{MARK}relay=none\\n'; exit 0; }}\n"
            "old=$(cat relay.port 2>/dev/null); rm -f relay.port\n"
            f"(setsid python3 {RELAY_SOURCE} \"$PWD\" --port \"${{old:-0}}\" --wait {self.relay_wait:g}"
            " </dev/null >>relay.log 2>&1 &)\n"
            f"i=0; while [ ! -s relay.port ] && [ $i -lt {PID_WAIT_STEPS} ]; do sleep 0.025; i=$((i+1)); done\n"
            f"printf '{MARK}relay=%s\\n' \"$(cat relay.port 2>/dev/null)\"\n"
        )
        status, out, err = await self.execute(script, input=source)
        value = _marked(_text(out)).get("relay", "")
        if value == "none":
            self._publish(ev.Notice(
                f"no python3 on {self._address}: the job reaches MLflow through the SSH forward's own port, "
                "so after a reconnect it waits until the host lets go of that port"))
            return 0
        if status != 0 or not value.isdigit():
            why = _text(err).strip() or f"exit status {status}"
            raise RunnerError(f"could not start the MLflow relay on {self._address} ({why}): "
                              f"see {self.run_folder}/relay.log there")
        return int(value)

    def _reforward(self, conn: asyncssh.SSHClientConnection, local_port: int, remote_port: int) -> None:
        """The forward again on a new connection, in the background (the log resumes meanwhile).

        With the relay: any free port, then written to forward.port. Without: the same
        port, tried again while the host still holds it for the old session. A failure
        is said as a notice, never raised.
        """
        gen = self._gen

        async def again() -> None:
            deadline = time.monotonic() + self.reconnect_timeout
            wanted = 0 if self._relay_port else remote_port
            problem = ""
            while self._gen == gen and time.monotonic() < deadline:
                try:
                    listener = await self._listen(conn, local_port, wanted)
                    self._listeners[local_port] = listener
                    self._forwards[local_port] = listener.get_port()
                    if self._relay_port:
                        await self._point_relay(conn, listener.get_port())
                    return
                except Exception as exc:  # noqa: BLE001 (whatever it is, the next attempt may pass)
                    problem = str(exc) or type(exc).__name__
                await asyncio.sleep(0.2)
            if self._gen == gen:
                self._publish(ev.Notice(f"could not forward a port on {self._address} to this machine again "
                                        f"({problem}): the job cannot reach MLflow"))

        task = asyncio.get_running_loop().create_task(again())
        self._reforwards.add(task)
        task.add_done_callback(self._reforwards.discard)

    async def undelivered_metrics(self) -> float | None:
        """When the relay last gave up on a call of the job's MLflow client with none getting
        through after it (wall-clock time); None when every call got through (or no relay)."""
        if not self._relay_port:
            return None
        path = shlex.quote(posixpath.join(self.run_folder, "relay.undelivered"))
        _, out, _ = await self.execute(f"tail -n 200 {path} 2>/dev/null; exit 0")
        since: float | None = None
        for line in _text(out).splitlines():
            what, _, when = line.partition(" ")
            if what == "gave-up" and since is None:
                with contextlib.suppress(ValueError):
                    since = float(when)
            elif what == "delivered":
                since = None
        return since

    async def _stop_watchdogs(self) -> None:
        """End the jobs' watchdogs (each also ends by itself within a second of its job)."""
        if self.target.orphan_timeout > 0:
            await self._in_run_folder_quietly(
                'for wd in ./*.watchdog; do [ -s "$wd" ] && kill -TERM "$(cat "$wd")" 2>/dev/null; done\n')

    async def _stop_relay(self) -> None:
        """End the run's relay (it also ends by itself once the job has)."""
        if self._relay_port:
            await self._in_run_folder_quietly('[ -s relay.pid ] && kill -TERM "$(cat relay.pid)" 2>/dev/null\n')

    async def _in_run_folder_quietly(self, script: str) -> None:
        """Best effort, for teardown: ``script`` in the run folder, if connected, within stall_timeout."""
        if not self.run_folder or self._conn is None:
            return
        script = f"cd {shlex.quote(self.run_folder)} 2>/dev/null || exit 0\n{script}exit 0\n"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.execute(script, retry=False), self.target.stall_timeout)

    # -- letting go -------------------------------------------------------------------------------------------

    async def _close(self) -> None:
        for queue in self._prefetch.values():
            for pending in queue:
                self._discard(pending)
        self._prefetch.clear()
        for task in list(self._reforwards):
            task.cancel()
        if self._watch_task is not None and self._watch_task is not asyncio.current_task():
            self._watch_task.cancel()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        conn, self._conn = self._conn, None
        self._sftp = None
        self._files.clear()
        self._listeners.clear()
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2.0)

    async def detach(self) -> None:
        """Close the connection; the job, its run folder and the host stay as they are
        (its watchdog waits: the run was left on purpose)."""
        if self.run_folder and self._conn is not None:
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
            await self._stop_relay()
            await self._stop_watchdogs()
            await self._close()

    async def _remove_secrets(self) -> None:
        if not self.run_folder or not self._connected_once:
            return
        folder = shlex.quote(self.run_folder)
        # Each job's (a wrapper <name>.sh says which): not the relay's own log.
        script = (f"cd {folder} 2>/dev/null || exit 0\n"
                  'for sh in ./*.sh; do [ -e "$sh" ] || continue; n="${sh%.sh}"; '
                  'rm -f -- "$n.log" || exit 1; done\n'
                  "rm -f -- ./*.env ./*.env.tmp\n")
        try:
            status, _, err = await asyncio.wait_for(self.execute(script), CLEANUP_TIMEOUT)
            problem = "" if status == 0 else _text(err).strip() or f"exit status {status}"
        except (RunnerError, TimeoutError) as exc:
            problem = str(exc) or "timed out"
        if problem:
            raise RunnerError(f"could not remove the jobs' secrets files and raw logs from {self.run_folder} on "
                              f"{self._address} ({problem}): remove {self.run_folder}/*.env and *.log by hand")


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A done callback: the task's outcome is read, so an error is never logged as lost."""
    if not task.cancelled():
        task.exception()


def _abandon(attempt: asyncio.Task[tuple[asyncssh.SSHClientConnection, _Client]]) -> None:
    """Give up on a connection attempt; should it have got through meanwhile, close that connection."""
    attempt.cancel()

    def closed(task: asyncio.Task[tuple[asyncssh.SSHClientConnection, _Client]]) -> None:
        if not task.cancelled() and task.exception() is None:
            task.result()[0].close()

    attempt.add_done_callback(closed)


def _exit_code(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _valid_pid(pid: int) -> int:
    """A job's pid, checked: never 0, 1 or negative (``kill -- -1`` would signal everything)."""
    if not isinstance(pid, int) or pid <= 1:
        raise RunnerError(f"bad job pid {pid!r}")
    return pid


def _unpack_one(data: bytes, base: str, dest: Path) -> None:
    """Extract a one-member tar (``base``: a file or folder) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(tmp, filter="data")
        got = Path(tmp) / base
        if got.is_dir() and not got.is_symlink():
            shutil.copytree(got, dest, symlinks=True, dirs_exist_ok=True)
        else:
            if dest.is_symlink() or dest.is_file():
                dest.unlink()
            os.replace(got, dest)

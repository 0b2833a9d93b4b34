"""A real OpenSSH server on 127.0.0.1 for tests and benchmarks, and a TCP proxy that can cut it off.

    sshd = start_sshd(tmp_path)            # Debian's /usr/sbin/sshd, throwaway config and keys
    proxy = TcpProxy(sshd.port)            # client -> proxy -> sshd
    proxy.cut()                            # drop every connection now (both sockets closed)
    proxy.down(); ...; proxy.up()          # refuse new connections for a while
    proxy.blackhole(); ...; proxy.resume() # pass no byte (old or new connections) for a while
    proxy.partition(); ...; proxy.heal()   # the connections now are held forever (half-open:
                                           # sshd keeps their sessions); new ones refused, then let in

The server runs as the current user (root in CI) with public-key login only: a
fresh ed25519 client key (``sshd.client_key``) is authorized, plus any keys the
caller passes. Host keys are verified by clients through ``sshd.known_hosts``.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_key_pair(path: Path) -> str:
    """A fresh ed25519 private key at ``path`` (0600) and ``path``.pub; the one-line public key."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    os.chmod(path, 0o600)
    public = key.export_public_key().decode().strip()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def _public_line(host_key: Path) -> str:
    pub = host_key.with_name(host_key.name + ".pub")
    if pub.exists():
        return " ".join(pub.read_text().split()[:2])
    key = asyncssh.read_private_key(str(host_key))
    return key.export_public_key().decode().strip()


@dataclass
class Sshd:
    """A running ``sshd -D -e`` with its own config, keys and files under ``workdir``."""

    workdir: Path
    port: int
    host_key: Path
    host_key_pub: str  # one line: "ssh-ed25519 AAAA..."
    known_hosts: Path  # "[127.0.0.1]:port <host_key_pub>"
    client_key: Path  # a private key sshd accepts
    user: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_key_pub(self) -> str:
        return self.client_key.with_name(self.client_key.name + ".pub").read_text().strip()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # the privilege separation folder
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if _banner(self.port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on port {self.port}: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the listener (connections it already serves are ended too)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        """Stop, then start again on the same port with the same host key."""
        self.stop()
        self.start()

    def authorize(self, public_key: str) -> None:
        with open(self.workdir / "authorized_keys", "a") as fh:
            fh.write(public_key.strip() + "\n")


def _banner(port: int) -> bool:
    """Whether an SSH server answers on 127.0.0.1:port with its version line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def start_sshd(workdir: Path, *, host_key: Path | None = None, authorized_keys: Iterable[str] = (),
               port: int | None = None, options: Iterable[str] = ()) -> Sshd:
    """Start Debian's OpenSSH server on 127.0.0.1 with a throwaway config under ``workdir``.

    ``host_key``: a private host key file to serve (default: a fresh ed25519 key).
    ``authorized_keys``: public keys (one-line OpenSSH form) allowed to log in, on top of
    the fresh client key the result carries as ``client_key``.
    ``options``: sshd_config lines that override the defaults (e.g. "AllowTcpForwarding no").
    """
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} is missing: install openssh-server (apt-get install openssh-server)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if host_key is None:
        host_key = workdir / "ssh_host_ed25519_key"
        _write_key_pair(host_key)
    else:
        # sshd refuses a host key readable by others: serve a private copy.
        copy = workdir / "ssh_host_key"
        if Path(host_key).resolve() != copy.resolve():
            shutil.copyfile(host_key, copy)
        os.chmod(copy, 0o600)
        host_key = copy
    host_key_pub = _public_line(host_key)
    client_key = workdir / "client_key"
    client_pub = _write_key_pair(client_key)
    keys = [client_pub, *(k.strip() for k in authorized_keys)]
    (workdir / "authorized_keys").write_text("".join(k + "\n" for k in keys))
    port = port or free_port()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key_pub}\n")
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join([
            *options,  # first: sshd keeps the first value it reads of a setting
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "MaxStartups 200",
            "MaxSessions 100",
            "LoginGraceTime 30",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
        ]) + "\n"
    )
    sshd = Sshd(workdir=workdir, port=port, host_key=host_key, host_key_pub=host_key_pub,
                known_hosts=known_hosts, client_key=client_key, user=getpass.getuser(),
                config=config, log=workdir / "sshd.log")
    sshd.start()
    return sshd


class TcpProxy:
    """A TCP relay 127.0.0.1:``port`` -> ``upstream``, in threads, that can drop its connections.

    ``cut()`` closes both sockets of every current connection (the client sees
    the connection lost at once); ``down()`` also stops listening, so new
    connections are refused until ``up()`` listens again on the same port.

    A blackhole passes no byte either way and closes nothing: ``blackhole()``
    holds every connection, and those that arrive meanwhile (their TCP handshake
    succeeds, then nothing), until ``resume()``; then they go on as if nothing
    happened (a client that gave up on one has closed its side, which ends it).
    ``partition()`` holds the current connections forever (a half-open session:
    sshd keeps it, and its forwarded ports, while the client has gone) and
    refuses new ones until ``heal()``. ``cut()`` ends held connections too.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._held: set[tuple[socket.socket, socket.socket]] = set()  # passing nothing until resume()
        self._lost: set[tuple[socket.socket, socket.socket]] = set()  # passing nothing, ever
        self._blackholed = False
        self._closed = False
        self.accepted = 0  # connections relayed so far
        self.cuts = 0  # connections dropped by cut()/down()
        self._listener: socket.socket | None = self._listen(port)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        return sock

    def _accept_loop(self) -> None:
        while not self._closed:
            listener = self._listener
            if listener is None:
                time.sleep(0.01)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue  # closed under us by down()/close()
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed or self._listener is None:
                    client.close()
                    upstream.close()
                    continue
                self._pairs.append((client, upstream))
                if self._blackholed:
                    self._held.add((client, upstream))
                self.accepted += 1
            pair = (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            while True:
                if pair in self._held or pair in self._lost:
                    if src.fileno() < 0:
                        break
                    time.sleep(0.01)  # not read: what is sent waits in the buffers, unanswered
                    continue
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                if pair in self._held or pair in self._lost:
                    continue
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        self._drop(pair)  # SSH never half-closes: one side gone ends the relay

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
            self._held.discard(pair)
            self._lost.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def blackhole(self) -> None:
        """Pass no byte, on the current connections or new ones, until :meth:`resume`."""
        with self._lock:
            self._blackholed = True
            self._held.update(self._pairs)

    def resume(self) -> None:
        """Pass bytes again (connections held by :meth:`partition` stay held)."""
        with self._lock:
            self._blackholed = False
            self._held.clear()

    def partition(self) -> None:
        """Hold the current connections forever (half-open) and refuse new ones until :meth:`heal`."""
        with self._lock:
            self._lost.update(self._pairs)
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def heal(self) -> None:
        """Let new connections in again (and pass bytes on those not held forever)."""
        self.resume()
        self.up()

    def cut(self) -> int:
        """Drop every current connection now (held ones too); how many were dropped."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._held.clear()
            self._lost.clear()
            self.cuts += len(pairs)
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        return len(pairs)

    def down(self) -> None:
        """Cut every connection and refuse new ones until :meth:`up`."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # stops listening now, even while select() holds it
            listener.close()
        self.cut()

    def up(self) -> None:
        """Accept connections again, on the same port."""
        with self._lock:
            if self._listener is None and not self._closed:
                self._listener = self._listen(self.port)

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def close(self) -> None:
        self._closed = True
        self.down()
        self._thread.join(2)


# Fixtures: test modules import them (``from tests.sshd_support import sshd, ssh_proxy``).


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One real sshd for a test module."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ssh_proxy(sshd: Sshd) -> Iterator[TcpProxy]:
    """A cuttable relay in front of the module's sshd, for one test."""
    proxy = TcpProxy(sshd.port)
    try:
        yield proxy
    finally:
        proxy.close()


def proxy_known_hosts(sshd: Sshd, proxy_port: int, path: Path) -> Path:
    """A known_hosts file trusting ``sshd``'s host key at the proxy's address."""
    path.write_text(f"[127.0.0.1]:{proxy_port} {sshd.host_key_pub}\n")
    return path

"""Port forwarding for the ssh runner: 127.0.0.1:port here reachable from the host (the job's
MLflow calls), through a relay in the run folder whose port stays the same for the whole run."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
import time
from importlib import resources

import asyncssh

from trainboard.backend import events as ev
from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ssh.connection import SshLink
from trainboard.backend.runners.ssh.shell import MARK, PID_WAIT_STEPS, as_text, marked

RELAY_WAIT = 60.0  # seconds a job's connection waits at the relay for a forward (see forward_relay.py)
RELAY_SOURCE = "forward_relay.py"  # package data of trainboard.backend.runners, run on the host with its python3


class Forwards:
    """The run's forwards (local port -> port on the host), made again on each new connection."""

    def __init__(self, link: SshLink) -> None:
        self.link = link
        self.relay_wait = RELAY_WAIT  # how long a job's MLflow call waits at the relay for a forward
        self._forwards: dict[int, int] = {}  # local port -> port on the host
        self._listeners: dict[int, asyncssh.SSHListener] = {}
        self._reforwards: set[asyncio.Task[None]] = set()
        self._relay_port = 0  # the relay's port on the host (0: no relay, the job uses the forward itself)
        self._relay_started = False  # a relay was (perhaps) started: teardown ends it
        link.on_connect.append(self._reforward_all)
        link.on_drop.append(self._listeners.clear)

    def holds(self, port: int) -> bool:
        """Whether 127.0.0.1:``port`` here is forwarded already."""
        return port in self._forwards

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
        self._relay_started = True  # from here a relay may run on the host, even if the answer never comes
        self._relay_port = await self._start_relay()
        listener = await self.link.retry(lambda conn: self._listen(conn, port, 0))
        remote = listener.get_port()
        self._forwards[port] = remote
        self._listeners[port] = listener
        if self._relay_port:
            await self.link.retry(lambda conn: self._point_relay(conn, remote))
        return self._relay_port or remote

    async def _listen(self, conn: asyncssh.SSHClientConnection, local_port: int,
                      remote_port: int) -> asyncssh.SSHListener:
        """127.0.0.1:``remote_port`` (0: any) on the host, forwarded to 127.0.0.1:``local_port`` here."""
        try:
            return await conn.forward_remote_port("127.0.0.1", remote_port, "127.0.0.1", local_port)
        except asyncssh.ChannelListenError as exc:  # not an asyncssh.Error: caught here, never a traceback
            raise RunnerError(
                f"{self.link.address} refused to forward port {remote_port or '(any)'} on its 127.0.0.1 to this "
                f"machine ({exc}): its sshd must allow it (AllowTcpForwarding yes in sshd_config), or set "
                "mlflow.tracking_uri to a tracking server both sides reach") from exc

    async def _point_relay(self, conn: asyncssh.SSHClientConnection, remote_port: int) -> None:
        """Tell the relay the forward's port now (with a new generation: connections through an
        older forward lead to an SSH session that is gone, and the relay closes them)."""
        generation = time.time_ns() // 1_000_000  # grows across processes too (an attach)
        run_folder = self.link.run_folder
        status, _, err = await self.link.run(
            conn, f"cd {shlex.quote(run_folder)} && printf '%s %s\\n' {remote_port} {generation} > forward.port.tmp"
                  " && mv -f forward.port.tmp forward.port")
        if status != 0:
            raise RunnerError(f"could not write {run_folder}/forward.port on {self.link.address}: "
                              f"{as_text(err).strip() or f'exit status {status}'}")

    async def _start_relay(self) -> int:
        """The run folder's relay, started unless it runs already; its port (0: no python3 on the host).

        A relay started again (after a reboot, say) listens on the port it had when that is free.
        """
        source = resources.files("trainboard.backend.runners").joinpath(RELAY_SOURCE).read_bytes()
        q = shlex.quote
        script = (
            f"cd {q(self.link.run_folder)} || exit 97\n"
            "rm -f relay.stop\n"  # a run attached again after a teardown's stop
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
        status, out, err = await self.link.execute(script, input=source)
        value = marked(as_text(out)).get("relay", "")
        if value == "none":
            self.link.emit(ev.Notice(
                f"no python3 on {self.link.address}: the job reaches MLflow through the SSH forward's own port, "
                "so after a reconnect it waits until the host lets go of that port"))
            return 0
        if status != 0 or not value.isdigit():
            why = as_text(err).strip() or f"exit status {status}"
            raise RunnerError(f"could not start the MLflow relay on {self.link.address} ({why}): "
                              f"see {self.link.run_folder}/relay.log there")
        return int(value)

    def _reforward_all(self, conn: asyncssh.SSHClientConnection) -> None:
        for local_port, remote_port in list(self._forwards.items()):
            self._reforward(conn, local_port, remote_port)

    def _reforward(self, conn: asyncssh.SSHClientConnection, local_port: int, remote_port: int) -> None:
        """The forward again on a new connection, in the background (the log resumes meanwhile).

        With the relay: any free port, then written to forward.port. Without: the same
        port, tried again while the host still holds it for the old session. A failure
        is said as a notice, never raised.
        """
        link = self.link
        gen = link.gen

        async def again() -> None:
            deadline = time.monotonic() + link.reconnect_timeout
            wanted = 0 if self._relay_port else remote_port
            problem = ""
            while link.gen == gen and time.monotonic() < deadline:
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
            if link.gen == gen:
                link.emit(ev.Notice(f"could not forward a port on {link.address} to this machine again "
                                    f"({problem}): the job cannot reach MLflow"))

        task = asyncio.get_running_loop().create_task(again())
        self._reforwards.add(task)
        task.add_done_callback(self._reforwards.discard)

    def cancel(self) -> None:
        """Stop making forwards again (the connection is being closed)."""
        for task in list(self._reforwards):
            task.cancel()

    async def undelivered_metrics(self) -> float | None:
        """When the relay last gave up on a call of the job's MLflow client with none getting
        through after it (wall-clock time); None when every call got through (or no relay)."""
        if not self._relay_port:
            return None
        path = shlex.quote(posixpath.join(self.link.run_folder, "relay.undelivered"))
        _, out, _ = await self.link.execute(f"tail -n 200 {path} 2>/dev/null; exit 0")
        since: float | None = None
        for line in as_text(out).splitlines():
            what, _, when = line.partition(" ")
            if what == "gave-up" and since is None:
                with contextlib.suppress(ValueError):
                    since = float(when)
            elif what == "delivered":
                since = None
        return since

    async def stop_relay(self) -> None:
        """End the run's relay (it also ends by itself once the job has); also one whose start was cut
        short by a cancel, before its port was read back (it would wait for a job that never comes)."""
        if self._relay_port or self._relay_started:
            # relay.stop: a relay whose start a cancel cut short may write its pid only after this
            await self.link.in_run_folder_quietly(
                'touch relay.stop; [ -s relay.pid ] && kill -TERM "$(cat relay.pid)" 2>/dev/null\n')

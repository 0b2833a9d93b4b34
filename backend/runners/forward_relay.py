"""The relay between a remote job and the SSH forward to this machine's MLflow server.

This file is shipped to the runner and run there with its ``python3`` (standard
library only; it must not import anything of trainboard's). It is never imported
by trainboard itself.

A job on an SSH host reaches the MLflow server served here through a port that
the SSH connection forwards. That port changes: after a reconnect the host may
still hold the old one (a half-open session), and after ``trainboard attach``
the forward is a new one. The job cannot learn a new port, so it never sees it:
it talks to this relay, which listens on a port that does not change for the
life of the run, and connects each incoming connection to the forward named in
``forward.port`` (written by trainboard: ``<port> <generation>``).

    python3 forward_relay.py RUN_FOLDER [--port P] [--wait SECONDS]

In RUN_FOLDER:
    relay.port          written here once listening: the port the job uses
    relay.pid           this process
    forward.port        written by trainboard, re-read for every connection
    relay.undelivered   "gave-up <time>" for a job connection given up (no forward for --wait s),
                        "delivered <time>" for the first one that got through after that
    job.pid, job.exit   the job's: the relay ends once the job has ended
    relay.stop          written by trainboard's teardown: the relay ends (within POLL seconds)

While no forward answers (the connection is being re-established, or
trainboard is gone until ``trainboard attach``), a new connection waits, up to
``--wait`` seconds, for one that does. When trainboard writes a new generation,
connections made through an older forward are closed: they lead to an SSH
session that is gone, and the job's HTTP client retries them at once. One whose
answer is coming through is left to finish (cut mid-answer, the client would not
retry: the job's MLflow call would fail); it is closed once it has been quiet for
QUIET seconds.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

POLL = 0.2  # seconds between looks at forward.port and at the job
QUIET = 1.0  # seconds an older generation's connection with an answer under way may be silent before it closes
START_WITHIN = 600.0  # seconds the job has to appear (its pid file) before the relay gives up


def read_forward(folder: str) -> tuple[int, int]:
    """The current forward: (port, generation); (0, 0) when none is written yet."""
    try:
        with open(os.path.join(folder, "forward.port")) as fh:
            fields = fh.read().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0, 0


def write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def job_over(folder: str, started: float) -> bool:
    """The job has ended (its exit code written, or its process group gone), or never came,
    or trainboard tore the run down (relay.stop: also when this relay started after that)."""
    if os.path.exists(os.path.join(folder, "job.exit")) or os.path.exists(os.path.join(folder, "relay.stop")):
        return True
    try:
        with open(os.path.join(folder, "job.pid")) as fh:
            pid = int(fh.read().strip() or "0")
    except (OSError, ValueError):
        return time.monotonic() - started > START_WITHIN
    if pid <= 1:
        return False
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class Link:
    """One job connection relayed to a forward: when bytes last went each way."""

    def __init__(self, generation: int, client: socket.socket, server: socket.socket) -> None:
        self.generation, self.client, self.server = generation, client, server
        self.asked = self.answered = 0.0  # monotonic times: job -> server, server -> job

    def answering(self, now: float) -> bool:
        """An answer is coming through: bytes from the server since the last request, lately."""
        return self.answered > self.asked and now - self.answered < QUIET

    def close(self) -> None:
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Relay:
    def __init__(self, folder: str, port: int, wait: float) -> None:
        self.folder = folder
        self.wait = wait
        self.lock = threading.Lock()
        self.open: list[Link] = []
        self.stale_below = 0  # links of an older generation than this close once no answer comes through
        self.gave_up = False  # a connection was given up, and none has got through since
        self.listener = self._listen(port)
        self.port = self.listener.getsockname()[1]

    @staticmethod
    def _listen(port: int) -> socket.socket:
        """127.0.0.1:port, the same as last time when it is free (a restarted relay), else any."""
        for wanted in ([port, 0] if port else [0]):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", wanted))
            except OSError:
                sock.close()
                continue
            sock.listen(64)
            return sock
        raise OSError(f"cannot listen on 127.0.0.1:{port}")

    def serve(self) -> None:
        started = time.monotonic()
        generation = read_forward(self.folder)[1]
        while True:
            ready, _, _ = select.select([self.listener], [], [], POLL)
            if ready:
                try:
                    client, _ = self.listener.accept()
                except OSError:
                    continue
                threading.Thread(target=self.relay, args=(client,), daemon=True).start()
                continue
            if not os.path.isdir(self.folder) or job_over(self.folder, started):
                return
            now = read_forward(self.folder)[1]
            if now != generation:
                generation = self.stale_below = now
            self.close_stale()

    def close_stale(self) -> None:
        """Close the links of an older generation, but one whose answer is coming through."""
        now = time.monotonic()
        with self.lock:
            stale = [link for link in self.open if link.generation < self.stale_below and not link.answering(now)]
        for link in stale:
            link.close()

    def upstream(self) -> tuple[int, socket.socket] | None:
        """A connection to the current forward, waiting up to --wait s for one that answers."""
        deadline = time.monotonic() + self.wait
        while True:
            port, generation = read_forward(self.folder)
            if port:
                try:
                    return generation, socket.create_connection(("127.0.0.1", port), timeout=2)
                except OSError:
                    pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    def note(self, what: str) -> None:
        try:
            with open(os.path.join(self.folder, "relay.undelivered"), "a") as fh:
                fh.write(f"{what} {time.time():.3f}\n")
        except OSError:
            pass

    def relay(self, client: socket.socket) -> None:
        found = self.upstream()
        if found is None:  # the job's HTTP client sees the connection close, and retries (or gives up)
            with self.lock:
                self.gave_up = True
            self.note("gave-up")
            client.close()
            return
        with self.lock:
            was, self.gave_up = self.gave_up, False
        if was:
            self.note("delivered")
        generation, server = found
        server.settimeout(None)
        link = Link(generation, client, server)
        with self.lock:
            self.open.append(link)
        try:
            pump(link)
        finally:
            with self.lock:
                self.open.remove(link)
            client.close()
            server.close()


def pump(link: Link) -> None:
    """Bytes both ways until either side ends (HTTP never half-closes in a way that matters here)."""
    a, b = link.client, link.server
    peer = {a: b, b: a}
    while True:
        try:
            ready, _, _ = select.select([a, b], [], [])
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is a:
                    link.asked = time.monotonic()
                else:
                    link.answered = time.monotonic()
                peer[sock].sendall(data)
        except (OSError, ValueError):
            return


def main() -> int:
    parser = argparse.ArgumentParser(description="relay a job's MLflow connections to trainboard's SSH forward")
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=0, help="listen on this port when it is free")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds a connection waits for a forward")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    relay = Relay(args.folder, args.port, args.wait)
    pid_path = os.path.join(args.folder, "relay.pid")
    write_atomically(pid_path, f"{os.getpid()}\n")
    write_atomically(os.path.join(args.folder, "relay.port"), f"{relay.port}\n")
    try:
        relay.serve()
    finally:
        try:
            os.unlink(pid_path)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

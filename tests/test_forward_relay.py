"""The relay a remote job's MLflow calls go through (backend/runners/forward_relay.py), run here
on 127.0.0.1 against plain sockets standing for the SSH forwards: when trainboard writes a new
forward generation, an older connection waiting for its answer is closed at once (the job's
client retries it), and one whose answer is coming through is left to finish."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("forward_relay", ROOT / "backend" / "runners" / "forward_relay.py")
assert spec is not None and spec.loader is not None
forward_relay = importlib.util.module_from_spec(spec)
spec.loader.exec_module(forward_relay)


class Forward:
    """A listening socket standing for one SSH forward; ``answer`` says how it answers."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(1024)
            self.answer(conn)


@pytest.fixture
def relay(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = str(tmp_path)
    relay = forward_relay.Relay(folder, 0, wait=5.0)
    thread = threading.Thread(target=relay.serve, daemon=True)
    thread.start()
    yield relay
    (tmp_path / "relay.stop").write_text("")
    thread.join(timeout=5)


def write_forward(relay, port: int, generation: int) -> None:  # type: ignore[no-untyped-def]
    forward_relay.write_atomically(str(Path(relay.folder) / "forward.port"), f"{port} {generation}\n")


def read_all(conn: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    conn.settimeout(timeout)
    began, got = time.monotonic(), b""
    while chunk := conn.recv(65536):
        got += chunk
    return got, time.monotonic() - began


def slow_answer(conn: socket.socket) -> None:
    for part in range(6):  # an answer that takes 0.6 s to come through
        conn.sendall(f"part {part}\n".encode())
        time.sleep(0.1)


def test_an_answer_coming_through_an_older_forward_is_not_cut(relay) -> None:  # type: ignore[no-untyped-def]
    old, new = Forward(slow_answer), Forward(slow_answer)
    write_forward(relay, old.port, 1)
    with socket.create_connection(("127.0.0.1", relay.port)) as conn:
        conn.sendall(b"GET /")
        conn.settimeout(10)
        first = conn.recv(64)
        write_forward(relay, new.port, 2)  # a reconnect while the answer comes
        rest, _ = read_all(conn)
    assert first + rest == b"".join(f"part {i}\n".encode() for i in range(6))


def test_a_question_waiting_on_an_older_forward_is_closed_at_once(relay) -> None:  # type: ignore[no-untyped-def]
    hung = threading.Event()
    old = Forward(lambda conn: hung.wait(30))  # a forward into a session that is gone: no answer
    write_forward(relay, old.port, 1)
    with socket.create_connection(("127.0.0.1", relay.port)) as conn:
        conn.sendall(b"GET /")
        time.sleep(0.5)
        write_forward(relay, Forward(slow_answer).port, 2)
        got, took = read_all(conn)
    hung.set()
    assert got == b"" and took < 3, took  # closed: the job's client retries through the new forward

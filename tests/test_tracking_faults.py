"""MLflow faults, against a real MLflow HTTP tracking server on 127.0.0.1.

The server is MLflow's own tracking app (served by ``trainboard.backend.mlflow_server``) in a
process of its own, on the SQLite store of the test's repository: the tests kill it
and start it again on the same port, freeze it (SIGSTOP: connections are accepted,
nothing answers), or point trainboard at a port where nothing serves.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.tracking import JOB_HTTP_DEFAULTS, REQUEST_TIMEOUT, job_http_env, limit_http_client

POLL_INTERVAL = 0.5

SERVE = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from trainboard.backend.mlflow_server import LocalTrackingServer

    server = LocalTrackingServer(sys.argv[1], Path(sys.argv[2]), port=int(sys.argv[3]))
    asyncio.run(server.start())
    print("serving", server.port, flush=True)
    while True:
        time.sleep(60)
    """
)

# Logs f1 and loss once a step, each point with its own timestamp, and retries a
# step until the store takes it (the test's job.env turns MLflow's own retries off).
JOB = textwrap.dedent(
    """
    import os, sys, time
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    print("http", os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"),
          os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"), flush=True)
    client = MlflowClient()
    run_id = os.environ["MLFLOW_RUN_ID"]
    for step in range(1, int(os.environ["STEPS"]) + 1):
        ts = int(time.time() * 1000)
        batch = [Metric("f1", 0.5 + step / 1000, ts, step), Metric("loss", 1.0 / step, ts, step)]
        for attempt in range(300):
            try:
                client.log_batch(run_id, metrics=batch)
                break
            except Exception as exc:
                print(f"retrying step {step}: {type(exc).__name__}", flush=True)
                time.sleep(0.2)
        else:
            sys.exit(3)
        print(f"logged step {step}", flush=True)
        time.sleep(float(os.environ["PAUSE"]))
    print("job done", flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(repo: Path, uri: str, env: dict[str, str]) -> None:
    lines = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in env.items())
    (repo / "job.py").write_text(JOB)
    (repo / "tb.yaml").write_text(
        "name: faults\n"
        "runner:\n  kind: local\n"
        f"job:\n  command: python job.py\n  env:\n{lines}"
        f"mlflow:\n  tracking_uri: {uri}\n  experiment: faults\n  poll_interval: {POLL_INTERVAL}\n"
        "metrics:\n  f1: {display: F1, goal: max}\n  loss: {display: Loss, goal: min}\n"
        "compare:\n  base: main\n"
    )


class TrackingServer:
    """MLflow's tracking server for ``db`` on a fixed 127.0.0.1 port, in its own process."""

    def __init__(self, db: Path, artifacts: Path, log: Path) -> None:
        self.db, self.artifacts, self.log = db, artifacts, log
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVE, f"sqlite:///{self.db}", str(self.artifacts), str(self.port)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        assert line.startswith("serving"), f"the tracking server did not start: {self.log.read_text()[-2000:]}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen one too
            self.proc.kill()
            self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)


@pytest.fixture
def server(repo: Path, tmp_path: Path) -> Iterator[TrackingServer]:
    """A tracking server on the repository's store (``repo``'s .trainboard/mlflow.db)."""
    store = TrackingServer(repo / ".trainboard" / "mlflow.db", repo / ".trainboard" / "mlartifacts",
                           tmp_path / "server.log")
    store.start()
    try:
        yield store
    finally:
        store.kill()


class Trainboard:
    """`trainboard run tb.yaml --no-tui` in ``repo``; its output lines, each with when it came."""

    def __init__(self, repo: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("GITHUB_ACTIONS", None)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui"],
                                     cwd=repo,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.exited_at: float | None = None
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> Trainboard:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a test that failed midway leaves no trainboard behind
            self.proc.kill()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()

    def wait_for(self, match: Callable[[str], bool], timeout: float = 60) -> float:
        """When the first line ``match`` accepts came (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    if match(line):
                        return at
                left = deadline - time.monotonic()
                ended = not any(reader.is_alive() for reader in self._readers)
                assert left > 0 and not ended, "no such line in:\n" + "\n".join(line for _, line in self.lines)
                self._cond.wait(min(left, 0.2))

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self.exited_at = time.monotonic()
        for reader in self._readers:
            reader.join(5)
        return code

    def matching(self, match: Callable[[str], bool]) -> list[tuple[float, str]]:
        with self._cond:
            return [(at, line) for at, line in self.lines if match(line)]

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def run_dir(repo: Path) -> Path:
    (found,) = (repo / ".trainboard" / "runs").iterdir()
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def is_stale(line: str) -> bool:
    return line.strip().startswith("metrics stale since")


def is_fresh(line: str) -> bool:
    return line.strip().startswith("metrics current again")


def test_tracking_server_stopped_and_restarted_mid_run(repo: Path, server: TrackingServer) -> None:
    """Kill the MLflow server at step 5 of 30, start it again 4 s later on the same port and
    store: one stale line within a poll interval + a request's timeout, one recovery line,
    every point in metrics.jsonl exactly once, the log complete, exit 0, no process left."""
    steps = 30
    write_config(repo, server.url, {"STEPS": str(steps), "PAUSE": "0.1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                    "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"})
    with Trainboard(repo) as run:
        run.wait_for(lambda line: line == "logged step 5")
        server.kill()
        stopped = time.monotonic()
        run.wait_for(is_stale, timeout=POLL_INTERVAL + REQUEST_TIMEOUT + 10)
        time.sleep(max(0.0, stopped + 4 - time.monotonic()))
        server.start()
        restarted = time.monotonic()
        code = run.finish()
    out = run.text()
    assert code == 0, out
    stale, fresh = run.matching(is_stale), run.matching(is_fresh)
    assert len(stale) == 1 and len(fresh) == 1, out  # one line each, not one per failed poll
    # Killed between two polls, the server refuses the next one; killed while a poll is under
    # way, the kernel resets that connection. Either is the reason, named.
    assert "connection refused" in stale[0][1] or "connection reset" in stale[0][1], stale
    assert stale[0][0] - stopped <= POLL_INTERVAL + REQUEST_TIMEOUT, (stale[0][0] - stopped, out)
    assert fresh[0][0] >= restarted, out
    assert run.matching(lambda line: line.startswith("retrying step")), "the job never met the outage"

    folder = run_dir(repo)
    points = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    counts = Counter((p["key"], p["step"]) for p in points)
    assert counts == Counter({(key, step): 1 for key in ("f1", "loss") for step in range(1, steps + 1)}), counts
    log = (folder / "job.log").read_text().splitlines()
    assert [line for line in log if line.startswith("logged step")] == [f"logged step {n}" for n in
                                                                         range(1, steps + 1)]
    assert log[-1] == "job done"
    record = json.loads((folder / "record.json").read_text())
    assert record["status"] == "succeeded" and record["exit_code"] == 0
    assert record.get("metrics_stale") is None and not record.get("verdict_on_stale_metrics")
    assert not alive(int(record["job"]["pid"]))


def test_a_store_that_hangs_at_the_end_marks_the_verdict_stale_and_the_process_exits(
        repo: Path, server: TrackingServer) -> None:
    """Freeze the server once the job has logged its last point: the verdict is said to be
    on stale metrics (and the record says so), and trainboard exits within 2 s of "finished"
    although its last MLflow calls got no answer. The job kept MLflow's generous retries."""
    write_config(repo, server.url, {"STEPS": "3", "PAUSE": "1.0"})
    with Trainboard(repo) as run:
        run.wait_for(lambda line: line == "logged step 3")
        server.freeze()
        frozen = time.monotonic()
        code = run.finish()
    out = run.text()
    assert code == ExitCode.INFRA_ERROR, out  # a verdict on stale metrics is no pass CI could merge on
    stale = run.matching(is_stale)
    assert len(stale) == 1 and stale[0][0] - frozen <= POLL_INTERVAL + REQUEST_TIMEOUT + 1, (stale, out)
    assert run.matching(lambda line: "the verdict is computed on stale metrics" in line), out
    (finished_at, _), = run.matching(lambda line: line.startswith("finished:"))
    assert run.exited_at is not None and run.exited_at - finished_at < 2.0, run.exited_at - finished_at
    expected = [os.environ.get(name) or JOB_HTTP_DEFAULTS[name]
                for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")]
    assert f"http {expected[0]} {expected[1]}" in out  # not trainboard's own short limits

    folder = run_dir(repo)
    record = json.loads((folder / "record.json").read_text())
    assert record["verdict_on_stale_metrics"] is True and record["status"] == "error"
    assert record["metrics_stale"]["reason"].startswith("MLflow unreachable")
    assert any("stale metrics" in e["message"] for e in record["errors"])
    assert not alive(int(record["job"]["pid"]))


@pytest.mark.parametrize("fault", ["closed port", "blackhole"])
def test_an_unreachable_tracking_uri_fails_the_check_in_seconds(repo: Path, fault: str) -> None:
    """Nothing serves at mlflow.tracking_uri (a closed port; a listener that never answers):
    exit 3 within 10 s, the message names the setting, its line and the fix, and nothing
    was started (no run folder, no runner)."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        if fault == "blackhole":
            hole.listen(16)  # the kernel accepts connections; nobody ever answers them
        write_config(repo, f"http://127.0.0.1:{hole.getsockname()[1]}", {"STEPS": "1", "PAUSE": "0"})
        began = time.monotonic()
        run = Trainboard(repo)
        code = run.finish(timeout=60)
        took = time.monotonic() - began
    out = run.text()
    assert code == 3, out
    assert took < 10, took
    assert "tb.yaml:" in out and "mlflow.tracking_uri" in out and "fix:" in out, out
    assert ("connection refused" if fault == "closed port" else f"no answer within {REQUEST_TIMEOUT}") in out, out
    assert "provision" not in out, out
    assert not (repo / ".trainboard" / "runs").exists() or not any((repo / ".trainboard" / "runs").iterdir())


def test_a_call_left_hanging_never_holds_the_process_at_exit() -> None:
    """A call given up on (its timeout passed) still blocks in its thread: the process ends
    at once when asyncio.run returns (asyncio.to_thread's executor would wait 30 s for it)."""
    script = textwrap.dedent(
        """
        import asyncio, time
        from trainboard.backend.tracking import in_thread

        async def main():
            try:
                await in_thread(time.sleep, 30, timeout=0.2)
            except TimeoutError:
                print("gave up", flush=True)

        asyncio.run(main())
        """
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - began
    assert done.returncode == 0 and done.stdout == "gave up\n", done
    assert took < 5, took


def test_calls_reuse_idle_threads_and_a_stuck_call_holds_only_its_own() -> None:
    """Calls run on daemon threads kept between calls (a thousand calls start a handful of
    threads, not a thousand); a call stuck in its thread never delays the next one, which gets
    a thread of its own; an idle thread ends after IDLE_SECONDS."""
    import asyncio
    import threading

    from trainboard.backend import tracking_calls
    from trainboard.backend.tracking import in_thread

    async def main() -> tuple[set[int], float, int]:
        idents = {await in_thread(threading.get_ident) for _ in range(1000)}
        release = threading.Event()
        stuck = asyncio.ensure_future(in_thread(release.wait, 30))
        began = time.monotonic()
        other = await in_thread(threading.get_ident, timeout=5)
        took = time.monotonic() - began
        release.set()
        assert await stuck is True
        return idents | {other}, took, threading.active_count()

    saved = tracking_calls._Workers.IDLE_SECONDS
    tracking_calls._Workers.IDLE_SECONDS = 0.5
    try:
        before = threading.active_count()
        idents, took, during = asyncio.run(main())
        assert len(idents) <= 3, len(idents)  # one thread served the thousand, one more while one was stuck
        assert took < 1.0, took
        deadline = time.monotonic() + 10
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before < during, (before, during)
    finally:
        tracking_calls._Workers.IDLE_SECONDS = saved


def test_jobs_keep_mlflows_generous_retries_while_trainboards_own_calls_are_short(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """trainboard's own requests: one try, REQUEST_TIMEOUT s; a job gets the user's values,
    else MLflow's defaults (fails loudly if MLflow changes them); release puts them back."""
    from mlflow import environment_variables as mlflow_env

    for name, value in JOB_HTTP_DEFAULTS.items():
        assert str(getattr(mlflow_env, name).default) == value, name
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    release = limit_http_client()
    try:
        assert mlflow_env.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
        assert mlflow_env.MLFLOW_HTTP_REQUEST_TIMEOUT.get() == REQUEST_TIMEOUT
        assert job_http_env()["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"  # the user's own
        assert job_http_env()["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "120"  # MLflow's default
    finally:
        release()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_mlflows_modules_leave_the_collectors_sight_once_imported() -> None:
    """The prefetched import freezes what it leaves (some 230,000 objects): later full garbage
    collections do not scan them."""
    script = textwrap.dedent(
        """
        import gc
        from trainboard.backend.tracking import prefetch
        before = gc.get_freeze_count()
        prefetch("sqlite:///x.db").join()
        from trainboard.backend.tracking import _sql_store_prefetched
        _sql_store_prefetched[0].join()
        print(before, gc.get_freeze_count())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    before, after = (int(n) for n in done.stdout.split())
    assert before == 0 and after > 100_000, done

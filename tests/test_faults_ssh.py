"""The fault suite for connections: a TCP proxy between the ssh runner and a real sshd
cuts, blackholes and partitions the connection under a real run; trainboard is
killed with SIGKILL and brought back with ``trainboard attach``.

Each case runs the tiny MLflow job (tests/conftest.py: "epoch k" lines, f1 and loss
logged at each step k) through the real CLI, and asserts the exit code, the log
exactly once (the kept job.log, and the same as the runner's own), no process of
the run left on the host, the record's final state, and every metric point in the
store (or the metrics marked stale).

The cases are independent and mostly wait (on the job, on a blackhole): a
module fixture runs them all at once, a few at a time; each test then checks one.
The runner's health check is set to 2 s (runner.stall_timeout) and keepalives
are left at 15 s: what notices a blackhole here is the health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, git, make_tiny_repo, run_cli
from tests.sshd_support import Sshd, TcpProxy, proxy_known_hosts, sshd  # noqa: F401  (the module's sshd)
from trainboard.backend.exitcodes import ExitCode

# Its module fixture runs the whole set once: keep these tests on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("faults_ssh")

EPOCHS = 8
SLEEP = 0.5  # seconds between epochs: the job trains for about 4 s
STALL = 2.0  # runner.stall_timeout in these runs
HOLD = 5.0  # seconds a blackhole or partition lasts
PARALLEL = 4  # cases under way at once
EXPECTED_LINES = [f"epoch {k}: f1={0.6 + 0.1 * k:.3f}" for k in range(1, EPOCHS + 1)]
EXPECTED_POINTS = {(key, k) for k in range(1, EPOCHS + 1) for key in ("f1", "loss")}


@dataclass
class Case:
    """One run under a fault, and what it left."""

    name: str
    runner: str = "ssh"  # or "local"
    store: str = "sqlite"  # the local store (served and forwarded for ssh), or "http": a server both reach
    expect: ExitCode = ExitCode.OK
    reconnect_timeout: float = 30.0
    orphan_timeout: float = 900.0  # runner.orphan_timeout: the host's watchdog stops a job left this long
    fault: Callable[[Case], None] | None = None  # done once the job has logged epoch 2
    # filled by the run
    repo: Path = Path()
    remote: Path = Path()
    proxy: TcpProxy | None = None
    returncode: int | None = None
    out: str = ""
    err: str = ""
    attach_out: str = ""
    attach_err: str = ""
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> dict[str, Any]:
        (path,) = (self.repo / ".trainboard" / "runs").glob("*/record.json")
        return json.loads(path.read_text())

    @property
    def run_dir(self) -> Path:
        return self.repo / ".trainboard" / "runs" / self.record["run_id"]


# -- the faults ----------------------------------------------------------------------------------------------


def cut(case: Case) -> None:
    assert case.proxy is not None
    case.notes["cut"] = case.proxy.cut()


def blackhole_then_resume(case: Case) -> None:
    assert case.proxy is not None
    case.proxy.blackhole()
    time.sleep(HOLD)
    case.proxy.resume()


def blackhole_then_close(case: Case) -> None:
    assert case.proxy is not None
    case.proxy.blackhole()
    time.sleep(HOLD)
    case.proxy.cut()
    case.proxy.resume()


def partition(case: Case) -> None:
    """The old connection is held forever (sshd keeps its session and its forwarded port)."""
    assert case.proxy is not None
    case.proxy.partition()
    time.sleep(HOLD)
    case.proxy.heal()


def blackhole_forever(case: Case) -> None:
    assert case.proxy is not None
    case.proxy.blackhole()


def kill_9(case: Case) -> None:
    """SIGKILL to trainboard, then `trainboard attach` (done by run_case, which holds the process)."""


CASES = [
    Case("cut", fault=cut),
    Case("blackhole-then-resume", fault=blackhole_then_resume),
    Case("blackhole-then-close", fault=blackhole_then_close),
    Case("partition", fault=partition),
    Case("blackhole-forever", fault=blackhole_forever, expect=ExitCode.INFRA_ERROR, reconnect_timeout=6.0,
         orphan_timeout=8.0),
    Case("kill-9-ssh-sqlite", fault=kill_9),
    Case("kill-9-ssh-http", store="http", fault=kill_9),
    Case("kill-9-local-sqlite", runner="local", fault=kill_9),
    Case("kill-9-local-http", runner="local", store="http", fault=kill_9),
]


# -- running a case ------------------------------------------------------------------------------------------


def prepare(case: Case, base: Path, sshd: Sshd, mlflow_db: Path, http_url: str) -> None:  # noqa: F811
    case.repo = make_tiny_repo(base / "repo")
    (case.repo / ".trainboard").mkdir()
    shutil.copy(mlflow_db, case.repo / ".trainboard" / "mlflow.db")
    case.remote = base / "remote"
    config = yaml.safe_load((case.repo / "tb.yaml").read_text())
    if case.runner == "ssh":
        case.proxy = TcpProxy(sshd.port)
        (base / "ssh_config").touch()
        config["runner"] = {
            "kind": "ssh", "host": "127.0.0.1", "port": case.proxy.port, "user": sshd.user,
            "identity_file": str(sshd.client_key), "ssh_config": str(base / "ssh_config"),
            "known_hosts": str(proxy_known_hosts(sshd, case.proxy.port, base / "known_hosts")),
            "remote_dir": str(case.remote), "stall_timeout": STALL, "connect_timeout": 5,
            "reconnect_timeout": case.reconnect_timeout, "orphan_timeout": case.orphan_timeout,
        }
    config["job"]["command"] = f"{sys.executable} job.py"  # the remote login's PATH knows no venv
    config["job"]["setup"] = []
    config["params"].update(epochs=EPOCHS, sleep=SLEEP)
    config["mlflow"]["experiment"] = case.name
    if case.store == "http":
        config["mlflow"]["tracking_uri"] = http_url
    (case.repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(case.repo, "commit", "-qam", case.name)


def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_ACTIONS", None)
    return env


def job_log_path(case: Case) -> Path | None:
    """The job's log on the runner (this machine), once the record names it."""
    try:
        job = case.record.get("job")
    except (ValueError, OSError):  # not there yet, or being written
        return None
    return Path(job["log"]) if job else None


def wait_for_epoch(case: Case, k: int, proc: subprocess.Popen[bytes] | None, timeout: float = 120) -> None:
    """Until the job has printed epoch ``k`` (its log on the runner, read here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = job_log_path(case)
        if path is not None and path.exists() and f"epoch {k}:" in path.read_text(errors="replace"):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{case.name}: trainboard ended before epoch {k}")
        time.sleep(0.05)
    raise AssertionError(f"{case.name}: no epoch {k} within {timeout} s")


def run_case(case: Case, base: Path, sshd: Sshd, mlflow_db: Path, http_url: str) -> Case:  # noqa: F811
    prepare(case, base, sshd, mlflow_db, http_url)
    started = time.monotonic()
    out_path, err_path = base / "stdout", base / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui"],
                                cwd=case.repo,
                                stdout=out, stderr=err, env=cli_env())
    try:
        wait_for_epoch(case, 2, proc)
        if case.fault is kill_9:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # The job goes on, unfollowed (and, with the forwarded store, its next metric call
            # waits at the relay: nothing serves the store until the attach).
            time.sleep(2 * SLEEP + 1)
            attach = run_cli(["attach", case.record["run_id"], "--no-tui"], cwd=case.repo, timeout=240)
            case.attach_out, case.attach_err = attach.stdout, attach.stderr
            case.returncode = attach.returncode
        else:
            if case.fault is not None:
                case.fault(case)
            case.returncode = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        case.seconds = time.monotonic() - started
        case.out, case.err = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    return case


def run_processes(run_id: str) -> list[str]:
    """Processes on the host (this machine) of the run: its command line names the run folder."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if run_id in line and " Z" not in line and "ps -ww" not in line]


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is alive (zombies, which nobody may reap here, do not count)."""
    out = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True).stdout
    return any(f.split()[0] == str(pgid) and not f.split()[1].startswith("Z") for f in out.splitlines() if f.strip())


@pytest.fixture(scope="module")
def http_store(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Iterator[str]:
    """A tracking server both sides reach (MLflow's own app on SQLite), standing in for a team's."""
    from trainboard.backend.mlflow_server import LocalTrackingServer

    folder = tmp_path_factory.mktemp("http-store")
    shutil.copy(empty_mlflow_db, folder / "mlflow.db")
    server = LocalTrackingServer(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts")
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


@pytest.fixture(scope="module")
def outcomes(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path,  # noqa: F811
             http_store: str) -> Iterator[dict[str, Case]]:
    """Every case, run at once (PARALLEL at a time); each test below checks one."""
    started = time.monotonic()
    results: dict[str, Case] = {}
    errors: dict[str, BaseException] = {}
    lock = threading.Lock()

    def one(case: Case) -> None:
        try:
            run_case(case, tmp_path_factory.mktemp(case.name), sshd, empty_mlflow_db, http_store)
        except BaseException as exc:  # kept for that case's test
            with lock:
                errors[case.name] = exc
        with lock:
            results[case.name] = case

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, CASES))
    took = time.monotonic() - started
    print(f"\nfault cases: {len(CASES)} in {took:.1f} s, "
          + ", ".join(f"{c.name} {c.seconds:.1f} s" for c in CASES))
    for name, exc in errors.items():
        results[name].notes["error"] = exc
    try:
        yield results
    finally:
        for case in CASES:
            if case.proxy is not None:
                case.proxy.close()
            with contextlib.suppress(Exception):  # a job left on a host that went away (blackhole-forever)
                os.killpg(int(case.record["job"]["pid"]), signal.SIGKILL)


def checked(outcomes: dict[str, Case], name: str) -> Case:
    case = outcomes[name]
    if "error" in case.notes:
        raise case.notes["error"]
    return case


def assert_complete(case: Case) -> None:
    """Exit 0, the log exactly once, every metric point, nothing of the run left running."""
    assert case.returncode == ExitCode.OK, case.out[-3000:] + case.err + case.attach_out[-3000:] + case.attach_err
    record = case.record
    assert record["status"] == "succeeded" and record["stages"]["teardown"]["state"] == "done"
    assert not record.get("metrics_stale")
    kept = (case.run_dir / "job.log").read_text().splitlines()
    # Each line once, in order, and nothing more: the wrapper's echo of the command, then the job's.
    # (The runner's own copy is gone with teardown: it may hold secrets.)
    assert kept == [f"$ {sys.executable} job.py", *EXPECTED_LINES]
    points = [json.loads(line) for line in (case.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {(p["key"], p["step"]) for p in points} == EXPECTED_POINTS
    assert len(points) == len(EXPECTED_POINTS)  # none twice
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.6 + 0.1 * EPOCHS)
    assert "Traceback" not in case.err + case.attach_err
    deadline = time.monotonic() + 5
    while (run_processes(record["run_id"]) or group_alive(int(record["job"]["pid"]))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_processes(record["run_id"]), "a process of the run outlived it"
    assert not group_alive(int(record["job"]["pid"])), "the job outlived the run"


# -- the network ---------------------------------------------------------------------------------------------


def test_a_cut_connection_resumes_with_every_line_and_metric(outcomes: dict[str, Case]) -> None:
    case = checked(outcomes, "cut")
    assert case.notes["cut"] >= 1
    assert_complete(case)
    assert "runner ssh: reconnecting" in case.out and "reconnected to" in case.out


@pytest.mark.parametrize("name", ["blackhole-then-resume", "blackhole-then-close"])
def test_a_blackhole_is_said_within_the_stall_timeout_and_the_run_completes(outcomes: dict[str, Case],
                                                                            name: str) -> None:
    case = checked(outcomes, name)
    assert_complete(case)
    # Noticed by the health check (keepalives are at 15 s x 3), and said.
    assert f"no answer from the host for {STALL:g} s" in case.out, case.out
    assert "runner ssh: reconnecting" in case.out and "reconnected to" in case.out


def test_a_half_open_session_holding_the_forwarded_port_does_not_cut_the_job_off_mlflow(
        outcomes: dict[str, Case]) -> None:
    """The issue's crash: the host still holds the old forward's port for the old session.
    The job talks to the relay, which follows the new forward: every metric arrives."""
    case = checked(outcomes, "partition")
    assert_complete(case)
    assert f"no answer from the host for {STALL:g} s" in case.out
    assert "ChannelListenError" not in case.out + case.err
    folder = Path(case.record["runner"]["state"]["run_folder"])
    port, _ = (folder / "forward.port").read_text().split()
    assert case.record["job_tracking_uri"] != f"http://127.0.0.1:{port}"  # the job never saw the forward's port


def test_a_host_gone_for_good_fails_the_run_with_exit_3_in_bounded_time(outcomes: dict[str, Case]) -> None:
    case = checked(outcomes, "blackhole-forever")
    assert case.returncode == ExitCode.INFRA_ERROR, case.out[-3000:] + case.err
    assert "Traceback" not in case.err
    assert f"no answer from the host for {STALL:g} s" in case.out
    assert "could not reconnect within 6 s" in case.err
    record = case.record
    assert record["status"] == "error" and record["exit_code"] == ExitCode.INFRA_ERROR
    # The job could not be stopped on a host that does not answer: teardown says so.
    assert any("stopping the job" in e["message"] for e in record["errors"]), record["errors"]
    assert case.seconds < 60
    # Nothing reaches a host that does not answer; the job's own watchdog there stops it once
    # trainboard has said nothing for runner.orphan_timeout (8 s here): no job outlives the run.
    assert any("runner.orphan_timeout" in e["message"] for e in record["errors"]), record["errors"]
    deadline = time.monotonic() + case.orphan_timeout + 15
    while group_alive(int(record["job"]["pid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(int(record["job"]["pid"])), "the job outlived its run on a host cut off for good"
    folder = Path(record["runner"]["state"]["run_folder"])
    assert "no word from trainboard for 8 s" in (folder / "job.orphaned").read_text()
    while run_processes(record["run_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not run_processes(record["run_id"]), "a process of the run outlived it"


# -- kill -9, then attach ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kill-9-ssh-sqlite", "kill-9-ssh-http", "kill-9-local-sqlite",
                                  "kill-9-local-http"])
def test_kill_9_then_attach_finishes_the_run_with_every_metric(outcomes: dict[str, Case], name: str) -> None:
    case = checked(outcomes, name)
    assert_complete(case)
    if name == "kill-9-ssh-sqlite":  # the served store and its forward came back with the attach
        assert "serving the MLflow store to the job again" in case.attach_out


# -- the relay and the forward, on the runner ----------------------------------------------------------------


@pytest.fixture
def here() -> Iterator[int]:
    """An HTTP server on this machine's 127.0.0.1 that answers "hello"."""
    import http.server

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def direct_runner(server: Sshd, tmp_path: Path) -> Any:
    from trainboard.backend.runners.ssh import SshRunner, SshTarget

    (tmp_path / "ssh_config").touch()
    target = SshTarget(host="127.0.0.1", port=server.port, user=server.user, client_keys=[str(server.client_key)],
                       known_hosts=str(server.known_hosts), config_path=str(tmp_path / "ssh_config"))
    return SshRunner(target, tmp_path / "run", "relay1", remote_dir=str(tmp_path / "remote"), reconnect_timeout=10)


async def test_the_relay_waits_for_a_forward_and_tells_what_it_gave_up(sshd: Sshd, tmp_path: Path,  # noqa: F811
                                                                       here: int) -> None:
    import shlex

    from trainboard.backend.runners.ssh import SshRunner

    runner: SshRunner = direct_runner(sshd, tmp_path)
    runner.relay_wait = 0.5
    await runner.provision()
    port = await runner.forward(here)
    folder = Path(runner.run_folder)

    async def get() -> tuple[int, str]:
        code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10).read())"
        status, out, _ = await runner.execute(f"{sys.executable} -c {shlex.quote(code)}")
        return status, out.decode()

    try:
        assert await get() == (0, "b'hello'\n")
        assert await runner.undelivered_metrics() is None
        forward = (folder / "forward.port").read_text().split()
        # No forward answers (as while trainboard is away): the call waits, then is given up.
        (folder / "forward.port").write_text(f"{free_tcp_port()} {int(forward[1]) + 1}\n")
        before = time.time()
        assert (await get())[0] != 0
        gave_up = await runner.undelivered_metrics()
        assert gave_up is not None and before <= gave_up <= time.time()
        # The forward back (as after an attach): calls get through, and nothing is missing any more.
        (folder / "forward.port").write_text(f"{forward[0]} {int(forward[1]) + 2}\n")
        assert await get() == (0, "b'hello'\n")
        assert await runner.undelivered_metrics() is None
        relay_pid = int((folder / "relay.pid").read_text())
    finally:
        await runner.teardown()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{relay_pid}").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not run_processes(str(folder)), "teardown leaves no relay"


def free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_host_that_refuses_forwarding_is_an_error_with_the_fix_not_a_traceback(
        tmp_path: Path, here: int) -> None:
    from tests.sshd_support import start_sshd
    from trainboard.backend.runners import RunnerError
    from trainboard.backend.runners.ssh import SshRunner

    server = start_sshd(tmp_path / "sshd", options=["AllowTcpForwarding no"])
    runner: SshRunner = direct_runner(server, tmp_path)
    try:
        await runner.provision()
        with pytest.raises(RunnerError, match="refused to forward.*AllowTcpForwarding yes.*tracking_uri"):
            await runner.forward(here)
    finally:
        await runner.teardown()
        server.stop()

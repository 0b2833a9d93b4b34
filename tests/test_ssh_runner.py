"""The ssh runner against a real OpenSSH sshd on 127.0.0.1, with real jobs and real connection drops."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from tests import sshd_support
from tests.sshd_support import Sshd, TcpProxy, proxy_known_hosts
from trainboard.backend import events as ev
from trainboard.backend.config import SshRunnerConfig
from trainboard.backend.logtail import CHUNK_SIZE, LineSplitter
from trainboard.backend.runners import JobHandle, JobSpec, RunnerError
from trainboard.backend.runners.ssh import HostKeyError, SshRunner, SshTarget

sshd = sshd_support.sshd  # the module's real sshd (a fixture)
ssh_proxy = sshd_support.ssh_proxy  # a cuttable relay in front of it, per test (a fixture)

PY = sys.executable  # the remote login's PATH has no venv: jobs name the interpreter
WEIRD = "it's \"quoted\" $(touch pwned) `touch pwned` $HOME \\ ; | & > <\nsecond line\n\ttab"


def make(sshd: Sshd, tmp_path: Path, *, port: int | None = None, known_hosts: Path | None = None,
         host_keys: list[str] | None = None, remote_dir: Path | None = None) -> SshRunner:
    """An SshRunner for ``sshd`` (directly, or through a proxy on ``port``), ignoring ~/.ssh/config."""
    empty_config = tmp_path / "ssh_config"
    empty_config.touch()
    target = SshTarget(host="127.0.0.1", port=port or sshd.port, user=sshd.user, client_keys=[str(sshd.client_key)],
                       known_hosts=str(known_hosts or sshd.known_hosts), host_keys=host_keys or [],
                       config_path=str(empty_config))
    return SshRunner(target, tmp_path / "run", "run1", remote_dir=str(remote_dir or tmp_path / "remote"),
                     reconnect_timeout=30)


def via_proxy(sshd: Sshd, proxy: TcpProxy, tmp_path: Path) -> SshRunner:
    known = proxy_known_hosts(sshd, proxy.port, tmp_path / "proxy_known_hosts")
    return make(sshd, tmp_path, port=proxy.port, known_hosts=known)


async def follow(runner: SshRunner, handle: JobHandle, splitter: LineSplitter | None = None,
                 on_chunk: Callable[[list[str]], None] | None = None) -> tuple[list[str], int | None]:
    """Session._follow's loop: tail from the splitter's read position until the job has exited."""
    splitter = splitter or LineSplitter()
    got: list[str] = []

    def take(lines: list[str]) -> None:
        got.extend(lines)
        if on_chunk is not None and lines:
            on_chunk(lines)

    while True:
        chunk = await runner.tail(handle, splitter.read_pos, CHUNK_SIZE)
        if chunk:
            take(splitter.feed(chunk))
            if len(chunk) == CHUNK_SIZE:
                continue
        status = await runner.status(handle)
        if not status.running:
            while chunk := await runner.tail(handle, splitter.read_pos, CHUNK_SIZE):
                take(splitter.feed(chunk))
            take(splitter.flush())
            return got, status.exit_code
        if not chunk:
            await asyncio.sleep(0.02)


def job_lines(lines: list[str]) -> list[str]:
    """The job's own output: without the ``$ command`` lines the wrapper echoes."""
    return [line for line in lines if not line.startswith("$ ")]


def live_group(pgid: int) -> list[str]:
    """Processes of group ``pgid`` that are alive (zombies left out)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


@pytest.fixture
def events() -> list[ev.Event]:
    return []


async def test_provision_sync_start_follow_fetch(sshd: Sshd, tmp_path: Path) -> None:
    runner = make(sshd, tmp_path)
    host = await runner.provision()
    try:
        assert host.kind == "ssh" and host.address == f"{sshd.user}@127.0.0.1:{sshd.port}"
        run_folder = Path(host.workspace).parent
        assert run_folder == tmp_path / "remote" / "run1" and Path(host.workspace).is_dir()
        assert run_folder.stat().st_mode & 0o777 == 0o700
        assert dict(host.details)["cpus"] == str(os.cpu_count())

        src = tmp_path / "src"
        (src / "dir with space").mkdir(parents=True)
        (src / "dir with space" / "a file.txt").write_text("hello from a file\n")
        (src / "run.sh").write_text("echo run\n")
        os.chmod(src / "run.sh", 0o755)
        os.symlink("dir with space/a file.txt", src / "link")
        (src / "ignored.bin").write_text("gitignored: not in the list\n")
        files = ["dir with space/a file.txt", "run.sh", "link"]
        await runner.sync(src, files, {"params.yaml": b"epochs: 2\n"})
        ws = Path(host.workspace)
        assert (ws / "dir with space" / "a file.txt").read_text() == "hello from a file\n"
        assert os.readlink(ws / "link") == "dir with space/a file.txt"
        assert os.access(ws / "run.sh", os.X_OK)
        assert not (ws / "ignored.bin").exists()
        assert (ws / "params.yaml").read_bytes() == b"epochs: 2\n"

        spec = JobSpec("job", ("cat link", "./run.sh", "cat params.yaml", "mkdir -p out/sub && echo 7 > out/sub/f",
                               "exit 3"), ".")
        handle = await runner.start(spec)
        lines, code = await follow(runner, handle)
        assert code == 3
        assert job_lines(lines) == ["hello from a file", "run", "epochs: 2"]
        assert lines == Path(handle.log_path).read_text().splitlines()  # the whole log, as written

        assert await runner.fetch("out", tmp_path / "got" / "out")
        assert (tmp_path / "got" / "out" / "sub" / "f").read_text() == "7\n"
        assert await runner.fetch("dir with space/a file.txt", tmp_path / "got" / "file.txt")
        assert (tmp_path / "got" / "file.txt").read_text() == "hello from a file\n"
        assert not await runner.fetch("missing.json", tmp_path / "got" / "missing.json")

        (run_folder / "interruption").write_text("spot instance interruption notice: terminate at 12:00Z\n")
        status = await runner.status(handle)
        assert (status.running, status.exit_code) == (False, 3)
        assert status.interruption == "spot instance interruption notice: terminate at 12:00Z"
    finally:
        await runner.teardown()
    assert run_folder.is_dir()  # the evidence stays on the host


async def test_a_million_lines_through_a_dozen_cuts(sshd: Sshd, ssh_proxy: TcpProxy, tmp_path: Path,
                                                    events: list[ev.Event]) -> None:
    runner = via_proxy(sshd, ssh_proxy, tmp_path)
    runner.notify = events.append
    await runner.provision()
    n = 1_000_000
    # ~24 MB, written in blocks of 1000 lines: about 23 reads of CHUNK_SIZE, so the
    # cuts land all along the stream.
    writer = (f"import sys\nfor b in range(0, {n}, 1000):\n"
              "    sys.stdout.write(''.join(f'{i} of the stream\\n' for i in range(b, b + 1000)))\n")
    await runner.sync(tmp_path, [], {"writer.py": writer.encode()})
    handle = await runner.start(JobSpec("job", (f"{PY} writer.py",), "."))
    loop = asyncio.get_running_loop()
    cuts_at = iter(range(n // 15, n * 13 // 15 + 1, n // 15))  # 13 cut points, spread over the stream
    next_cut = next(cuts_at)
    seen = 0
    hits: list[int] = []

    def reconnecting() -> bool:
        states = [e.state for e in events if isinstance(e, ev.RunnerChanged)]
        return bool(states) and states[-1] == "reconnecting"

    def cut(tries: int = 100) -> None:
        # Each cut drops a connection in use: none while the last one is still being replaced.
        dropped = 0 if reconnecting() else ssh_proxy.cut()
        if dropped == 0 and tries:
            loop.call_later(0.01, cut, tries - 1)
        else:
            hits.append(dropped)

    def on_chunk(lines: list[str]) -> None:
        nonlocal seen, next_cut
        seen += len(lines)
        if seen >= next_cut:
            # Lands during the next read, or the read-ahead already under way.
            loop.call_later(0.002 * (len(hits) % 4), cut)
            next_cut = next(cuts_at, n * 10)

    try:
        lines, code = await follow(runner, handle, on_chunk=on_chunk)
        await asyncio.sleep(0.05)
        await runner.status(handle)  # a cut that landed after the last read is noticed here
        raw = Path(handle.log_path).read_text().splitlines()  # teardown removes the raw log
    finally:
        await runner.teardown()
    assert code == 0
    got = job_lines(lines)
    expected = [f"{i} of the stream" for i in range(n)]
    first_bad = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    assert (len(got), first_bad) == (n, None)  # each line once, in order
    assert len(hits) >= 10 and sum(1 for h in hits if h) >= 10, hits
    states = [e.state for e in events if isinstance(e, ev.RunnerChanged)]
    assert states.count("reconnecting") >= 10 and states.count("ready") == states.count("reconnecting")
    assert lines == raw  # the whole log, nothing more


async def test_the_job_survives_the_connection(sshd: Sshd, ssh_proxy: TcpProxy, tmp_path: Path,
                                               events: list[ev.Event]) -> None:
    runner = via_proxy(sshd, ssh_proxy, tmp_path)
    runner.notify = events.append
    await runner.provision()
    # 4 s of output: still running after the 0.6 s below on a loaded machine (tests run in parallel)
    handle = await runner.start(JobSpec("job", ("for i in $(seq 1 40); do echo line $i; sleep 0.1; done",), "."))
    splitter = LineSplitter()
    lines: list[str] = []
    while "line 3" not in lines:
        lines += splitter.feed(await runner.tail(handle, splitter.read_pos, CHUNK_SIZE))
    ssh_proxy.down()
    try:
        log = Path(handle.log_path)
        size = log.stat().st_size
        follower = asyncio.create_task(follow(runner, handle, splitter))
        await asyncio.sleep(0.6)
        assert not follower.done()
        assert log.stat().st_size > size  # still writing while nobody is connected
        assert live_group(handle.pid)
    finally:
        ssh_proxy.up()
    rest, code = await follower
    await runner.teardown()
    assert code == 0
    assert job_lines(lines + rest) == [f"line {i}" for i in range(1, 41)]
    assert [e.state for e in events if isinstance(e, ev.RunnerChanged)] == ["reconnecting", "ready"]
    assert any(isinstance(e, ev.Notice) and "reconnected" in e.message for e in events)


async def test_stop_kills_the_whole_process_group(sshd: Sshd, tmp_path: Path) -> None:
    runner = make(sshd, tmp_path)
    await runner.provision()
    try:
        # A child that ignores SIGTERM (it needs the SIGKILL) and one that does not.
        command = "bash -c \"trap '' TERM; sleep 300\" & sleep 301 & echo started; wait"
        handle = await runner.start(JobSpec("job", (command,), "."))
        deadline = time.monotonic() + 10
        while not any("sleep 300" in p for p in live_group(handle.pid)) or \
                not any("sleep 301" in p for p in live_group(handle.pid)):
            assert time.monotonic() < deadline, live_group(handle.pid)
            await asyncio.sleep(0.05)
        assert (await runner.status(handle)).running
        started = time.monotonic()
        await runner.stop(handle, grace=0.5)
        assert time.monotonic() - started < 5
        assert live_group(handle.pid) == []
        status = await runner.status(handle)
        assert (status.running, status.exit_code) == (False, 143)
        await runner.stop(handle)  # again: nothing left, nothing to do
    finally:
        await runner.teardown()


async def test_quoting_reaches_the_job_verbatim(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote dir 'q' \"dq\" $(touch pwned) `touch pwned`"
    runner = make(sshd, tmp_path, remote_dir=remote)
    host = await runner.provision()
    try:
        params = f"note: {json.dumps(WEIRD)}\n".encode()
        await runner.sync(tmp_path, [], {"sub dir/params.yaml": params})
        literal = "$(touch pwned) `touch pwned` it's"
        commands = (
            f"{PY} -c 'import os; open(\"env.out\", \"w\").write(os.environ[\"WEIRD\"])'",
            f"printf '%s' {shlex.quote(literal)} > cmd.out",
            "cp params.yaml params.out",
            "echo done",
        )
        with pytest.raises(RunnerError, match="environment variable name"):
            await runner.start(JobSpec("job", ("true",), "sub dir", env={"BAD NAME=$(touch pwned)": "x"}))
        handle = await runner.start(JobSpec("job", commands, "sub dir", env={"WEIRD": WEIRD}))
        lines, code = await follow(runner, handle)
        assert code == 0, lines
        ws = Path(host.workspace) / "sub dir"
        assert (ws / "env.out").read_text() == WEIRD
        assert (ws / "cmd.out").read_text() == literal
        assert (ws / "params.out").read_bytes() == params
        assert job_lines(lines)[-1] == "done"
        assert "$ " + commands[1] in lines  # the wrapper echoes each command as written
    finally:
        await runner.teardown()
    assert not list(tmp_path.rglob("pwned"))
    assert not (Path.home() / "pwned").exists() and not (Path.cwd() / "pwned").exists()


async def test_host_keys_are_always_verified(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.touch()
    started = time.monotonic()
    with pytest.raises(HostKeyError, match="unknown.*ssh-keyscan"):
        await make(sshd, tmp_path, known_hosts=empty).provision()

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    with pytest.raises(HostKeyError, match="does not match"):
        await make(sshd, tmp_path, known_hosts=wrong).provision()
    # A mismatch is final: wait_ready does not retry it.
    with pytest.raises(HostKeyError, match="does not match"):
        await make(sshd, tmp_path, known_hosts=empty, host_keys=[other]).wait_ready(30)
    assert time.monotonic() - started < 5

    # host_keys alone are trusted (the ec2 runner's injected key), whatever known_hosts says.
    runner = make(sshd, tmp_path, known_hosts=wrong, host_keys=[sshd.host_key_pub])
    await runner.wait_ready(10)
    await runner.teardown()


async def test_unreachable_host(sshd: Sshd, ssh_proxy: TcpProxy, tmp_path: Path) -> None:
    ssh_proxy.down()
    runner = via_proxy(sshd, ssh_proxy, tmp_path)
    with pytest.raises(RunnerError, match="could not connect.*refused"):
        await runner.provision()
    started = time.monotonic()
    with pytest.raises(RunnerError, match="did not accept SSH within 0.6 s"):
        await runner.wait_ready(0.6)
    assert time.monotonic() - started < 3
    # wait_ready keeps trying until sshd answers (an instance still booting).
    asyncio.get_running_loop().call_later(0.5, ssh_proxy.up)
    await runner.wait_ready(10)
    assert (await runner.provision()).workspace
    await runner.teardown()


async def test_reattach_resumes_a_running_job(sshd: Sshd, tmp_path: Path) -> None:
    first = make(sshd, tmp_path)
    host = await first.provision()
    handle = await first.start(JobSpec("job", ("for i in $(seq 1 40); do echo line $i; sleep 0.03; done",), "."))
    splitter = LineSplitter()
    lines: list[str] = []
    while len(lines) < 6:
        lines += splitter.feed(await first.tail(handle, splitter.read_pos, CHUNK_SIZE))
    state = json.loads(json.dumps(first.state()))
    await first.detach()

    second = SshRunner(SshTarget("elsewhere.invalid"), tmp_path / "run", "run1")
    assert await second.reattach(state) == host
    resumed = LineSplitter(splitter.offset)  # a new process knows only the consumed offset
    rest, code = await follow(second, handle, resumed)
    await second.teardown()
    await first.teardown()
    assert code == 0
    assert job_lines(lines + rest) == [f"line {i}" for i in range(1, 41)]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        body = b"hello from here " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_here() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_forward_reaches_here_and_comes_back_after_a_drop(sshd: Sshd, ssh_proxy: TcpProxy, tmp_path: Path,
                                                                http_here: int) -> None:
    runner = via_proxy(sshd, ssh_proxy, tmp_path)
    await runner.provision()
    remote_port = await runner.forward(http_here)
    assert await runner.forward(http_here) == remote_port

    async def fetch(path: str) -> tuple[int, str]:
        code = (f"import urllib.request; print(urllib.request.urlopen("
                f"'http://127.0.0.1:{remote_port}{path}', timeout=5).read().decode())")
        status, out, _ = await runner.execute(f"{PY} -c {shlex.quote(code)}")
        return status, out.decode().strip()

    try:
        assert await fetch("/one") == (0, "hello from here /one")
        assert ssh_proxy.cut() >= 1
        deadline = time.monotonic() + 10
        while (got := await fetch("/two")) != (0, "hello from here /two"):
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.1)
    finally:
        await runner.teardown()


async def test_from_config_with_an_ssh_config_alias(sshd: Sshd, tmp_path: Path) -> None:
    ssh_config = tmp_path / "config"
    ssh_config.write_text(f"Host trainbox\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n")
    cfg = SshRunnerConfig(kind="ssh", host="trainbox", identity_file=str(sshd.client_key),
                          known_hosts=str(sshd.known_hosts), ssh_config=str(ssh_config),
                          remote_dir=str(tmp_path / "remote"), reconnect_timeout=5)
    runner = SshRunner.from_config(cfg, tmp_path / "run", "run7")
    assert runner.reconnect_timeout == 5
    host = await runner.provision()
    await runner.teardown()
    assert host.address == f"{sshd.user}@127.0.0.1:{sshd.port}"
    assert host.workspace == str(tmp_path / "remote" / "run7" / "workspace")


async def test_letting_go_is_safe_at_any_point(sshd: Sshd, tmp_path: Path) -> None:
    runner = make(sshd, tmp_path)
    await runner.detach()
    await runner.teardown()
    with pytest.raises(RunnerError, match="not provisioned"):
        await runner.start(JobSpec("job", ("true",), "."))
    await runner.provision()
    await runner.teardown()
    await runner.teardown()


async def test_an_sshd_with_a_given_host_key_and_authorized_key(tmp_path: Path) -> None:
    """What the ec2 runner's tests do: the host key and the login key are their own."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(str(tmp_path / "host_key"))
    login_key = asyncssh.generate_private_key("ssh-ed25519")
    login_key.write_private_key(str(tmp_path / "login_key"))
    server = sshd_support.start_sshd(tmp_path / "sshd", host_key=tmp_path / "host_key",
                                     authorized_keys=[login_key.export_public_key().decode()])
    try:
        host_pub = host_key.export_public_key().decode().strip()
        assert server.host_key_pub == " ".join(host_pub.split()[:2])
        (tmp_path / "ssh_config").touch()
        runner = SshRunner(SshTarget(host="127.0.0.1", port=server.port, user=server.user,
                                     client_keys=[str(tmp_path / "login_key")], host_keys=[host_pub],
                                     config_path=str(tmp_path / "ssh_config")),
                           tmp_path / "run", "run1", remote_dir=str(tmp_path / "remote"))
        await runner.wait_ready(10)
        assert (await runner.provision()).address == f"{server.user}@127.0.0.1:{server.port}"
        await runner.teardown()
    finally:
        server.stop()


async def test_the_heartbeat_keeps_a_followed_job_and_a_detached_one_alive_past_the_orphan_timeout(
        sshd: Sshd, tmp_path: Path) -> None:
    """runner.orphan_timeout at 2 s: while a session holds the run its heartbeat keeps the job's
    watchdog quiet, and a detach (the run left on purpose) does too; only silence stops the job."""
    runner = make(sshd, tmp_path)
    runner.target.orphan_timeout = 2.0
    await runner.provision()
    try:
        handle = await runner.start(JobSpec("job", ("echo started; sleep 6; echo done",), "."))
        lines, code = await follow(runner, handle)  # 6 s, three times the limit
        assert code == 0 and job_lines(lines) == ["started", "done"]
        folder = Path(runner.run_folder)
        assert not (folder / "job.orphaned").exists()

        handle = await runner.start(JobSpec("left", ("sleep 6; echo done",), "."))
        state = json.loads(json.dumps(runner.state()))
        await runner.detach()
        await asyncio.sleep(4)  # twice the limit, with no heartbeat: detached, so left alone
        again = SshRunner(SshTarget("elsewhere.invalid"), tmp_path / "run", "run1")
        await again.reattach(state)
        lines, code = await follow(again, handle)
        assert code == 0 and job_lines(lines) == ["done"] and not (folder / "left.orphaned").exists()
        await again.teardown()
    finally:
        await runner.teardown()


async def test_a_process_file_that_fails_as_its_process_ends_reads_as_gone(sshd: Sshd, tmp_path: Path) -> None:
    """The job's status reads /proc/<pid>/stat over SFTP; read just as the process ends it fails
    with ESRCH, which the SFTP server says as a bare "Failure" (as for any errno it has no code
    for: EIO here, from /proc/self/mem at address 0). A /proc file's failure reads as gone; any
    other file's failure is still an error."""
    from trainboard.backend.runners.ssh.files import read_small

    async with asyncssh.connect("127.0.0.1", port=sshd.port, username=sshd.user, client_keys=[str(sshd.client_key)],
                                known_hosts=str(sshd.known_hosts), config=[]) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("/proc/self/mem", "rb") as fh:
                with pytest.raises(asyncssh.SFTPFailure):
                    await fh.read(64, 0)  # the server's bare failure, as it comes
            assert await read_small(sftp, "/proc/self/mem") is None
            with pytest.raises(asyncssh.SFTPFailure):
                await read_small(sftp, str(tmp_path))  # a folder: EISDIR, not a /proc file

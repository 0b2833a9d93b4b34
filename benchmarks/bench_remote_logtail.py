"""Remote log throughput: the session following a job's log over SSH.

    .venv/bin/python benchmarks/bench_remote_logtail.py [--lines 2000000] [--repeat 3]

Starts a real OpenSSH sshd on 127.0.0.1 (tests/sshd_support.py), so "the
runner" is this machine reached over SSH. A real detached job, started by
SshRunner.start, writes N lines of 60 bytes to its log; once it has exited, the
finished log is read twice over the same kind of connection, and the two are
timed from the first read to the last line:

  baseline  plain asyncssh: SFTP open, then SFTPClientFile.read(1 MiB, offset)
            in sequence until EOF, counting b"\\n" in each chunk (asyncssh
            splits each 1 MiB read into parallel SFTP requests itself);
  ours      the session's own follow loop, Session._follow: SshRunner.tail in
            CHUNK_SIZE reads (with its read-ahead), LineSplitter, Redactor.lines,
            the masked copy the session keeps in <run_dir>/job.log, and one
            trainboard.backend.events.LogLines event per chunk to an EventBus subscriber.

Both read the same file from the page cache, on a connection opened before
the clock starts. Prints the median of --repeat rounds, lines/s for each, and
the ratio. Goals: ours >= 1,000,000 lines/s and ours / baseline >= 0.5.
``--read-ahead N`` sets how many chunks SshRunner.tail keeps under way (0: off),
to see what the read-ahead is worth.
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINE_BYTES = 60
BLOCK_LINES = 16_384  # ~1 MB per write
GOAL_RATE = 1_000_000
GOAL_RATIO = 0.5


def write(lines: int) -> None:
    """The job: ``lines`` lines of LINE_BYTES bytes to stdout, in ~1 MB blocks."""
    pad = "x" * (LINE_BYTES - 10)
    block = "".join(f"{i:08d} {pad}\n" for i in range(BLOCK_LINES)).encode()
    out = sys.stdout.buffer
    full, rest = divmod(lines, BLOCK_LINES)
    for _ in range(full):
        out.write(block)
    out.write(block[: rest * LINE_BYTES])
    out.flush()


@dataclass
class Result:
    log_bytes: int
    base: list[float]  # lines/s per round
    ours: list[float]
    events: int
    read_ahead: int


@dataclass
class Counter:
    """The EventBus subscriber: counts the lines of every LogLines event."""

    kind: type
    lines: int = 0
    events: int = 0

    def __call__(self, event: object) -> None:
        if isinstance(event, self.kind):
            self.lines += len(event.lines)  # type: ignore[attr-defined]
            self.events += 1


async def baseline(conn: object, log_path: str) -> tuple[int, float]:
    """Plain asyncssh: sequential 1 MiB SFTP reads of the whole file, counting newlines."""
    from trainboard.backend.logtail import CHUNK_SIZE

    async with conn.start_sftp_client() as sftp:  # type: ignore[attr-defined]
        async with sftp.open(log_path, "rb") as fh:
            lines = 0
            offset = 0
            started = time.perf_counter()
            while data := await fh.read(CHUNK_SIZE, offset):
                lines += data.count(b"\n")
                offset += len(data)
            return lines, time.perf_counter() - started


async def run(lines: int, repeat: int, read_ahead: int | None, tmp: Path) -> Result:
    import asyncssh

    from tests.sshd_support import start_sshd
    from trainboard.backend import events as ev
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ssh import SshRunner, SshTarget
    from trainboard.backend.session import Session

    sshd = start_sshd(tmp / "sshd")
    try:
        (tmp / "ssh_config").touch()
        target = SshTarget(host="127.0.0.1", port=sshd.port, user=sshd.user, client_keys=[str(sshd.client_key)],
                           known_hosts=str(sshd.known_hosts), config_path=str(tmp / "ssh_config"))
        writer = SshRunner(target, tmp / "writer", "bench", remote_dir=str(tmp / "remote"))
        await writer.provision()
        command = f"{sys.executable} {__file__} --write {lines}"
        handle = await writer.start(JobSpec(name="job", commands=(command,), workdir="."))
        while (status := await writer.status(handle)).running:
            await asyncio.sleep(0.05)
        await writer.detach()  # teardown would remove the raw log the rounds read
        if status.exit_code != 0:
            raise SystemExit(f"the writer failed with exit code {status.exit_code}")
        log_bytes = Path(handle.log_path).stat().st_size

        conn = await asyncssh.connect("127.0.0.1", sshd.port, username=sshd.user,
                                      client_keys=[str(sshd.client_key)], known_hosts=str(sshd.known_hosts),
                                      config=[str(tmp / "ssh_config")])
        config = RunConfig.model_validate({"job": {"command": "bench"}, "metrics": {"lines": {}}})
        base_rates: list[float] = []
        our_rates: list[float] = []
        events = 0
        for round_ in range(repeat):
            count, seconds = await baseline(conn, handle.log_path)
            if count != lines + 1:  # + the "$ command" line the wrapper echoes
                raise SystemExit(f"baseline read {count:,} lines of {lines + 1:,}")
            base_rates.append(count / seconds)

            run_dir = tmp / f"run{round_}"
            runner = SshRunner(target, run_dir, "bench", remote_dir=str(tmp / "remote"))
            if read_ahead is not None:
                runner.read_ahead = read_ahead
            await runner.provision()
            session = Session(LoadedConfig(config, tmp / "bench.yaml", (), {}), root=tmp)
            session.runner = runner  # type: ignore[assignment]
            counter = Counter(ev.LogLines)
            session.subscribe(counter)
            started = time.perf_counter()
            code = await session._follow(handle, "job")
            seconds = time.perf_counter() - started
            await runner.detach()  # the next round reads the same raw log
            if code != 0 or counter.lines != lines + 1:
                raise SystemExit(f"lines lost or repeated: {counter.lines:,} delivered of {lines + 1:,}")
            if not filecmp.cmp(session.run_dir / "job.log", handle.log_path, shallow=False):
                raise SystemExit("the log kept here differs from the log on the runner (it has no secrets to mask)")
            our_rates.append(counter.lines / seconds)
            events = counter.events
        conn.close()
        await conn.wait_closed()
    finally:
        sshd.stop()
    return Result(log_bytes, base_rates, our_rates, events, runner.read_ahead)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--read-ahead", type=int, default=None,
                        help="chunks SshRunner.tail reads ahead (default: its own setting; 0: off)")
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)  # the writer job's mode
    args = parser.parse_args()
    if args.write is not None:
        write(args.write)
        return 0
    from trainboard.backend.logtail import CHUNK_SIZE

    with tempfile.TemporaryDirectory(prefix="bench-remote-logtail-") as tmp:
        result = asyncio.run(run(args.lines, args.repeat, args.read_ahead, Path(tmp)))

    base, ours = statistics.median(result.base), statistics.median(result.ours)

    def rounds(rates: list[float]) -> str:
        return ", ".join(f"{r:,.0f}" for r in rates)

    print(f"{args.lines:,} lines of {LINE_BYTES} bytes ({result.log_bytes / 1e6:,.0f} MB) on a runner reached "
          f"over SSH (OpenSSH sshd on 127.0.0.1), median of {args.repeat} rounds")
    print(f"baseline, plain asyncssh SFTP reads of {CHUNK_SIZE // (1024 * 1024)} MiB in sequence: "
          f"{base:,.0f} lines/s  (rounds: {rounds(result.base)})")
    print(f"ours, Session._follow over SshRunner.tail (read-ahead {result.read_ahead} chunks, "
          f"LineSplitter, Redactor, masked copy, {result.events:,} LogLines events): {ours:,.0f} lines/s  "
          f"(rounds: {rounds(result.ours)})")
    print(f"ratio ours / baseline = {ours / base:.2f}")
    print(f"goal >= {GOAL_RATE:,} lines/s: {'met' if ours >= GOAL_RATE else 'MISSED'}; "
          f"goal ratio >= {GOAL_RATIO}: {'met' if ours / base >= GOAL_RATIO else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

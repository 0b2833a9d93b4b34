"""Log throughput: the session following a job that writes millions of lines.

    .venv/bin/python benchmarks/bench_logtail.py [--lines 10000000]

A real detached job on the local runner (this script with --write) appends N
lines of 60 bytes to its log in ~1 MB blocks, as fast as it can. The reader is
the session's own follow loop, Session._follow: LocalRunner.tail reads
CHUNK_SIZE bytes from the LineSplitter's read position, the splitter cuts them
into lines, and each batch is published as one trainboard.backend.events.LogLines event to
an EventBus subscriber that counts the lines. It follows the growing log until
the job has exited and every line has arrived.

Reports the reader's lines/s (from the job's start to the last line delivered),
the reader process's peak RSS (ru_maxrss), and the baseline in the same run:
`for line in open(log, 'rb')` counting the lines of the finished, cached file.
Goals: >= 1,000,000 lines/s and peak RSS <= 200 MB after 10 M lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The backend is imported in follow(): the writer job, this same script, starts without it.

LINE_BYTES = 60
BLOCK_LINES = 16_384  # ~1 MB per write
GOAL_RATE = 1_000_000
GOAL_RSS_MB = 200


def write(lines: int, stamp: Path, rate: float) -> None:
    """The writer (the job): ``lines`` lines of LINE_BYTES bytes to stdout, in big blocks.

    ``rate`` > 0 paces it to about that many lines/s; 0 writes as fast as it can.
    """
    start = time.time()
    pad = "x" * (LINE_BYTES - 10)
    block = "".join(f"{i:08d} {pad}\n" for i in range(BLOCK_LINES)).encode()
    assert len(block) == BLOCK_LINES * LINE_BYTES
    out = sys.stdout.buffer
    full, rest = divmod(lines, BLOCK_LINES)
    for index in range(full):
        out.write(block)
        if rate:
            ahead = start + (index + 1) * BLOCK_LINES / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
    out.write(block[: rest * LINE_BYTES])
    out.flush()
    stamp.write_text(f"{start} {time.time()}")


@dataclass
class Counter:
    """The EventBus subscriber: counts the lines of every LogLines event."""

    kind: type
    lines: int = 0
    batches: list[tuple[float, int]] = field(default_factory=list)  # (time, lines so far)

    def __call__(self, event: object) -> None:
        if isinstance(event, self.kind):
            self.lines += len(event.lines)
            self.batches.append((time.time(), self.lines))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def follow(lines: int, rate: float, tmp: Path) -> dict[str, float]:
    from trainboard.backend import events as ev
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.local import LocalRunner
    from trainboard.backend.session import Session

    run_dir = tmp / "run"
    runner = LocalRunner(run_dir)
    await runner.provision()
    config = RunConfig.model_validate({"job": {"command": "bench"}, "metrics": {"lines": {}}})
    session = Session(LoadedConfig(config, tmp / "bench.yaml", (), {}), root=tmp)
    session.runner = runner
    counter = Counter(ev.LogLines)
    session.subscribe(counter)
    stamp = tmp / "writer.times"
    command = f"python {shlex.quote(__file__)} --write {lines} --rate {rate} --stamp {shlex.quote(str(stamp))}"

    rss_before = rss_mb()
    started = time.time()
    handle = await runner.start(JobSpec(name="job", commands=(command,), workdir="."))
    code = await session._follow(handle, "job")
    finished = time.time()
    rss_peak = rss_mb()
    await runner.teardown()

    if code != 0:
        raise SystemExit(f"the writer failed with exit code {code}: {Path(handle.log_path).read_text()[-500:]}")
    if counter.lines != lines + 1:  # + the "$ command" line the job wrapper echoes
        raise SystemExit(f"lines lost or repeated: {counter.lines - 1:,} delivered of {lines:,}")
    w_start, w_end = (float(x) for x in stamp.read_text().split())
    during = [n for t, n in counter.batches if t <= w_end]
    return {
        "seconds": finished - started,
        "first_line": counter.batches[0][0] - started,
        "lag": finished - w_end,
        "writer_seconds": w_end - w_start,
        "lines_while_writing": during[-1] if during else 0,
        "batches": len(counter.batches),
        "rss_before": rss_before,
        "rss_peak": rss_peak,
        # The runner's raw log goes with teardown; the session's masked copy holds the same lines.
        "log": str(session.run_dir / "job.log"),
        "log_bytes": os.path.getsize(session.run_dir / "job.log"),
    }


def baseline(path: str) -> tuple[int, float]:
    count = 0
    start = time.perf_counter()
    with open(path, "rb") as fh:
        for _line in fh:
            count += 1
    return count, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="pace the writer to about this many lines/s (default 0: as fast as it can)")
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)  # the writer job's mode
    parser.add_argument("--stamp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write is not None:
        write(args.write, args.stamp, args.rate)
        return 0
    from trainboard.backend.logtail import CHUNK_SIZE

    with tempfile.TemporaryDirectory(prefix="bench-logtail-") as tmp:
        result = asyncio.run(follow(args.lines, args.rate, Path(tmp)))
        base_count, base_seconds = baseline(str(result["log"]))

    n = args.lines
    rate = n / result["seconds"]
    base_rate = base_count / base_seconds
    print(f"{n:,} lines of {LINE_BYTES} bytes ({result['log_bytes'] / 1e6:,.0f} MB), "
          f"read in chunks of {CHUNK_SIZE // (1024 * 1024)} MiB, {result['batches']:,} LogLines events")
    paced = f"paced to {args.rate:,.0f} lines/s" if args.rate else "unpaced"
    print(f"writer (the job, {paced}): {result['writer_seconds']:.2f} s; "
          f"{result['lines_while_writing']:,} lines delivered while it was still writing")
    print(f"reader (Session._follow): {result['seconds']:.2f} s from job start to last line "
          f"(first line after {result['first_line']:.2f} s, last {result['lag']:.2f} s after the "
          f"writer's end): {rate:,.0f} lines/s")
    print(f"baseline `for line in open(f, 'rb')` on the finished file: {base_seconds:.2f} s: "
          f"{base_rate:,.0f} lines/s")
    print(f"ratio reader / baseline = {rate / base_rate:.2f}")
    print(f"reader peak RSS: {result['rss_peak']:.0f} MB (after imports, before following: "
          f"{result['rss_before']:.0f} MB)")
    rate_ok = rate >= GOAL_RATE
    rss_ok = result["rss_peak"] <= GOAL_RSS_MB
    print(f"goal >= {GOAL_RATE:,} lines/s: {'met' if rate_ok else 'MISSED'}; "
          f"goal peak RSS <= {GOAL_RSS_MB} MB: {'met' if rss_ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

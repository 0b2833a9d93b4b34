"""Ray log pipeline: a Ray job's log into trainboard's event stream, against ``get_job_logs``.

    .venv/bin/python benchmarks/bench_ray_logs.py [--lines 2000000] [--repeat 3]

Starts a real Ray head on 127.0.0.1 (trainboard's LocalHead) and, on it, through RayRunner.start,
a job that prints N lines of 60 bytes (in ~1 MB writes) and exits. Then, per round:

  baseline  ``JobSubmissionClient.get_job_logs`` of the finished job: the whole log in one
            answer, its lines counted;
  ours      the session's follow loop (Session._follow) over a fresh RayRunner that has no copy
            of the log yet, as an attach does: the LogPump's stream from the log API with its
            byte-offset skip, the reconcile at the job's end, LineSplitter, Redactor, the masked
            copy in <run_dir>/job.log, and one LogLines event per chunk to a subscriber.

Both read the same finished log; ours must deliver every line exactly once (the kept copy is
compared with get_job_logs byte for byte) or the benchmark fails. The first, live, round follows
the job while it prints, and reports its time from the job's submission too. Prints the median
lines/s of each and the ratio. Goal: ours / baseline >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_remote_logtail import Counter  # noqa: E402  (counts the LogLines events' lines)

LINE_BYTES = 60
BLOCK_LINES = 16_384
GOAL_RATIO = 0.5

WRITER = f"""import sys
n = int(sys.argv[1])
pad = "x" * {LINE_BYTES - 10}
block = "".join(f"{{i:08d}} {{pad}}\\n" for i in range({BLOCK_LINES})).encode()
full, rest = divmod(n, {BLOCK_LINES})
for _ in range(full):
    sys.stdout.buffer.write(block)
sys.stdout.buffer.write(block[: rest * {LINE_BYTES}])
sys.stdout.flush()
"""


@dataclass
class Result:
    log_bytes: int = 0
    live_seconds: float = 0.0  # from submission to the last line in the event stream
    base: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    events: int = 0


async def follow(tmp: Path, name: str, address: str, handle: object) -> tuple[int, float, int, bytes]:
    """A fresh session and runner follow the job; (lines, seconds, events, the log kept)."""
    from trainboard.backend import events as ev
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.config_schema import RayRunnerConfig
    from trainboard.backend.runners.ray import RayRunner
    from trainboard.backend.session import Session

    runner = RayRunner(RayRunnerConfig(kind="ray", address=address), tmp / name, "bench")
    await runner.provision()
    config = RunConfig.model_validate({"job": {"command": "bench"}, "metrics": {"lines": {}}})
    session = Session(LoadedConfig(config, tmp / "bench.yaml", (), {}), root=tmp)
    session.runner = runner  # type: ignore[assignment]
    counter = Counter(ev.LogLines)
    session.subscribe(counter)
    started = time.perf_counter()
    code = await session._follow(handle, "job")  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    await runner.detach()
    if code != 0:
        raise SystemExit(f"{name}: the job exited {code}")
    return counter.lines, seconds, counter.events, (session.run_dir / "job.log").read_bytes()


def check(name: str, kept: bytes, full: bytes) -> None:
    if kept != full:
        raise SystemExit(f"{name}: the kept log differs from get_job_logs ({len(kept):,} bytes of "
                         f"{len(full):,}): lines lost or repeated")


async def run(lines: int, repeat: int, tmp: Path) -> Result:
    from trainboard.backend.config_schema import RayRunnerConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ray import RayRunner
    from trainboard.backend.runners.ray.head import LocalHead

    head = await LocalHead.start(cpus=2)
    result = Result()
    try:
        submitter = RayRunner(RayRunnerConfig(kind="ray", address=head.address), tmp / "submit", "bench")
        await submitter.provision()
        await submitter.sync(tmp, [], {"writer.py": WRITER.encode()})
        started = time.perf_counter()
        handle = await submitter.start(JobSpec(name="job", commands=(f"python writer.py {lines}",), workdir="."))
        await submitter.detach()
        assert submitter.server is not None
        server = submitter.server
        await server.connect()
        # The live round: the session follows the job while it prints (its own runner and copy).
        while (info := await server.info("bench")) is None or not info.driver_node_id:
            await asyncio.sleep(0.05)
        *_, kept = await follow(tmp, "live", head.address, handle)
        result.live_seconds = time.perf_counter() - started
        from ray.job_submission import JobSubmissionClient

        sdk = JobSubmissionClient(head.address)  # Ray's own client: the baseline's get_job_logs
        full = (await asyncio.to_thread(sdk.get_job_logs, "bench")).encode()
        result.log_bytes = len(full)
        check("live", kept, full)
        for round_ in range(repeat):
            t0 = time.perf_counter()
            text = await asyncio.to_thread(sdk.get_job_logs, "bench")
            seconds = time.perf_counter() - t0
            result.base.append(text.count("\n") / seconds)
            count, seconds, events, kept = await follow(tmp, f"round{round_}", head.address, handle)
            check(f"round {round_}", kept, full)
            total = full.count(b"\n")
            if count != total:
                raise SystemExit(f"{count:,} lines delivered of {total:,}")
            result.ours.append(count / seconds)
            result.events = events
        await server.close()
    finally:
        await head.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the head (finally) on a kill too
    with tempfile.TemporaryDirectory(prefix="bench-ray-logs-") as tmp:
        result = asyncio.run(run(args.lines, args.repeat, Path(tmp)))
    base, ours = statistics.median(result.base), statistics.median(result.ours)

    def rounds(rates: list[float]) -> str:
        return ", ".join(f"{r:,.0f}" for r in rates)

    print(f"{args.lines:,} lines of {LINE_BYTES} bytes ({result.log_bytes / 1e6:,.0f} MB) from a Ray job on a "
          f"local head (127.0.0.1), median of {args.repeat} rounds")
    print(f"live: submission to the last line in the event stream: {result.live_seconds:.2f} s")
    print(f"baseline, get_job_logs of the finished job: {base:,.0f} lines/s  (rounds: {rounds(result.base)})")
    print(f"ours, Session._follow over a fresh RayRunner (log API stream, reconcile, LineSplitter, Redactor, "
          f"masked copy, {result.events:,} LogLines events): {ours:,.0f} lines/s  (rounds: {rounds(result.ours)})")
    print(f"ratio ours / baseline = {ours / base:.2f}  (goal >= {GOAL_RATIO}: "
          f"{'met' if ours / base >= GOAL_RATIO else 'MISSED'}); every line exactly once: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

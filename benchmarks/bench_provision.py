"""EC2 provisioning: how many AWS round trips stand between `trainboard run` and SSH.

    .venv/bin/python benchmarks/bench_provision.py [--latency 0.1] [--runs 3] [--market on-demand]

AWS is moto's server on 127.0.0.1, behind the tests' proxy (tests/aws_support.py)
that adds ``--latency`` seconds to every call and logs each call's start and end.
The instance is "booted" by the tests' boot emulator: a real OpenSSH sshd with the
host key the user data injects. Ec2Runner.provision() runs to SSH-ready, then
teardown() removes everything.

Reports, per run and as the median of ``--runs`` (after one unmeasured warm-up run:
moto builds its backends on the first call, which AWS does not do):

- the AWS calls made up to SSH-ready (DryRun calls included), by action;
- the sequential round trips: the longest chain of calls each starting after the
  previous one ended, i.e. the calls that had to wait for one another;
- the wall time from provision() to SSH-ready.

Baseline, same run: the same flow done naively, every call after the previous one,
is as many sequential round trips as there are calls. The ratio is calls / chain.
Goal: <= 8 sequential round trips. Note: moto reports the instance running at the first
DescribeInstances; on AWS a few more polls (seconds apart, while it boots) come on top.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL = 8
RUN_ID = "20250101-000000-be0c"


async def one_run(moto, latency: float, market: str, tmp: Path, index: int) -> dict[str, object]:
    import getpass

    import pytest

    from tests.aws_support import AwsProxy, BootEmulator, aws_env, sequential_round_trips
    from tests.sshd_support import free_port
    from trainboard.backend.config import Ec2RunnerConfig
    from trainboard.backend.runners.ec2 import SSH_ADDRESS_ENV, Ec2Runner

    moto.reset()
    proxy = AwsProxy(moto.url, latency=latency)
    port = free_port()
    work = tmp / f"run{index}"
    boot = BootEmulator(moto.url, port, work / "instances").start()
    with pytest.MonkeyPatch.context() as mp:
        aws_env(mp, proxy.url, work)
        mp.setenv(SSH_ADDRESS_ENV, f"127.0.0.1:{port}")
        config = Ec2RunnerConfig.model_validate({
            "kind": "ec2", "region": "us-east-1", "instance_type": "t3.large", "market": market,
            "user": getpass.getuser(), "ssh_cidr": "203.0.113.7/32", "remote_dir": str(work / "remote"),
        })
        runner = Ec2Runner(config, work / "run", RUN_ID)
        try:
            started = time.monotonic()
            await runner.provision()
            ready = time.monotonic()
            calls = list(proxy.calls)
            await runner.teardown()
            done = time.monotonic()
            teardown_calls = proxy.calls[len(calls):]
        finally:
            with_error = None
            try:
                await runner.teardown()
            except Exception as exc:  # report, do not hide the first error
                with_error = exc
            boot.stop()
            proxy.close()
            if with_error is not None:
                print(f"teardown problem: {with_error}", file=sys.stderr)
    return {
        "calls": calls,
        "chain": sequential_round_trips(calls),
        "wall": ready - started,
        "aws_span": (max(c.end for c in calls) - min(c.start for c in calls)) if calls else 0.0,
        "teardown_calls": len(teardown_calls),
        "teardown_chain": sequential_round_trips(teardown_calls),
        "teardown_wall": done - ready,
    }


async def bench(latency: float, runs: int, market: str) -> list[dict[str, object]]:
    from tests.aws_support import MotoServer

    moto = MotoServer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
            await one_run(moto, 0.0, market, Path(tmp), 0)  # warm-up: moto's backends, imports
            return [await one_run(moto, latency, market, Path(tmp), i + 1) for i in range(runs)]
    finally:
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every AWS call (default 0.1)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--market", choices=("on-demand", "spot"), default="on-demand")
    args = parser.parse_args()
    os.environ.pop("AWS_PROFILE", None)
    results = asyncio.run(bench(args.latency, args.runs, args.market))

    ms = args.latency * 1000
    for i, r in enumerate(results, 1):
        print(f"run {i}: {len(r['calls'])} AWS calls, {r['chain']} sequential round trips, "
              f"SSH-ready after {r['wall']:.2f} s (AWS calls span {r['aws_span']:.2f} s); "
              f"teardown {r['teardown_calls']} calls, {r['teardown_chain']} sequential, {r['teardown_wall']:.2f} s")
    last = results[-1]
    by_action = collections.Counter(
        f"{c.action}{' (DryRun)' if c.dry_run else ''}" for c in last["calls"])  # type: ignore[attr-defined]
    print("calls up to SSH-ready: " + ", ".join(f"{name} x{n}" if n > 1 else name for name, n in by_action.items()))
    calls = statistics.median(len(r["calls"]) for r in results)  # type: ignore[arg-type]
    chain = statistics.median(r["chain"] for r in results)  # type: ignore[misc]
    wall = statistics.median(r["wall"] for r in results)  # type: ignore[misc]
    print(f"median of {len(results)} runs, {ms:.0f} ms added per AWS call, market {args.market}:")
    print(f"  trainboard: {chain:g} sequential round trips ({chain * ms / 1000:.1f} s of latency), "
          f"SSH-ready in {wall:.2f} s")
    print(f"  baseline, every call after the previous one: {calls:g} sequential round trips "
          f"({calls * ms / 1000:.1f} s of latency)")
    print(f"  ratio baseline / trainboard = {calls / chain:.2f}")
    print(f"goal <= {GOAL} sequential round trips: {'met' if chain <= GOAL else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Blackhole detection and recovery: how long a silent connection goes unnoticed, and how
soon the log resumes once the network heals.

    .venv/bin/python benchmarks/bench_blackhole.py [--runs 3] [--stall 10] [--keepalive 15]

Starts a real OpenSSH sshd on 127.0.0.1 (tests/sshd_support.py) behind a TCP proxy. A
real detached job, started by SshRunner.start, prints a line every 10 ms; the session's
own follow loop, Session._follow, streams it through SshRunner.tail into LogLines.

Each run blackholes the proxy (no byte passes, on the connection in use or on new ones,
and nothing is closed), and times:

* detection: from the blackhole to the runner's RunnerChanged("reconnecting") event,
  which the views show (with a notice giving the reason);
* resume: the blackhole is kept 1 s (+ up to --jitter) after the detection, so that
  reconnect attempts are under way in it; then the network heals, and this is the time
  from the healing to the first LogLines event.

Baseline, in the same run: the same, once, with keepalives alone (the health check off:
stall_timeout of a day), the runner's keepalive at --keepalive s (production default 15 s,
3 unanswered count as lost). Goals: detection <= 15 s and resume <= 2 s with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DETECT_GOAL = 15.0
RESUME_GOAL = 2.0
JOB = "import itertools, time\nfor i in itertools.count():\n    print('line', i, flush=True)\n    time.sleep(0.01)\n"


async def measure(tmp: Path, runs: int, stall: float, keepalive: float, jitter: float,
                  max_wait: float) -> list[tuple[float, float]]:
    """(detection, resume) in seconds, for each of ``runs`` blackholes."""
    from tests.sshd_support import TcpProxy, proxy_known_hosts, start_sshd
    from trainboard.backend import events as ev
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.runners import JobSpec
    from trainboard.backend.runners.ssh import SshRunner, SshTarget
    from trainboard.backend.session import Session

    sshd = start_sshd(tmp / "sshd")
    proxy = TcpProxy(sshd.port)
    known = proxy_known_hosts(sshd, proxy.port, tmp / "known_hosts")
    (tmp / "ssh_config").touch()
    try:
        target = SshTarget(host="127.0.0.1", port=proxy.port, user=sshd.user, client_keys=[str(sshd.client_key)],
                           known_hosts=str(known), config_path=str(tmp / "ssh_config"), keepalive=keepalive,
                           stall_timeout=stall)
        runner = SshRunner(target, tmp / "run", "bench", remote_dir=str(tmp / "remote"), reconnect_timeout=600)
        config = RunConfig.model_validate({"job": {"command": "bench"}, "metrics": {"lines": {}}})
        session = Session(LoadedConfig(config, tmp / "bench.yaml", (), {}), root=tmp)
        session.runner = runner  # type: ignore[assignment]
        runner.notify = session._emit
        lines_at: list[float] = []
        reconnecting: list[float] = []

        def on_event(event: object) -> None:
            if isinstance(event, ev.LogLines) and event.lines:
                lines_at.append(time.monotonic())
            elif isinstance(event, ev.RunnerChanged) and event.state == "reconnecting":
                reconnecting.append(time.monotonic())

        session.subscribe(on_event)
        await runner.provision()
        await runner.sync(tmp, [], {"job.py": JOB.encode()})
        handle = await runner.start(JobSpec(name="job", commands=(f"{sys.executable} job.py",), workdir="."))
        follow = asyncio.create_task(session._follow(handle, "job"))
        results: list[tuple[float, float]] = []
        try:
            for _ in range(runs):
                while len(lines_at) < 20:
                    await asyncio.sleep(0.01)
                reconnecting.clear()
                proxy.blackhole()
                began = time.monotonic()
                while not reconnecting:
                    if time.monotonic() - began > max_wait:
                        raise SystemExit(f"no reconnect within {max_wait:g} s of the blackhole")
                    await asyncio.sleep(0.01)
                detected = reconnecting[0] - began
                await asyncio.sleep(1.0 + random.uniform(0, jitter))
                lines_at.clear()
                healed = time.monotonic()
                proxy.resume()
                while not lines_at:
                    if time.monotonic() - healed > 60:
                        raise SystemExit("no line arrived 60 s after the network healed")
                    await asyncio.sleep(0.005)
                results.append((detected, lines_at[0] - healed))
                lines_at.clear()
        finally:
            await runner.stop(handle, grace=1)
            await asyncio.wait_for(follow, 60)
            await runner.teardown()
    finally:
        proxy.close()
        sshd.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="blackholes with the health check")
    parser.add_argument("--stall", type=float, default=10.0, help="runner.stall_timeout (default: the default)")
    parser.add_argument("--keepalive", type=float, default=15.0, help="runner.keepalive_seconds")
    parser.add_argument("--jitter", type=float, default=0.5, help="up to this many seconds more of blackhole")
    parser.add_argument("--no-baseline", action="store_true", help="skip the keepalives-alone run (about 60 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-blackhole-") as tmp:
        checked = asyncio.run(measure(Path(tmp) / "a", args.runs, args.stall, args.keepalive, args.jitter,
                                      max_wait=args.stall * 3 + 30))
        baseline = [] if args.no_baseline else asyncio.run(
            measure(Path(tmp) / "b", 1, 86400.0, args.keepalive, args.jitter, max_wait=args.keepalive * 6 + 30))
    detect = [d for d, _ in checked]
    resume = [r for _, r in checked]
    print(f"{args.runs} blackholes (no byte passes; nothing closed), a job printing a line every 10 ms, "
          f"followed by Session._follow; keepalive {args.keepalive:g} s x 3, stall_timeout {args.stall:g} s")
    print(f"detection (blackhole -> 'reconnecting' shown): {', '.join(f'{d:.2f}' for d in detect)} s; "
          f"median {statistics.median(detect):.2f} s, max {max(detect):.2f} s")
    print(f"resume (network heals -> first log line): {', '.join(f'{r:.2f}' for r in resume)} s; "
          f"median {statistics.median(resume):.2f} s, max {max(resume):.2f} s")
    if baseline:
        (b_detect, b_resume), = baseline
        print(f"baseline, keepalives alone (health check off): detection {b_detect:.2f} s, resume {b_resume:.2f} s")
        print(f"ratio detection with the health check / keepalives alone = {statistics.median(detect) / b_detect:.2f}")
    met = max(detect) <= DETECT_GOAL and max(resume) <= RESUME_GOAL
    print(f"goals detection <= {DETECT_GOAL:g} s, resume <= {RESUME_GOAL:g} s: {'met' if met else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

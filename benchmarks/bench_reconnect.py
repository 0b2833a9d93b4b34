"""Reconnect latency: from the host coming back to the first resumed log line.

    .venv/bin/python benchmarks/bench_reconnect.py [--runs 5] [--outage 3]

Starts a real OpenSSH sshd on 127.0.0.1 (tests/sshd_support.py) behind a TCP
proxy that can drop its connections. A real detached job, started by
SshRunner.start, prints a line every 10 ms; the session's own follow loop,
Session._follow, streams it through SshRunner.tail into LogLines events.

Each run takes the proxy down (every connection cut, new ones refused) for
--outage seconds (plus up to --jitter at random), then brings it up, and times from ``up()`` to the first
LogLines event with a line written after the cut. In between, SshRunner
retries with exponential backoff (capped at 0.5 s). Prints each run, the
median and the max, and the baseline measured in the same run: a fresh
``asyncssh.connect`` to the same sshd through the same proxy, median of --runs. Goal: median and max <= 2 s.
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

GOAL_SECONDS = 2.0
JOB = "import itertools, time\nfor i in itertools.count():\n    print('line', i, flush=True)\n    time.sleep(0.01)\n"


async def measure(runs: int, outage: float, jitter: float, tmp: Path) -> tuple[list[float], list[float], int]:
    import asyncssh

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
        connects: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            conn = await asyncssh.connect("127.0.0.1", proxy.port, username=sshd.user,
                                          client_keys=[str(sshd.client_key)], known_hosts=str(known),
                                          config=[str(tmp / "ssh_config")])
            connects.append(time.perf_counter() - started)
            conn.close()
            await conn.wait_closed()

        target = SshTarget(host="127.0.0.1", port=proxy.port, user=sshd.user, client_keys=[str(sshd.client_key)],
                           known_hosts=str(known), config_path=str(tmp / "ssh_config"))
        runner = SshRunner(target, tmp / "run", "bench", remote_dir=str(tmp / "remote"), reconnect_timeout=60)
        config = RunConfig.model_validate({"job": {"command": "bench"}, "metrics": {"lines": {}}})
        session = Session(LoadedConfig(config, tmp / "bench.yaml", (), {}), root=tmp)
        session.runner = runner  # type: ignore[assignment]
        runner.notify = session._emit
        arrivals: list[tuple[float, int]] = []  # (time, number of the batch's last line)
        reconnects = 0

        def on_event(event: object) -> None:
            nonlocal reconnects
            if isinstance(event, ev.LogLines) and event.lines and event.lines[-1].startswith("line "):
                arrivals.append((time.perf_counter(), int(event.lines[-1].split()[1])))
            elif isinstance(event, ev.RunnerChanged) and event.state == "ready":
                reconnects += 1

        session.subscribe(on_event)
        await runner.provision()
        await runner.sync(tmp, [], {"job.py": JOB.encode()})
        handle = await runner.start(JobSpec(name="job", commands=(f"{sys.executable} job.py",), workdir="."))
        follow = asyncio.create_task(session._follow(handle, "job"))
        resumed: list[float] = []
        try:
            for _ in range(runs):
                while len(arrivals) < 5:
                    await asyncio.sleep(0.01)
                proxy.down()
                await asyncio.sleep(0.05)  # anything read before the cut has arrived by now
                last_before = arrivals[-1][1]
                await asyncio.sleep(outage + random.uniform(0, jitter))
                up = time.perf_counter()
                proxy.up()
                while not arrivals or arrivals[-1][1] <= last_before + 5:  # written after the cut
                    if time.perf_counter() - up > 30:
                        raise SystemExit("no line arrived 30 s after the host came back")
                    await asyncio.sleep(0.005)
                first_after = next(t for t, n in arrivals if n > last_before + 5)
                resumed.append(first_after - up)
                arrivals.clear()
        finally:
            await runner.stop(handle, grace=1)
            await asyncio.wait_for(follow, 30)
            await runner.teardown()
    finally:
        proxy.close()
        sshd.stop()
    return resumed, connects, reconnects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the host stays away each run")
    parser.add_argument("--jitter", type=float, default=0.5,
                        help="up to this many seconds more, at random, so that the host comes back at any point "
                             "of the reconnect backoff")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reconnect-") as tmp:
        resumed, connects, reconnects = asyncio.run(measure(args.runs, args.outage, args.jitter, Path(tmp)))
    p50, worst = statistics.median(resumed), max(resumed)
    base = statistics.median(connects)
    print(f"{args.runs} outages of {args.outage:g} s + up to {args.jitter:g} s (proxy down: connections cut and "
          f"refused), {reconnects} reconnects; a job printing a line every 10 ms, followed by Session._follow")
    print(f"host back -> first resumed line: {', '.join(f'{s:.2f}' for s in resumed)} s; "
          f"median {p50:.2f} s, max {worst:.2f} s")
    print(f"baseline, a fresh asyncssh.connect through the same proxy: median {base:.3f} s "
          f"(runs: {', '.join(f'{s:.3f}' for s in connects)})")
    print(f"ratio resumed / fresh connect = {p50 / base:.1f}")
    print(f"goal <= {GOAL_SECONDS:g} s: {'met' if worst <= GOAL_SECONDS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

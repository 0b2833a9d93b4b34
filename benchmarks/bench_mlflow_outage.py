"""How long one metric poll takes to fail when the MLflow server goes away.

    .venv/bin/python benchmarks/bench_mlflow_outage.py [--cap 30]

Starts MLflow's tracking server (``trainboard.backend.mlflow_server``, in a process of its
own, as tests/test_tracking_faults.py does) on a SQLite store, creates a run and
logs a point, then times one ``Tracking.latest`` call (the session's poll) in two
faults: the server frozen (SIGSTOP: connections are accepted, nothing answers)
and the server killed (connections refused). trainboard's bounded client
(``limit_http_client``: one try of ``REQUEST_TIMEOUT`` s) against the baseline
measured in the same run: MLflow's default client (7 retries, backoff factor 2,
120 s a request), given up on after --cap seconds. Goal: <= REQUEST_TIMEOUT + 0.5 s
in both faults, the time within which a dashboard says the metrics are stale
(plus at most one poll interval).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def time_poll(tracking: object, run_id: str, cap: float) -> tuple[float, str]:
    """Seconds until one poll fails (or ``cap``), and how it ended."""
    from trainboard.backend.tracking import Tracking, TrackingError, in_thread, why_unreachable

    assert isinstance(tracking, Tracking)
    began = time.perf_counter()
    try:
        await in_thread(tracking.latest, run_id, timeout=cap)
    except TimeoutError:
        return time.perf_counter() - began, f"still waiting after {cap:g} s (given up on)"
    except TrackingError as exc:
        return time.perf_counter() - began, why_unreachable(exc)
    return time.perf_counter() - began, "answered"


async def measure(cap: float, tmp: Path) -> dict[str, dict[str, tuple[float, str]]]:
    from tests.test_tracking_faults import TrackingServer
    from trainboard.backend.tracking import Tracking, limit_http_client

    server = TrackingServer(tmp / "mlflow.db", tmp / "artifacts", tmp / "server.log")
    server.start()
    results: dict[str, dict[str, tuple[float, str]]] = {"frozen": {}, "killed": {}}
    try:
        setup = Tracking(server.url, "outage", tmp / "artifacts")
        run_id = setup.create_run("outage", {}, {})
        setup.client.log_metric(run_id, "f1", 0.5, step=1)
        for fault in ("frozen", "killed"):
            if fault == "frozen":
                server.freeze()
            else:
                server.kill()
            # A fresh client each time: no connection kept from an earlier call.
            release = limit_http_client()
            try:
                results[fault]["bounded"] = await time_poll(Tracking(server.url, "outage"), run_id, cap)
            finally:
                release()
            results[fault]["mlflow default"] = await time_poll(Tracking(server.url, "outage"), run_id, cap)
    finally:
        server.kill()
    return results


def main() -> None:
    from trainboard.backend.tracking import REQUEST_TIMEOUT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=30.0, help="give the baseline up after this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(args.cap, Path(tmp)))
    goal = REQUEST_TIMEOUT + 0.5
    for fault, rows in results.items():
        bounded, how = rows["bounded"]
        base, base_how = rows["mlflow default"]
        more = ">" if base_how.startswith("still waiting") else ""
        print(f"server {fault}: trainboard's poll fails in {bounded:.2f} s ({how}); "
              f"MLflow's default client: {more}{base:.2f} s ({base_how}); "
              f"ratio {more}{base / bounded:.1f}x; goal <= {goal:g} s: {'met' if bounded <= goal else 'MISSED'}")


if __name__ == "__main__":
    main()

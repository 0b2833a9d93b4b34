"""Orchestration overhead of the ray runner: the example on a warm Ray head against the local runner.

    .venv/bin/python benchmarks/bench_ray_overhead.py [--runs 3] [--set KEY=VALUE ...]

Starts a Ray head on 127.0.0.1 (trainboard's LocalHead) and keeps it up (warm: a first ray run,
not counted, also warms its workers). Then, in a throwaway git clone of the bundled example,
alternates `trainboard run sample_params.yaml --no-tui` on the local runner and on the ray runner
pointed at that head (runner.address: a cluster, as a team's would be: its job gets the snapshot
uploaded, reaches MLflow through the store trainboard serves, and hands its outputs back as MLflow
artifacts). Prints each run's wall time, the medians, and their difference (goal: <= 3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_overhead import make_project  # noqa: E402

GOAL_SECONDS = 3.0


def one_run(repo: Path, sets: list[str], label: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trainboard.tui.cli", "run", "sample_params.yaml", "--no-tui", *sets],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-2000:])
        raise SystemExit(f"{label}: trainboard exited {proc.returncode}")
    print(f"{label:<28} total {total:6.2f} s")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append",
                        default=["params.max_train_samples=160", "params.max_eval_samples=64"],
                        help="extra --set overrides (default: a short training slice)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the head (finally) on a kill too
    from trainboard.backend.runners.ray.head import LocalHead

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_project(Path(tmp))
        sets = [a for o in args.overrides for a in ("--set", o)]
        head = asyncio.run(LocalHead.start(cpus=2))
        try:
            # num_cpus 2: the job's share of the head (Ray sets its OMP_NUM_THREADS to it), as the
            # local runner's job has both cores.
            ray_sets = [*sets, "--set", "runner.kind=ray", "--set", f"runner.address={head.address}",
                        "--set", "runner.num_cpus=2"]
            one_run(repo, sets, "local, first (MLflow store)")
            one_run(repo, ray_sets, "ray, first (warms the head)")
            local, ray = [], []
            for i in range(args.runs):
                local.append(one_run(repo, sets, f"local {i + 1}"))
                ray.append(one_run(repo, ray_sets, f"ray {i + 1}"))
        finally:
            asyncio.run(head.stop())
    med_local, med_ray = statistics.median(local), statistics.median(ray)
    diff = med_ray - med_local
    print(f"\nmedian: local runner {med_local:.2f} s, ray runner on a warm head {med_ray:.2f} s")
    print(f"ray orchestration overhead over local: {diff:+.2f} s (goal <= {GOAL_SECONDS:g} s: "
          f"{'met' if diff <= GOAL_SECONDS else 'MISSED'}); ratio ray / local = {med_ray / med_local:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

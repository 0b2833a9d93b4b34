"""Orchestration overhead of the ray runner: the example on a warm Ray head against the local runner.

    .venv/bin/python benchmarks/bench_ray_overhead.py [--runs 3] [--set KEY=VALUE ...]

Starts a Ray head on 127.0.0.1 (trainboard's LocalHead) and keeps it up (warm: a first run of
each kind, not counted, also warms its workers). Then, in a throwaway git clone of the bundled
example, alternates `trainboard run sample_params.yaml --no-tui` on

  local     the local runner (the baseline);
  ray       the ray runner pointed at that head (runner.address) with
            runner.shared_filesystem: true, as a head on this machine is: the job opens the
            SQLite MLflow store and leaves its outputs here directly;
  cluster   the same head treated as a remote cluster (shared_filesystem false): the store is
            served to the job over HTTP and its outputs come back as MLflow artifacts (the
            job's upload imports mlflow: seconds).

Both ray kinds give the job num_cpus 2 (Ray sets its OMP_NUM_THREADS to it), as the local runner's
job has both cores. Prints each run's wall time, the medians, and each ray kind's difference from
local (goal for `ray`, the warm local head: <= 3 s).
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
            ray = [*sets, "--set", "runner.kind=ray", "--set", f"runner.address={head.address}",
                   "--set", "runner.num_cpus=2"]
            kinds = {"local": sets, "ray": [*ray, "--set", "runner.shared_filesystem=true"], "cluster": ray}
            for name, kind_sets in kinds.items():
                one_run(repo, kind_sets, f"{name}, first (warms up)")
            times: dict[str, list[float]] = {name: [] for name in kinds}
            for i in range(args.runs):
                for name, kind_sets in kinds.items():
                    times[name].append(one_run(repo, kind_sets, f"{name} {i + 1}"))
        finally:
            asyncio.run(head.stop())
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian: local runner {med['local']:.2f} s, ray on a warm local head {med['ray']:.2f} s, "
          f"the same head as a remote cluster {med['cluster']:.2f} s")
    diff = med["ray"] - med["local"]
    print(f"ray orchestration overhead over local: {diff:+.2f} s (goal <= {GOAL_SECONDS:g} s: "
          f"{'met' if diff <= GOAL_SECONDS else 'MISSED'}); ratio ray / local = {med['ray'] / med['local']:.2f}")
    print(f"as a remote cluster: {med['cluster'] - med['local']:+.2f} s over local")
    return 0


if __name__ == "__main__":
    sys.exit(main())

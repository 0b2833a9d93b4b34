"""Start-up cost: wall time of `trainboard --help` against a bare interpreter.

    .venv/bin/python benchmarks/bench_help.py [--runs 10]

Measures `python -m trainboard.tui.cli --help` (what the `trainboard` console script runs),
median of N runs, and the baseline in the same run: `python -c pass`, the
interpreter's own start-up, median of N runs. Prints both, their difference
(what trainboard's imports cost) and their ratio. Goal: help <= 0.3 s wall.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.3


def wall(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)  # warm-up: caches, .pyc
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    baseline = wall([sys.executable, "-c", "pass"], args.runs, env)
    help_ = wall([sys.executable, "-m", "trainboard.tui.cli", "--help"], args.runs, env)
    print(f"python -c pass (baseline):   {baseline * 1000:7.1f} ms  (median of {args.runs})")
    print(f"trainboard --help:           {help_ * 1000:7.1f} ms  (median of {args.runs})")
    print(f"difference: {(help_ - baseline) * 1000:.1f} ms; ratio help / baseline = {help_ / baseline:.2f}")
    verdict = "met" if help_ <= GOAL else "MISSED"
    print(f"goal: help <= {GOAL:.1f} s wall: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

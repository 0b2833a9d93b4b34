"""Orchestration overhead: `trainboard run --no-tui` wall time minus the job's own.

    .venv/bin/python benchmarks/bench_overhead.py [--runs 3] [--set KEY=VALUE ...]

Runs the bundled example (sample_params.yaml) in a throwaway git clone of this
project's example, several times, and for each run prints the wall time of the
whole `trainboard run`, the job's own wall time (setup commands plus the
training command, as the runner measured them from its log files' lifetimes),
and their difference: what trainboard itself costs. Goal: <= 3 s.

The baseline in the same run is the job alone: the same setup and command run
by bash directly in the same workspace, without trainboard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_project(where: Path) -> Path:
    repo = where / "project"
    repo.mkdir()
    shutil.copytree(ROOT / "examples", repo / "examples")
    shutil.copy2(ROOT / "sample_params.yaml", repo)
    (repo / ".gitignore").write_text(".trainboard/\ndata/\nmodel/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@e.nch", "-c", "user.name=bench", "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append",
                        default=["params.max_train_samples=160", "params.max_eval_samples=64"],
                        help="extra --set overrides (default: a short training slice)")
    args = parser.parse_args()
    trainboard = [sys.executable, "-m", "trainboard.tui.cli"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_project(Path(tmp))
        sets = [a for o in args.overrides for a in ("--set", o)]
        # The first run in a new repository also creates MLflow's SQLite store: reported apart.
        first = one_run(trainboard, repo, env, sets, "first run in a new repository")
        if first is None:
            return 1
        overheads, totals, jobs = [], [], []
        for _ in range(args.runs):
            measured = one_run(trainboard, repo, env, sets, "run")
            if measured is None:
                return 1
            for values, value in zip((totals, jobs, overheads), measured, strict=True):
                values.append(value)
        runs = sorted((repo / ".trainboard" / "runs").iterdir())
        # Baseline: the job alone, run by bash in the last workspace.
        workspace = runs[-1] / "workspace"
        start = time.perf_counter()
        subprocess.run(["bash", "-c", "python examples/intents/make_data.py --out data/intents.csv && "
                        "python examples/intents/train.py"], cwd=workspace, capture_output=True, check=True,
                       env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                                HF_HUB_OFFLINE="1"))
        alone = time.perf_counter() - start
    med_total, med_job, med_over = (statistics.median(x) for x in (totals, jobs, overheads))
    print(f"\nmedian total {med_total:.2f} s, job {med_job:.2f} s (job alone, without MLflow: {alone:.2f} s)")
    print(f"orchestration overhead: {med_over:.2f} s (goal <= 3 s); "
          f"ratio trainboard run / job alone = {med_total / alone:.2f}")
    return 0


def one_run(trainboard: list[str], repo: Path, env: dict[str, str], sets: list[str],
            label: str) -> tuple[float, float, float] | None:
    """(total, job, overhead) seconds of one `trainboard run --no-tui`; None when it broke."""
    start = time.perf_counter()
    proc = subprocess.run([*trainboard, "run", "sample_params.yaml", "--no-tui", *sets],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)
    total = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        print(proc.stdout[-2000:], proc.stderr[-2000:])
        return None
    run_dir = sorted((repo / ".trainboard" / "runs").iterdir())[-1]
    record = json.loads((run_dir / "record.json").read_text())
    job = record["stages"]["train"]["elapsed"] + _setup_seconds(run_dir)
    print(f"{label} {record['run_id']}: total {total:6.2f} s  job {job:6.2f} s  overhead {total - job:5.2f} s")
    return total, job, total - job


def _setup_seconds(run_dir: Path) -> float:
    """The setup job's wall time: from its script's creation to its exit file."""
    script, done = run_dir / "setup.sh", run_dir / "setup.exit"
    if not (script.exists() and done.exists()):
        return 0.0
    return done.stat().st_mtime - script.stat().st_mtime


if __name__ == "__main__":
    sys.exit(main())

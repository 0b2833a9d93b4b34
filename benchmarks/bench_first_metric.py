"""Time to the first metric: how soon the Quick start shows something moving.

    .venv/bin/python benchmarks/bench_first_metric.py [--set KEY=VALUE ...] [--no-baseline]

Runs `trainboard run sample_params.yaml --no-tui` (the Quick start, 1 epoch) in a
throwaway git repository holding this checkout's examples/ and sample_params.yaml,
reads its output as it comes, and prints the seconds from the start to:

- the first progress line trainboard prints (``progress: 5/128 steps ...``),
- the first followed-metric value it prints (``metrics @ step N: ...``),
- the end of the run;

and the ratio first metric / whole run (1.0: metrics only at the end).

The baseline, in the same run: the same, with the example job as it was before it
reported progress and evaluated during the epoch (examples/ and sample_params.yaml
from the parent of the commit that added examples/intents/progress.py; ``--baseline-rev``
names another), run by this same trainboard. Its followed metrics (F1, precision,
recall, loss) came only at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_project(where: Path, rev: str | None) -> Path:
    """A git repository holding examples/ and sample_params.yaml: this checkout's, or ``rev``'s."""
    repo = where / "project"
    repo.mkdir(parents=True)
    if rev is None:
        shutil.copytree(ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "sample_params.yaml", repo)
    else:
        archive = subprocess.run(["git", "archive", rev, "examples", "sample_params.yaml"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x"], input=archive, cwd=repo, check=True)
    (repo / ".gitignore").write_text(".trainboard/\ndata/\nmodel/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@e.nch", "-c", "user.name=bench", "commit", "-q", "-m", "bench"]):
        git(*args, cwd=repo)
    return repo


@dataclass
class Timing:
    first_progress: float | None = None
    first_metric: float | None = None
    first_metric_line: str = ""
    total: float = 0.0
    exit_code: int = 0
    metric_lines: int = 0
    progress_lines: int = 0


def one_run(repo: Path, sets: list[str]) -> Timing:
    """`trainboard run sample_params.yaml --no-tui` in ``repo``, its output timed line by line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("GITHUB_ACTIONS", None)
    cmd = [sys.executable, "-m", "trainboard.tui.cli", "run", "sample_params.yaml", "--no-tui", *sets]
    timing = Timing()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - start
        text = line.strip()
        if text.startswith("progress: "):
            timing.progress_lines += 1
            if timing.first_progress is None:
                timing.first_progress = now
        elif text.startswith("metrics @ step"):
            timing.metric_lines += 1
            if timing.first_metric is None:
                timing.first_metric, timing.first_metric_line = now, text
    timing.exit_code = proc.wait()
    timing.total = time.perf_counter() - start
    return timing


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:6.1f} s"


def report(name: str, timing: Timing) -> None:
    ratio = (timing.first_metric / timing.total) if timing.first_metric is not None else None
    print(f"{name}: exit {timing.exit_code}, whole run {timing.total:.1f} s")
    print(f"  first progress line  {seconds(timing.first_progress)}  ({timing.progress_lines} progress lines)")
    print(f"  first metric value   {seconds(timing.first_metric)}  ({timing.metric_lines} metric lines)"
          + (f"  {timing.first_metric_line!r}" if timing.first_metric_line else ""))
    print(f"  first metric / whole run = {'—' if ratio is None else f'{ratio:.2f}'}")


def baseline_rev() -> str | None:
    """The parent of the commit that added examples/intents/progress.py (the job before progress)."""
    added = git("log", "--format=%H", "--diff-filter=A", "-1", "--", "examples/intents/progress.py")
    return f"{added}^" if added else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="--set overrides for both runs (default: none, the Quick start as it is)")
    parser.add_argument("--baseline-rev", default=None, help="the revision whose example job is the baseline")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]  # each figure as it comes
    sets = [a for o in args.overrides for a in ("--set", o)]
    rev = None if args.no_baseline else (args.baseline_rev or baseline_rev())
    with tempfile.TemporaryDirectory() as tmp:
        now = one_run(make_project(Path(tmp) / "now", None), sets)
        report("example job of this checkout", now)
        if rev is None:
            if not args.no_baseline:
                print("baseline: no commit added examples/intents/progress.py: nothing to compare with")
            return 0
        before = one_run(make_project(Path(tmp) / "before", rev), sets)
        report(f"baseline: the example job at {git('rev-parse', '--short', rev)}", before)
    if now.first_metric is not None and before.first_metric is not None:
        print(f"\nfirst metric after {now.first_metric:.1f} s (was {before.first_metric:.1f} s; goal <= 30 s); "
              f"ratio now / before = {now.first_metric / before.first_metric:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

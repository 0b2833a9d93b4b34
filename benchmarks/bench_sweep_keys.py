"""The sweep dashboard under load, on a real terminal (tmux), as a person sees it.

    .venv/bin/python benchmarks/bench_sweep_keys.py [--rate 10000] [--members 100] [--parallel 8] [--presses 30]

`trainboard run tb.yaml --sweep params.seed=range(0,N)` in a tmux pane of 120x40: a real
sweep of --members members (--parallel at a time, the rest queued) of a job that
writes --rate lines/s of log each and a progress line every 50 ms, in the sweep
dashboard. Once every running member shows progress, the key presses are timed
from ``tmux send-keys`` until the screen shows the change (``tmux capture-pane``),
as bench_dashboard.py does for a run:

* ``o`` cycles the table's sort (index, objective, status): the table is rebuilt;
* ``c`` opens the cancel question over the whole screen, ``n`` closes it;
* enter opens member 0's run dashboard (its log streaming), escape comes back; the
  first open composes the dashboard, the next ones show the one kept.

Baseline: the same presses with the same sweep writing no log (--rate 0), measured
in the same run; --rounds N alternates quiet and flood N times and pools each
(a machine whose load drifts then weighs on both alike). Prints p50/p95 of each
and the ratio of the p95s. Goal: p95 <= 100 ms under the flood. Needs tmux; the
timings include tmux's own capture (a few ms a poll).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dashboard import pct, tmux, wait_for  # noqa: E402  (the same tmux method)

FLOOD_JOB = textwrap.dedent(
    """
    import sys, time, yaml
    p = yaml.safe_load(open("params.yaml"))
    rate, seconds = int(p["rate"]), float(p["seconds"])
    tick = 0.05
    per_tick = max(1, int(rate * tick))
    out = sys.stdout
    n = step = 0
    end = time.time() + seconds
    while time.time() < end:
        start = time.time()
        step += 1
        text = f"trainboard:progress step={step} total=100000000\\n"
        if rate:
            text += "".join(f"line {n + i} of the flood, some text to make it realistic\\n" for i in range(per_tick))
            n += per_tick
        out.write(text)
        out.flush()
        time.sleep(max(0.0, tick - (time.time() - start)))
    """
)

CONFIG = textwrap.dedent(
    """\
    name: bench
    job:
      command: python flood.py
    mlflow:
      experiment: bench
    metrics:
      f1: {display: F1, goal: max}
    params:
      rate: 0
      seconds: 600
      seed: 0
    """
)


def make_repo(where: Path) -> Path:
    repo = where / "repo"
    repo.mkdir()
    (repo / "flood.py").write_text(FLOOD_JOB)
    (repo / "tb.yaml").write_text(CONFIG)
    (repo / ".gitignore").write_text(".trainboard/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@e.nch", "-c", "user.name=bench", "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def presses(name: str, count: int, steps: list[tuple[str, str, bool]]) -> list[list[float]]:
    """``count`` rounds of ``steps``: (key, text, whether it must be on screen after the key);
    the times of each step."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(count):
        for i, (key, text, present) in enumerate(steps):
            start = time.perf_counter()
            tmux("send-keys", "-t", name, key)
            wait_for(name, lambda s, t=text, p=present: (t in s) == p, timeout=10)
            times[i].append(time.perf_counter() - start)
        time.sleep(0.05)
    return times


def measure(repo: Path, label: str, rate: int, args: argparse.Namespace) -> dict[str, list[float]]:
    name = f"tbsweep{os.getpid()}{label}"
    cmd = (f"cd {repo} && PYTHONPATH={ROOT} exec {sys.executable} -m trainboard.tui.cli run tb.yaml "
           f"--sweep 'params.seed=range(0,{args.members})' --set params.rate={rate} "
           f"--set sweep.max_parallel={args.parallel}")
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd)
    pid = int(tmux("display-message", "-p", "-t", name, "#{pane_pid}").strip())
    try:
        wait_for(name, lambda s: "sorted by index" in s, timeout=60)
        # Every running member shows its progress (their logs stream), then a second more.
        wait_for(name, lambda s: s.count("/100000000") >= args.parallel, timeout=120)
        time.sleep(1.0)
        rounds = max(5, args.presses // 3)
        sort = presses(name, rounds, [("o", "sorted by objective", True), ("o", "sorted by status", True),
                                      ("o", "sorted by index", True)])
        modal = presses(name, rounds, [("c", "Cancel the sweep?", True), ("n", "Cancel the sweep?", False)])
        member = presses(name, rounds, [("Enter", "Back to sweep", True), ("Escape", "sorted by index", True)])
        # Escape is read after Textual's wait for an escape sequence: timed apart, out of the goal.
        return {"o (sort)": sum(sort, []), "c / n (modal)": sum(modal, []),
                "enter, first open": member[0][:1], "enter again (kept)": member[0][1:], "escape (back)": member[1]}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        deadline = time.monotonic() + 120  # the hang-up stops every member: wait for their teardown
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=10_000, help="log lines/s per running member")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1, help="quiet, flood, quiet, flood ... N times each")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"quiet": {}, "flood": {}}
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        subprocess.run([sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui",
                        "--set", "params.seconds=0"],  # warm-up: MLflow creates its SQLite tables once
                       cwd=repo, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, check=False)
        for _ in range(args.rounds):
            for label, rate in (("quiet", 0), ("flood", args.rate)):
                for what, times in measure(repo, label, rate, args).items():
                    results[label].setdefault(what, []).extend(times)
    print(f"sweep of {args.members} members, {args.parallel} running, each writing {args.rate:,} lines/s "
          f"({args.rate * args.parallel:,} lines/s in all); 120x40 tmux pane")
    for what in results["quiet"]:
        quiet, flood = results["quiet"][what], results["flood"][what]
        print(f"  {what:24} quiet p50 {pct(quiet, 0.5) * 1000:5.1f} p95 {pct(quiet, 0.95) * 1000:5.1f} ms | "
              f"flood p50 {pct(flood, 0.5) * 1000:5.1f} p95 {pct(flood, 0.95) * 1000:5.1f} ms | "
              f"ratio p95 {pct(flood, 0.95) / pct(quiet, 0.95):.2f} ({len(flood)} presses)")
    from textual.constants import ESCAPE_DELAY

    print(f"  (escape includes Textual's wait for the rest of an escape sequence: {ESCAPE_DELAY * 1000:.0f} ms)")
    every = [t for what, times in results["flood"].items() if what not in ("escape (back)", "enter, first open")
             for t in times]
    print(f"every key press but escape and the first open under the flood: p95 {pct(every, 0.95) * 1000:.1f} ms; "
          f"goal p95 <= 100 ms: {'met' if pct(every, 0.95) <= 0.1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

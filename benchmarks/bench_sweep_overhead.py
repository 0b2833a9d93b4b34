"""Sweep controller overhead: a grid of N tiny members on the local runner, M at a time.

    .venv/bin/python benchmarks/bench_sweep_overhead.py [--members 100] [--parallel 8]
        [--job line|mlflow] [--seconds 1.0] [--profile FILE] [--code DIR]

In a throwaway git repository (local SQLite MLflow store, no DVC), runs
`trainboard run tb.yaml --no-tui --sweep params.i=range(0,N)` with
`sweep.max_parallel=M`, where each member's job sleeps ``--seconds`` and reports
one metric: ``--job line`` (default) prints a `trainboard:metric f1=... step=1`
line (trainboard logs it to MLflow); ``--job mlflow`` imports MLflow and logs it
itself (what a job had to do before the metric lines, ~2 CPU-s a member).

The interpreter keeps its bytecode caches, as a user's does (a warm-up import writes
them first). Prints the sweep's wall time; the ideal, N x the job's own time / M (the job
alone, median of 3, measured in the same run); their ratio (goal <= 1.3); the
same N jobs run M at a time by a bare process pool (the machine's own floor,
also measured in the same run); and trainboard's own CPU seconds and peak RSS
(``getrusage(RUSAGE_SELF)`` of the trainboard process: not its jobs; goal
<= 300 MB). ``--profile FILE`` also writes a cProfile of trainboard's event-loop
thread (read it with ``python -m pstats FILE``). ``--code DIR`` runs another version of
trainboard: DIR holds a ``trainboard`` package, e.g. an earlier commit's
``mkdir -p DIR/trainboard && git archive COMMIT backend tui | tar -x -C DIR/trainboard
&& touch DIR/trainboard/__init__.py`` (before the metric lines, use ``--job mlflow``).
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
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

JOBS = {
    "line": textwrap.dedent("""\
        import re, sys, time
        i = int(re.search(r"^i: (\\d+)", open("params.yaml").read(), re.M)[1])
        print(f"trainboard:metric f1={0.5 + i / 1000:.4f} loss={1 / (i + 1):.4f} step=1", flush=True)
        time.sleep(float(sys.argv[1]))
        """),
    "mlflow": textwrap.dedent("""\
        import os, re, sys, time
        from mlflow.tracking import MlflowClient
        i = int(re.search(r"^i: (\\d+)", open("params.yaml").read(), re.M)[1])
        client, run_id = MlflowClient(), os.environ["MLFLOW_RUN_ID"]
        client.log_metric(run_id, "f1", 0.5 + i / 1000, step=1)
        client.log_metric(run_id, "loss", 1 / (i + 1), step=1)
        time.sleep(float(sys.argv[1]))
        """),
}

CONFIG = textwrap.dedent("""\
    name: cheap
    runner:
      kind: local
    job:
      command: python job.py {seconds}
    mlflow:
      tracking_uri: sqlite:///.trainboard/mlflow.db
      experiment: cheap
    metrics:
      f1: {{display: F1, goal: max}}
      loss: {{display: Loss, goal: min}}
    compare:
      base: main
    params:
      i: 0
    """)

# Runs trainboard's `main` in this process, then writes its own rusage (not its children's).
WRAPPER = textwrap.dedent("""\
    import json, os, resource, sys, time
    out, profile, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    from trainboard.tui.cli import main
    if profile:
        import cProfile
        prof = cProfile.Profile()
        code = prof.runcall(main, argv)
        prof.dump_stats(profile)
    else:
        code = main(argv)
    use = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({"cpu": use.ru_utime + use.ru_stime, "user": use.ru_utime, "sys": use.ru_stime,
               "maxrss_kb": use.ru_maxrss, "code": code}, open(out, "w"))
    sys.stdout.flush()
    os._exit(0)
    """)


def make_repo(where: Path, job: str, seconds: float) -> Path:
    repo = where / "repo"
    repo.mkdir(parents=True)
    (repo / "job.py").write_text(JOBS[job])
    (repo / "tb.yaml").write_text(CONFIG.format(seconds=seconds))
    (repo / ".gitignore").write_text(".trainboard/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.email=b@e.nch", "-c", "user.name=bench", "commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


def job_env() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")
    env.pop("GITHUB_ACTIONS", None)
    # As a user's interpreter does, keep the modules' bytecode (a shell that sets
    # PYTHONDONTWRITEBYTECODE makes every start compile what lacks it from source).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up(code: str) -> None:
    """Import what the sweep imports once, writing the bytecode caches a first run writes."""
    imports = ("import trainboard.tui.cli, trainboard.backend.sweep, trainboard.tui.sweep_headless, "
               "trainboard.backend.stages, mlflow.tracking, mlflow.store.tracking.sqlalchemy_store, "
               "hydra.core.override_parser.overrides_parser")
    subprocess.run([sys.executable, "-c", imports], env=dict(job_env(), PYTHONPATH=code or str(ROOT)), check=True)


def job_alone(repo: Path, seconds: float) -> float:
    """The line job's own wall time, median of 3 (a copy of the workspace with a params.yaml)."""
    work = repo.parent / "alone"
    work.mkdir(exist_ok=True)
    shutil.copy(repo / "job.py", work)
    (work / "params.yaml").write_text("i: 7\n")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(work / "job.py"), str(seconds)], cwd=work, env=job_env(), check=True,
                       capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_pool(repo: Path, members: int, parallel: int, seconds: float) -> float:
    """N copies of the job, M at a time, by a bare thread pool of subprocesses: the floor."""
    work = repo.parent / "alone"

    def one(_: int) -> None:
        subprocess.run([sys.executable, str(work / "job.py"), str(seconds)], cwd=work, env=job_env(), check=True,
                       capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(members)))
    return time.perf_counter() - start


def run_sweep(repo: Path, members: int, parallel: int, profile: str,
              code: str) -> tuple[float, dict, str, float]:
    usage = repo.parent / "usage.json"
    argv = ["run", "tb.yaml", "--no-tui", "--sweep", f"params.i=range(0,{members})",
            "--set", f"sweep.max_parallel={parallel}"]
    env = dict(job_env(), PYTHONPATH=code or str(ROOT))
    start = time.perf_counter()
    began = time.time()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(usage), profile, *argv], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if not usage.exists():
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit("the sweep did not finish")
    return wall, json.loads(usage.read_text()), proc.stdout, began


def check_sweep(repo: Path, members: int, out: str, began: float) -> list[str]:
    """What the sweep record says (members that succeeded, the best's values), and where the
    time went: the sweep's phases from the process's start, a member's stages (median)."""
    found = sorted((repo / ".trainboard" / "sweeps").glob("*/sweep.json"))
    data = json.loads(found[-1].read_text())
    ok = sum(1 for m in data["members"] if m["status"] == "succeeded")
    best = data["members"][data["best"]]["values"] if data.get("best") is not None else None
    if ok != members:
        print(out[-3000:])
    starts = [m["started_at"] for m in data["members"] if m.get("started_at")]
    ends = [m["finished_at"] for m in data["members"] if m.get("finished_at")]
    slots = [m["finished_at"] - m["started_at"] for m in data["members"] if m.get("started_at")]
    stages: dict[str, list[float]] = {}
    for record in (repo / ".trainboard" / "runs").glob("*/record.json"):
        for stage, info in json.loads(record.read_text()).get("stages", {}).items():
            stages.setdefault(stage, []).append(float(info.get("elapsed") or 0.0))
    medians = "  ".join(f"{k} {statistics.median(v):.2f}" for k, v in stages.items())
    return [f"{ok}/{members} members succeeded, best {best}, exit {data['exit_code']}",
            f"  phases (s from start) sweep record {data['created_at'] - began:.2f}, first member "
            f"{min(starts) - began:.2f}, last member's end {max(ends) - began:.2f}, sweep's end "
            f"{(data.get('finished_at') or 0) - began:.2f}",
            f"  a member (median s): in its slot {statistics.median(slots):.2f}; {medians}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--job", choices=sorted(JOBS), default="line")
    parser.add_argument("--seconds", type=float, default=1.0, help="each job's sleep")
    parser.add_argument("--profile", default="", help="write a cProfile of trainboard's main thread here")
    parser.add_argument("--code", default="", help="a folder holding another version's trainboard package")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp), args.job, args.seconds)
        alone = job_alone(repo, args.seconds) if args.job == "line" else None
        if alone is None:  # the mlflow job's own time is its import too: time the line job for the ideal
            line = make_repo(Path(tmp) / "line", "line", args.seconds)
            alone = job_alone(line, args.seconds)
        floor = bare_pool(repo if args.job == "line" else line, args.members, args.parallel, args.seconds)
        profile = os.path.abspath(args.profile) if args.profile else ""
        warm_up(os.path.abspath(args.code) if args.code else "")
        wall, usage, out, began = run_sweep(repo, args.members, args.parallel, profile, os.path.abspath(args.code)
                                     if args.code else "")
        note, *where = check_sweep(repo, args.members, out, began)
    ideal = args.members * alone / args.parallel
    print(f"sweep of {args.members} members ({args.job} job, {args.seconds:g} s each), {args.parallel} at a time, "
          f"local runner, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}: {note}")
    if args.code:
        print(f"  trainboard from {args.code}")
    print(f"  wall time        {wall:7.2f} s")
    print(f"  ideal            {ideal:7.2f} s  ({args.members} x job alone {alone:.3f} s / {args.parallel})")
    print(f"  ratio            {wall / ideal:7.2f}    (goal <= 1.3)")
    print(f"  bare pool        {floor:7.2f} s  (the same jobs, {args.parallel} at a time, no trainboard; "
          f"sweep / pool = {wall / floor:.2f})")
    print(f"  trainboard CPU   {usage['cpu']:7.2f} s  (user {usage['user']:.2f}, sys {usage['sys']:.2f}; "
          f"{usage['cpu'] / args.members:.3f} s a member)")
    print(f"  peak RSS         {usage['maxrss_kb'] / 1024:7.1f} MB (goal <= 300 MB)")
    print("\n".join(where))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the example job's evaluations inside each epoch cost: job time with and without them.

    .venv/bin/python benchmarks/bench_eval_cost.py [--repeat 1] [--max-train-samples N] [--epochs 1]

Runs examples/intents/train.py on the Quick start's data (make_data.py's default file) in a
throwaway folder, with the Quick start's parameters, twice per round: once with
``evals_per_epoch: 1`` (the baseline: one evaluation, on all held-out rows, at each epoch's end)
and once with the default (``evals_per_epoch`` 4: three more on the fixed ``eval_slice`` of the
held-out set). Prints each run's wall time and the job's own split of it (training, evaluation,
from its metrics.json), the best of the rounds for each, and their ratio. Goal: <= 1.10.

The runs of a round alternate (baseline first, then the default), so that a machine growing busier
or quieter during the benchmark weighs on both.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while the jobs run
EXAMPLE = ROOT / "examples" / "intents"
QUICK_START = {"epochs": 1, "learning_rate": 0.0001, "batch_size": 16, "max_length": 32,
               "data": "data/intents.csv", "test_size": 0.15, "seed": 42}


def run_job(work: Path, name: str, params: dict[str, object]) -> tuple[float, float, dict[str, float]]:
    folder = work / name
    folder.mkdir(exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    data = folder / "data" / "intents.csv"
    if not data.exists():
        data.symlink_to(work / "intents.csv")
    (folder / "params.yaml").write_text("".join(f"{key}: {value}\n" for key, value in params.items()))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("MLFLOW_RUN_ID", None)
    cpu_before = _children_cpu()
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLE / "train.py")], cwd=folder, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - began
    cpu = _children_cpu() - cpu_before
    if proc.returncode:
        sys.exit(f"{name}: the job failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    metrics = json.loads((folder / "metrics.json").read_text())
    return seconds, cpu, metrics


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (baseline, default) runs (default 1)")
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="cap on training rows (default: none, the Quick start's 2,040)")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    params: dict[str, object] = {**QUICK_START, "epochs": args.epochs}
    if args.max_train_samples:
        params["max_train_samples"] = args.max_train_samples
    variants = {"baseline (evals_per_epoch: 1)": {**params, "evals_per_epoch": 1},
                "default (evals_per_epoch: 4)": params}
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-eval-cost-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(work / "intents.csv")],
                       check=True, capture_output=True)
        print(f"job: examples/intents/train.py, params {params}; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.2f} at the start")
        for round_no in range(1, args.repeat + 1):
            for i, (label, variant) in enumerate(variants.items()):
                seconds, cpu, m = run_job(work, f"run{i}", variant)
                best[label] = min(best.get(label, seconds), seconds)
                best_cpu[label] = min(best_cpu.get(label, cpu), cpu)
                print(f"round {round_no} {label:<30} wall {seconds:7.1f} s, cpu {cpu:7.1f} s "
                      f"(train {m['train_seconds']:.1f} s, "
                      f"eval {m['eval_seconds']:.1f} s over {m['evaluations']} evaluations; f1 {m['f1']:.4f}, "
                      f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, loss {m['loss']:.4f})")
    for what, figures in (("wall time", best), ("CPU time", best_cpu)):
        base, default = figures.values()
        ratio = default / base
        print(f"best {what}: baseline {base:.1f} s, default {default:.1f} s, ratio {ratio:.3f} "
              f"({'meets' if ratio <= 1.10 else 'misses'} the goal <= 1.10)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (CPU time is the steadier figure on a busy machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

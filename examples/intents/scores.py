"""Scores of the example job: weighted and macro F1, per-class F1, MLflow-safe keys and the per-class table."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: MLflow metric names keep to these characters (it allows a few more, but not on every system).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
CLASS_PREFIX = "f1_class."


def score(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """f1, precision, recall (weighted by support), accuracy and f1_macro over the labels present."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    return {
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def per_class(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str]) -> dict[str, dict[str, float]]:
    """{label: {f1, precision, recall, support}} for every label that is held out or predicted."""
    from sklearn.metrics import precision_recall_fscore_support

    present = sorted(set(y_true) | set(y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average=None, zero_division=0
    )
    return {
        names[label]: {
            "f1": float(f1[i]),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(present)
    }


def metric_key(label: str, prefix: str = CLASS_PREFIX) -> str:
    """``f1_class.<label>`` with every character MLflow might refuse replaced by ``_``."""
    return prefix + _UNSAFE.sub("_", label)


def class_metrics(classes: dict[str, dict[str, float]]) -> dict[str, float]:
    """The per-class F1 as MLflow metrics; labels that sanitise alike get a numbered suffix."""
    out: dict[str, float] = {}
    for label, values in classes.items():
        key = metric_key(label)
        n = 2
        while key in out:
            key = f"{metric_key(label)}_{n}"
            n += 1
        out[key] = values["f1"]
    return out


def per_class_table(classes: dict[str, dict[str, float]]) -> str:
    """A plain-text table, weakest F1 first, so that a poor minority class stands out."""
    width = max([len("label"), *(len(label) for label in classes)])
    lines = [f"{'label':<{width}}  {'f1':>6}  {'precision':>9}  {'recall':>6}  {'support':>7}"]
    for label, v in sorted(classes.items(), key=lambda item: (item[1]["f1"], item[0])):
        lines.append(
            f"{label:<{width}}  {v['f1']:>6.4f}  {v['precision']:>9.4f}  {v['recall']:>6.4f}  {int(v['support']):>7d}"
        )
    return "\n".join(lines)

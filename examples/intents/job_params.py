"""The example job's parameters: defaults, reading ``params.yaml``, type coercion and range checks."""

from __future__ import annotations

import os
from typing import Any

from progress import log, warn

DEFAULT_DATA = "data/intents.csv"

DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "learning_rate": 1e-4,
    "batch_size": 16,
    "max_length": 32,
    "data": DEFAULT_DATA,
    "text_column": None,
    "label_column": None,
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
    "evals_per_epoch": 4,
    "eval_slice": 128,
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
    "evals_per_epoch",
    "eval_slice",
)
_FLOAT_KEYS = ("learning_rate", "warmup_ratio", "weight_decay")


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


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none"))


def _column(value: Any) -> int | str | None:
    """A column given by name (str) or 0-based index (int); digits alone mean an index."""
    if _is_null(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"a column must be a name or a 0-based index, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def coerce_params(params: dict[str, Any]) -> dict[str, Any]:
    # YAML reads "5e-5" as a string and overrides may arrive as strings, so
    # every value is converted explicitly.
    out = dict(params)
    try:
        for key in _INT_KEYS:
            value = out[key]
            out[key] = DEFAULTS[key] if _is_null(value) else int(float(value))  # null means the default
        for key in _FLOAT_KEYS:
            out[key] = float(out[key])
        test_size = float(out["test_size"])
        out["test_size"] = int(test_size) if test_size >= 1 else test_size
        out["data"] = str(out["data"])
        out["output_dir"] = str(out["output_dir"])
        out["model"] = None if _is_null(out["model"]) else str(out["model"])
        out["text_column"] = _column(out["text_column"])
        out["label_column"] = _column(out["label_column"])
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: bad parameter value: {exc}") from None
    _check_ranges(out)
    return out


def _check_ranges(out: dict[str, Any]) -> None:
    def at_least_one_or_none(key: str) -> bool:
        return out[key] is None or out[key] >= 1

    checks = (
        ("epochs", out["epochs"] >= 1),
        ("batch_size", out["batch_size"] >= 1),
        ("eval_batch_size", out["eval_batch_size"] >= 1),
        ("max_length", out["max_length"] >= 4),
        ("learning_rate", out["learning_rate"] > 0),
        ("test_size", out["test_size"] > 0),
        ("warmup_ratio", 0 <= out["warmup_ratio"] < 1),
        ("log_every", out["log_every"] >= 1),
        ("evals_per_epoch", out["evals_per_epoch"] >= 1),
        ("eval_slice", out["eval_slice"] >= 1),
        ("max_train_samples", at_least_one_or_none("max_train_samples")),
        ("max_eval_samples", at_least_one_or_none("max_eval_samples")),
        ("threads", at_least_one_or_none("threads")),
        ("text_column", not isinstance(out["text_column"], int) or out["text_column"] >= 0),
        ("label_column", not isinstance(out["label_column"], int) or out["label_column"] >= 0),
    )
    for key, ok in checks:
        if not ok:
            raise SystemExit(f"error: parameter {key}={out[key]!r} is out of range")


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)

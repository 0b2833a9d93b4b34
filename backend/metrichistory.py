"""The run's metric history on disk (``metrics.jsonl`` in its run folder), one point a line."""

from __future__ import annotations

import json
from pathlib import Path

from trainboard.backend import events as ev

METRICS_FILE = "metrics.jsonl"


def write_metric_history(run_dir: Path, points: list[ev.MetricPoint], append: bool) -> None:
    """The run's metric history on disk, one JSON object a line."""
    if not run_dir.is_dir():
        return
    text = "".join(
        json.dumps({"key": p.key, "value": p.value, "step": p.step, "timestamp": p.timestamp}) + "\n" for p in points
    )
    with open(run_dir / METRICS_FILE, "a" if append else "w") as fh:
        fh.write(text)


def read_metric_history(run_dir: Path) -> list[ev.MetricPoint]:
    try:
        text = (run_dir / METRICS_FILE).read_text()
    except FileNotFoundError:
        return []
    points = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
            points.append(ev.MetricPoint(str(d["key"]), float(d["value"]), int(d["step"]), int(d["timestamp"])))
        except (ValueError, KeyError, TypeError):
            continue
    return points

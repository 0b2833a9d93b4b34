"""What the example job tells the world: log lines, the trainboard progress line and MLflow metrics.

The progress line is the protocol trainboard reads from any job's output::

    trainboard:progress step=<int> total=<int> [epoch=<e>/<E>] [key=value ...]

``step`` counts training steps done so far (across epochs), ``total`` the
steps expected in all; other pairs (``loss``, ``lr``, ``samples_per_s``) are
for the human reading the log.

On several processes only rank 0 speaks: the others call ``silence()`` (their log lines and
warnings would repeat rank 0's) and make a ``Tracker(enabled=False)``: one process logs into
the MLflow run, so each metric has one value a step.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

PROGRESS_PREFIX = "trainboard:progress"
_silent: list[bool] = [False]  # set in a process that is not rank 0


def silence() -> None:
    """From now on ``log`` and ``warn`` print nothing (a process other than rank 0)."""
    _silent[0] = True


def log(message: str) -> None:
    if not _silent[0]:
        print(message, flush=True)


def warn(message: str) -> None:
    if not _silent[0]:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def progress_line(step: int, total: int, epoch: int | None = None, epochs: int | None = None, **extra: Any) -> str:
    """One protocol line; floats in ``extra`` are written with 4 significant decimals."""
    parts = [PROGRESS_PREFIX, f"step={int(step)}", f"total={int(total)}"]
    if epoch is not None and epochs is not None:
        parts.append(f"epoch={int(epoch)}/{int(epochs)}")
    for key, value in extra.items():
        if isinstance(value, float):
            value = f"{value:.2e}" if value and abs(value) < 1e-3 else f"{value:.4f}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


class Tracker:
    """Logs metrics into the MLflow run named by ``MLFLOW_RUN_ID``, if any.

    Logging problems are reported on stderr and do not stop training.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.run_id = (os.environ.get("MLFLOW_RUN_ID") or None) if enabled else None
        self.client: Any = None
        self._metric_cls: Any = None
        if not enabled:
            return
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
            for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics a batch
                self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])
        except Exception as exc:  # noqa: BLE001
            warn(f"MLflow logging failed at step {step}: {exc}")

"""`trainboard compare RUN`: a recorded run against its base branch's latest finished run."""

from __future__ import annotations

from trainboard.backend.compare import Comparison, compare
from trainboard.backend.config import RunConfig
from trainboard.backend.store import RunRecord
from trainboard.backend.tracking import Tracking, TrackingError


class RecompareError(Exception):
    pass


def recompare(record: RunRecord) -> Comparison:
    config = RunConfig.model_validate(record.config)
    mlflow = record.mlflow
    run_id = mlflow.run_id
    if not run_id:
        raise RecompareError(f"run {record.run_id} has no MLflow run (status: {record.status})")
    if record.status is None or not record.status.has_result:
        raise RecompareError(f"run {record.run_id} did not finish its job (status: {record.status})")
    tracking = Tracking(mlflow.tracking_uri, mlflow.experiment)
    try:
        after, _ = tracking.run_metrics(run_id)
        base = tracking.baseline(config.compare.base, exclude_run_id=run_id, keys=list(config.metrics))
    except TrackingError as exc:
        raise RecompareError(str(exc)) from exc
    label = base.label(config.compare.base) if base else ""
    return compare(
        config,
        after,
        base.metrics if base else None,
        baseline_run_id=base.mlflow_run_id if base else "",
        baseline_label=label,
    )

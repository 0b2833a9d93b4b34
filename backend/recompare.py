"""`trainboard compare [RUN]`: which run to compare, and that run against its base branch's latest finished run."""

from __future__ import annotations

from trainboard.backend.compare import Comparison, compare
from trainboard.backend.config import RunConfig
from trainboard.backend.store import RunRecord, RunStore
from trainboard.backend.tracking import Tracking, TrackingError

NO_RUNS = "no runs yet: start one with `trainboard run CONFIG`"


class RecompareError(Exception):
    """The comparison could not be made: MLflow or the record failed (exit 3)."""


class NothingToCompare(RecompareError):
    """No run, or not one that can be compared: wrong input, nothing to do (exit 2)."""


def pick(store: RunStore, ref: str | None) -> RunRecord:
    """The run ``ref`` names; with None, the latest run that has a result (NothingToCompare when none)."""
    records = store.all()
    if not records:
        raise NothingToCompare(NO_RUNS)
    if ref is not None:
        try:
            return store.resolve(ref)
        except LookupError as exc:
            raise NothingToCompare(str(exc)) from exc
    for record in reversed(records):
        if record.status is not None and record.status.has_result:
            return record
    raise NothingToCompare(
        f"no run has a result to compare yet (the latest, {records[-1].run_id}, is {records[-1].status}): "
        "start one with `trainboard run CONFIG`"
    )


def recompare(record: RunRecord) -> Comparison:
    if record.status is None or not record.status.has_result:
        raise NothingToCompare(
            f"run {record.run_id} cannot be compared: its status is {record.status or 'unknown'} "
            "(only a run whose job finished, succeeded or gate-failed, has metrics to compare)"
        )
    config = RunConfig.model_validate(record.config)
    run_id = record.mlflow.run_id
    if not run_id:
        raise RecompareError(f"run {record.run_id} has no MLflow run (status: {record.status})")
    tracking = Tracking(record.mlflow.tracking_uri, record.mlflow.experiment)
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

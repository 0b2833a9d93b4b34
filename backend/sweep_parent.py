"""The sweep's parent run in MLflow: members are its children (``mlflow.parentRunId``),
so MLflow's own UI folds them under it. At the end it carries the best member's
objective value and run, and the best member is tagged ``trainboard.sweep.best``
(only that member of a sweep can later be found as a baseline).

The parent has no git-branch tag of MLflow's: it is never a baseline itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainboard.backend.tracking import SWEEP_BEST_TAG, SWEEP_TAG, Tracking, TrackingError, resolve_uri

if TYPE_CHECKING:
    from pathlib import Path

    from trainboard.backend.config import RunConfig
    from trainboard.backend.redact import Redactor
    from trainboard.backend.sweep_record import SweepData

_END_STATUS = {"succeeded": "FINISHED", "gate-failed": "FINISHED", "cancelled": "KILLED"}


class ParentRun:
    def __init__(self, config: RunConfig, root: Path) -> None:
        uri = resolve_uri(config.mlflow.tracking_uri, root)
        self.tracking = Tracking(uri, config.mlflow.experiment, root / ".trainboard" / "mlartifacts")
        self.run_id = ""

    async def open(self, data: SweepData, redact: Redactor) -> None:
        """Create the parent run (tagged with the sweep, the branch and the varied settings)."""
        tags = {SWEEP_TAG: data.sweep_id, "trainboard.branch": data.branch, "trainboard.commit": data.commit,
                "trainboard.sweep.params": ",".join(data.params), "trainboard.sweep.objective": data.objective}
        params: dict[str, Any] = {"sweep.members": len(data.members), "sweep.mode": data.mode,
                                  "sweep.max_parallel": data.max_parallel}
        tracking = self.tracking
        self.run_id = await tracking.call(tracking.create_run, f"{data.name}-{data.sweep_id}",
                                          {k: redact(v) for k, v in tags.items()}, params)

    async def adopt(self, child: str) -> None:
        """Make ``child`` (a member's MLflow run made before the parent existed) a child of the parent."""
        try:
            await self.tracking.call(_set_parent, self.tracking, child, self.run_id)
        except TrackingError:
            pass  # the member stays ungrouped in MLflow's UI; its sweep tags still name the sweep

    async def close(self, data: SweepData) -> None:
        """The best member's objective and run on the parent; the parent ended; the best member tagged."""
        if not self.run_id:
            return
        await self.tracking.call(_close, self.tracking, self.run_id, data)


def _set_parent(tracking: Tracking, child: str, parent: str) -> None:
    try:
        tracking.client.set_tag(child, "mlflow.parentRunId", parent)
    except Exception as exc:  # MLflow raises many kinds; all mean "unreachable"
        raise TrackingError(f"MLflow at {tracking.tracking_uri}: {exc}") from exc


def _close(tracking: Tracking, run_id: str, data: SweepData) -> None:
    client = tracking.client
    try:
        best = data.best_member
        if best is not None and best.objective is not None:
            client.log_metric(run_id, f"best_{data.objective}", float(best.objective))
            client.set_tag(run_id, "trainboard.sweep.best_run_id", best.run_id)
            client.set_tag(run_id, "trainboard.sweep.best_values",
                           " ".join(f"{k}={v}" for k, v in best.values.items()))
            if best.mlflow_run_id:
                client.set_tag(best.mlflow_run_id, SWEEP_BEST_TAG, "true")
        client.set_terminated(run_id, status=_END_STATUS.get(data.status, "FAILED"))
    except Exception as exc:  # MLflow raises many kinds; all mean "unreachable"
        raise TrackingError(f"MLflow at {tracking.tracking_uri}: {exc}") from exc

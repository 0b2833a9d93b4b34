"""Compare: the final metrics against the baseline and the gates; the verdict."""

from __future__ import annotations

import time

from trainboard.backend import events as ev
from trainboard.backend.events import Stage
from trainboard.backend.metricfeed import comparison
from trainboard.backend.stages.base import RunContext


class CompareStage:
    stage = Stage.COMPARE
    needs_job_success = True

    async def run(self, ctx: RunContext) -> str:
        metrics = ctx.state.metrics
        result = metrics.comparison = comparison(ctx, final=True)
        note = result.verdict
        if metrics.stale is not None:  # never a verdict on stale values without saying so
            since = time.strftime("%H:%M:%S", time.localtime(metrics.stale.since))
            ctx.error(Stage.COMPARE, f"the verdict is computed on stale metrics: MLflow has not answered "
                                     f"since {since} ({metrics.stale.reason}); points logged after that are "
                                     "not in it")
            note = f"{result.verdict} (on stale metrics)"
            ctx.save_record(verdict_on_stale_metrics=True)
        ctx.emit(ev.ComparisonReady(result))
        ctx.update_record(verdict=result.verdict, gates_passed=result.passed, comparison=result.to_dict())
        return note

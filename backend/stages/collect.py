"""Collect: the last metrics, the MLflow run marked finished, the job's outputs fetched, and
each hook's work on them (DVC pushes and brings back its files)."""

from __future__ import annotations

from pathlib import Path

from trainboard.backend.events import Stage
from trainboard.backend.metricfeed import final_metrics
from trainboard.backend.runnerlink import check_deliveries
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import POLL_TIMEOUT, TrackingError, why_unreachable


async def params_logged(ctx: RunContext) -> None:
    """The run's params, logged while the job ran: a failure is said, and the run goes on."""
    logging_params = ctx.state.tracking.logging_params
    if logging_params is None:
        return
    try:
        await logging_params
    except TrackingError as exc:
        ctx.error(Stage.COLLECT, f"the run's params were not logged to MLflow: {why_unreachable(exc)}")


class CollectStage:
    stage = Stage.COLLECT
    needs_job_success = False

    async def run(self, ctx: RunContext) -> str:
        cfg, tracking = ctx.config, ctx.state.tracking.client
        code = ctx.state.job.exit_code
        assert tracking is not None and code is not None
        await final_metrics(ctx)  # points logged after the last poll, and those the polls missed
        await params_logged(ctx)
        await check_deliveries(ctx)
        status = "FINISHED" if code == 0 else "FAILED"
        try:
            await tracking.call(tracking.finish, ctx.state.tracking.mlflow_run_id, status, timeout=POLL_TIMEOUT)
        except TrackingError as exc:  # the run goes on to its verdict, said to be on stale metrics
            ctx.error(Stage.COLLECT, f"the MLflow run could not be marked {status} (a later run will not "
                                     f"take it as its baseline): {why_unreachable(exc)}")
        got = []
        for rel in cfg.job.outputs:
            src = str(Path(cfg.job.workdir) / rel)
            if await ctx.runner.fetch(src, ctx.run_dir / Path(rel).name):
                got.append(rel)
        missing = sorted(set(cfg.job.outputs) - set(got))
        pushed = ""
        for hook in ctx.hooks:
            pushed += await hook.after_collect(ctx, code)
        return f"{len(got)} outputs" + (f", missing: {', '.join(missing)}" if missing else "") + pushed

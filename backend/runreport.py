"""The run's Markdown report (``report.md`` in its run folder), written at the report stage,
or by teardown for a run that ended without a verdict."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trainboard.backend.stages.base import RunContext


async def write_report(ctx: RunContext, status: str) -> Path:
    from trainboard.backend import report as rp
    from trainboard.backend.baselines import baseline_history
    from trainboard.backend.evaluations import evaluation_table

    state = ctx.state
    assert state.record is not None and state.git is not None
    history = state.metrics.points  # complete for the followed metrics after the final read
    baseline = state.metrics.baseline
    base_history = await baseline_history(ctx)  # read once: its curve on the plot
    plot = None
    if history:
        from trainboard.backend.plots import BaselineSeries, metrics_plot

        series = None
        if baseline is not None:
            series = BaselineSeries(baseline.metrics, base_history.points if base_history else (), baseline.params,
                                    name=f"baseline ({ctx.config.compare.base} @ {baseline.commit[:7] or '?'})")
        made = await asyncio.to_thread(metrics_plot, ctx.config, history, series, ctx.run_dir / "metrics.png")
        plot = made.name if made else None
    cm = ctx.run_dir / "confusion_matrix.png"
    data = rp.ReportInput(
        name=ctx.config.name,
        run_id=ctx.run_id,
        branch=state.git.branch,
        commit=state.git.commit,
        dirty=state.git.dirty,
        runner=ctx.config.runner.kind,
        status=status,
        job_exit_code=state.job.exit_code,
        job_seconds=state.job.seconds,
        mlflow_run_id=state.tracking.mlflow_run_id,
        experiment=ctx.config.mlflow.experiment,
        comparison=state.metrics.comparison,
        params=ctx.config.params,
        baseline_params=baseline.params if baseline else None,
        plot=plot,
        confusion_matrix=cm.name if cm.exists() else None,
        log_tail=ctx.redact.lines(rp.tail_lines(ctx.run_dir / "job.log", ctx.config.report.log_lines)),
        evaluations=evaluation_table(ctx.config, history, baseline.metrics if baseline else None),
        baseline_curve=base_history.note if base_history else None,
    )
    path = ctx.run_dir / "report.md"
    path.write_text(ctx.redact(rp.render(data)))  # its params table too
    state.record.update(report=str(path))
    return path

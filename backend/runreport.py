"""The run's Markdown report (``report.md`` in its run folder), written at the report stage,
or by teardown for a run that ended without a verdict.

A sweep's member leaves its plot out (matplotlib takes more CPU than the rest of a tiny
member): the sweep draws its best member's at its end (:func:`draw_deferred_plot`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trainboard.backend.stages.base import RunContext

_DEFERRED: dict[str, str] = {}  # run id: the status its report was written with, the plot left out


async def write_report(ctx: RunContext, status: str, draw: bool | None = None) -> Path:
    """Write the report; ``draw``: with the metrics plot (default: unless the run is a sweep's member)."""
    from trainboard.backend import report as rp
    from trainboard.backend.baselines import baseline_history
    from trainboard.backend.evaluations import evaluation_table

    state = ctx.state
    assert state.record is not None and state.git is not None
    history = state.metrics.points  # complete for the followed metrics after the final read
    baseline = state.metrics.baseline
    base_history = None
    if draw is None:
        draw = "sweep" not in ctx.record_extra
    if not draw:
        _DEFERRED[ctx.run_id] = status
    plot = None
    if history and draw:
        base_history = await baseline_history(ctx)  # read once: its curve on the plot
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


async def draw_deferred_plot(ctx: RunContext) -> bool:
    """A report written without its plot (a sweep's member): written again with it. Whether it
    was; never raises (the report without a plot stands)."""
    status = _DEFERRED.pop(ctx.run_id, None)
    if status is None:
        return False
    try:
        await write_report(ctx, status, draw=True)
    except Exception:  # noqa: BLE001 - the report as written stays
        return False
    return True

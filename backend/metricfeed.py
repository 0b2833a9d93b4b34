"""The run's metrics: polled from MLflow while the job trains, read once more at its end,
kept on disk, and compared with the baseline as they arrive.

A store that stops answering is said once (MetricsStale) and once when it is back
(MetricsFresh); polling goes on meanwhile.
"""

from __future__ import annotations

import asyncio
import time

from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison, compare
from trainboard.backend.metrichistory import write_metric_history
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import POLL_TIMEOUT, TrackingError, why_unreachable

FINAL_READ_GRACE = 5.0  # at most this long, the last metric read retries a store that does not answer


async def poll_metrics(ctx: RunContext) -> None:
    """Poll the run's latest metrics; re-armed when the last poll has finished."""
    metrics = ctx.state.metrics
    if metrics.fresh_at is None:
        metrics.fresh_at = time.time()
    while True:
        # A task of its own: when the job ends mid-poll, the poll still finishes (bounded)
        # and what it learns (points, or that MLflow does not answer) is not lost.
        metrics.poll_task = asyncio.ensure_future(poll_once(ctx))
        await asyncio.shield(metrics.poll_task)
        await asyncio.sleep(ctx.config.mlflow.poll_interval)


async def poll_once(ctx: RunContext) -> bool:
    """One poll, bounded by POLL_TIMEOUT; False when MLflow did not answer."""
    tracking = ctx.state.tracking.client
    assert tracking is not None
    began = time.time()
    try:
        points = await tracking.call(tracking.latest, ctx.state.tracking.mlflow_run_id, timeout=POLL_TIMEOUT)
    except TrackingError as exc:
        metrics_failed(ctx, exc)
        return False
    add_points(ctx, ctx.state.metrics.cursor.newer(points))  # the cursor moves on an answer only: no point is lost
    _metrics_answered(ctx, began)
    return True


async def final_metrics(ctx: RunContext) -> None:
    """After the job: the points logged since the last poll, then those the polls
    missed. A store that does not answer gets a short grace, then the metrics stay stale."""
    metrics = ctx.state.metrics
    interval = ctx.config.mlflow.poll_interval
    deadline = time.monotonic() + min(FINAL_READ_GRACE, max(1.0, 3 * interval))
    if metrics.poll_task is not None and not metrics.poll_task.done():
        await metrics.poll_task  # the poll the job's end interrupted
    # One more read (points logged since); a store that does not answer, until the grace is over.
    while not (metrics.stale is not None and time.monotonic() >= deadline):
        if await poll_once(ctx):
            break
        await asyncio.sleep(min(interval, 1.0))
    if metrics.stale is None:
        await _reconcile_history(ctx)


def metrics_failed(ctx: RunContext, exc: BaseException) -> None:
    metrics = ctx.state.metrics
    if metrics.stale is not None:
        return  # said once per outage
    since = metrics.fresh_at if metrics.fresh_at is not None else time.time()
    mark_stale(ctx, since, f"MLflow unreachable: {why_unreachable(exc)}")


def mark_stale(ctx: RunContext, since: float, reason: str) -> None:
    """From now on the metrics may miss points: recorded and said."""
    ctx.state.metrics.stale = ev.MetricsStale(since, reason)
    ctx.save_record(metrics_stale={"since": since, "reason": reason})
    ctx.emit(ctx.state.metrics.stale)


def _metrics_answered(ctx: RunContext, began: float) -> None:
    metrics = ctx.state.metrics
    metrics.fresh_at = began
    if metrics.stale is not None:
        stale, metrics.stale = metrics.stale, None
        ctx.save_record(metrics_stale=None)
        ctx.emit(ev.MetricsFresh(stale.since))


async def _reconcile_history(ctx: RunContext) -> None:
    """Points logged and superseded between two polls (or during an outage): read the
    followed metrics' history once, at the end, and send what the polls missed."""
    tracking = ctx.state.tracking.client
    assert tracking is not None
    keys = list(ctx.config.metrics)
    try:
        history = await tracking.call(tracking.history, ctx.state.tracking.mlflow_run_id, keys,
                                      timeout=POLL_TIMEOUT * max(1, len(keys)))
    except TrackingError as exc:
        metrics_failed(ctx, exc)
        return
    seen = {(p.key, p.step, p.timestamp) for p in ctx.state.metrics.points}
    missed = sorted((p for p in history if (p.key, p.step, p.timestamp) not in seen), key=lambda p: (p.step, p.key))
    add_points(ctx, missed)


def add_points(ctx: RunContext, fresh: list[ev.MetricPoint], persist: bool = True) -> None:
    """New points: kept (on disk too), sent, and compared with the baseline."""
    if not fresh:
        return
    metrics = ctx.state.metrics
    if persist:
        write_metric_history(ctx.run_dir, fresh, append=True)
    metrics.points.extend(fresh)
    for point in fresh:  # late points (from the history) never replace newer ones
        mark = (point.step, point.timestamp)
        if mark >= metrics.latest_mark.get(point.key, (-(2**62), 0)):
            metrics.latest_mark[point.key] = mark
            metrics.latest[point.key] = point.value
    ctx.emit(ev.MetricPoints(tuple(fresh)))
    if metrics.baseline is not None or ctx.config.compare.gates:
        ctx.emit(ev.ComparisonReady(comparison(ctx, final=False)))


def comparison(ctx: RunContext, final: bool) -> Comparison:
    base = ctx.state.metrics.baseline
    label = base.label(ctx.config.compare.base) if base else ""
    return compare(
        ctx.config,
        ctx.state.metrics.latest,
        base.metrics if base else None,
        baseline_run_id=(base.mlflow_run_id or f"git:{base.commit[:7]}") if base else "",
        baseline_label=label,
        final=final,
    )


def send_baseline(ctx: RunContext) -> None:
    base = ctx.state.metrics.baseline
    ctx.emit(
        ev.BaselineFound(
            branch=ctx.config.compare.base,
            mlflow_run_id=base.mlflow_run_id if base else "",
            metrics=tuple(sorted(base.metrics.items())) if base else (),
            label=base.label(ctx.config.compare.base) if base and base.source else "",
        )
    )

"""The run's baseline: MLflow's latest run of the base branch first, then each hook's source in order
(git notes, the base branch's committed DVC metrics); and, for the report, its metric history."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from trainboard.backend.evaluations import EPOCH_KEY, BaselineHistory
from trainboard.backend.hooks.base import BaselineLookup
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import POLL_TIMEOUT, Baseline, TrackingError, why_unreachable

HISTORY_TIMEOUT = 2 * POLL_TIMEOUT  # reading the baseline's history, all its keys together


async def find_baseline(ctx: RunContext, from_mlflow: Callable[[], Awaitable[Baseline | None]],
                        early: bool) -> Baseline | None:
    """``early``: start the hooks' lookups now, while MLflow is asked (a local store: they are
    fetched meanwhile); otherwise a hook is asked only when those before it found nothing."""
    started: list[BaselineLookup | None] = [h.baseline_source(ctx) if early else None for h in ctx.hooks]
    try:
        baseline = await from_mlflow()
    except BaseException:
        for lookup in started:
            if lookup is not None:
                lookup.cancel()
        raise
    for hook, lookup in zip(ctx.hooks, started, strict=True):
        if baseline is None:
            lookup = lookup or hook.baseline_source(ctx)
            if lookup is not None:
                baseline = await lookup.result()
        elif lookup is not None:
            lookup.cancel()
    return baseline


async def baseline_history(ctx: RunContext) -> BaselineHistory | None:
    """The baseline run's history of the followed metrics (and of ``epoch``), read from MLflow
    once (bounded by HISTORY_TIMEOUT) and kept in the run's state; None without a baseline."""
    metrics = ctx.state.metrics
    base = metrics.baseline
    if base is None:
        return None
    if metrics.baseline_history is None:
        metrics.baseline_history = await _read_history(ctx, base)
    return metrics.baseline_history


async def _read_history(ctx: RunContext, base: Baseline) -> BaselineHistory:
    finals_only = f"the baseline ({base.source or 'without an MLflow run'}) keeps final values only"
    if not base.mlflow_run_id:
        return BaselineHistory((), finals_only)
    tracking = ctx.state.tracking.client
    if tracking is None:
        return BaselineHistory((), "its history was not read: MLflow was not opened for this run")
    if ctx.state.metrics.stale is not None:
        return BaselineHistory((), "its history was not read: MLflow is not answering")
    keys = [*ctx.config.metrics, EPOCH_KEY]
    try:
        points = await tracking.call(tracking.history, base.mlflow_run_id, keys, timeout=HISTORY_TIMEOUT)
    except TrackingError as exc:
        return BaselineHistory((), f"its history could not be read: {why_unreachable(exc)}")
    if not any(p.key in ctx.config.metrics for p in points):
        if base.source:  # a git note's run, from another MLflow store
            return BaselineHistory((), finals_only)
        return BaselineHistory((), f"MLflow holds no history of the followed metrics for its run {base.mlflow_run_id}")
    return BaselineHistory(tuple(points))

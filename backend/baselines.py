"""The run's baseline: MLflow's latest run of the base branch first, then each hook's source in order
(git notes, the base branch's committed DVC metrics)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from trainboard.backend.hooks.base import BaselineLookup
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import Baseline


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

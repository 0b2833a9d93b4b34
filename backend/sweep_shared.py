"""What a sweep's members look up once for all: the baseline.

Every member of a sweep compares with the same baseline (the base branch as it was when
the sweep began), found by the same lookup: MLflow's latest finished run of the base
branch, then the hooks' sources (git notes, DVC). Searched once per member, the MLflow
search alone reads up to 200 runs of the experiment (a sweep's finished members among
them) and grows with every member. So the first member of a sweep to need it looks it
up, and the others (same sweep, store, experiment, base branch and followed metrics)
wait for that lookup and take its answer. A lookup that fails is not kept: the next
member tries again. A single run looks up its own, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from trainboard.backend.tracking import Baseline

if TYPE_CHECKING:
    from trainboard.backend.stages.base import RunContext

Lookups = dict[tuple[str, str, str, tuple[str, ...]], "asyncio.Future[Baseline | None]"]
"""A sweep's baseline lookups (the Sweep owns one, each member's RunContext holds it)."""


async def shared_baseline(ctx: RunContext, tracking_uri: str,
                          find: Callable[[], Awaitable[Baseline | None]]) -> Baseline | None:
    """``find()``'s answer; for a sweep's member, the answer of the sweep's one lookup."""
    lookups = ctx.shared_lookups
    if lookups is None:
        return await find()
    cfg = ctx.config
    key = (tracking_uri, cfg.mlflow.experiment, cfg.compare.base, tuple(sorted(cfg.metrics)))
    lookup = lookups.get(key)
    if lookup is None or (lookup.done() and (lookup.cancelled() or lookup.exception() is not None)):
        lookup = lookups[key] = asyncio.ensure_future(find())  # a task of its own: one member's cancel
        # does not cancel the others' answer
    return await asyncio.shield(lookup)

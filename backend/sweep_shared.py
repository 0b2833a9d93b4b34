"""What a sweep's members look up once for all: the baseline, the repository's state.

Every member of a sweep runs the same commit of the same checkout and compares with the
same baseline (the base branch as it was when the sweep began). So what a member finds
by reading the repository (git's state, the files to sync, the masked config file, the
DVC project), the MLflow client of a store, and the baseline lookup (MLflow's latest
finished run of the base branch, then the hooks' sources: an MLflow search that reads up
to 200 runs of the experiment, a sweep's finished members among them) is found once, by
the first member that needs it, and the others take its answer: a hundred members do not
start four hundred git processes. A lookup that fails is not kept: the next member tries
again. A single run looks up its own, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from trainboard.backend.tracking import Baseline

if TYPE_CHECKING:
    from trainboard.backend.stages.base import RunContext

T = TypeVar("T")


class Shared:
    """A sweep's answers, by key (the Sweep owns one, each member's RunContext holds it)."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, Any] = {}
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}

    def once(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``'s answer, kept for the next member; an exception is not kept."""
        if key not in self._answers:
            self._answers[key] = compute()
        return self._answers[key]  # type: ignore[no-any-return]

    async def once_async(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The same for a coroutine: members asking meanwhile wait for the one lookup. It runs as
        a task of its own (one member's cancel does not cancel the others' answer)."""
        lookup = self._pending.get(key)
        if lookup is None or (lookup.done() and (lookup.cancelled() or lookup.exception() is not None)):
            lookup = self._pending[key] = asyncio.ensure_future(compute())
        return await asyncio.shield(lookup)  # type: ignore[no-any-return]


def once(ctx: RunContext, key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``; for a sweep's member, the sweep's one answer for ``key``."""
    return compute() if ctx.shared is None else ctx.shared.once(key, compute)


async def once_async(ctx: RunContext, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
    """``await compute()``; for a sweep's member, the sweep's one answer for ``key``."""
    return await compute() if ctx.shared is None else await ctx.shared.once_async(key, compute)


async def shared_baseline(ctx: RunContext, tracking_uri: str,
                          find: Callable[[], Awaitable[Baseline | None]]) -> Baseline | None:
    """``find()``'s answer; for a sweep's member, the answer of the sweep's one lookup."""
    cfg = ctx.config
    key = ("baseline", tracking_uri, cfg.mlflow.experiment, cfg.compare.base, tuple(sorted(cfg.metrics)))
    return await once_async(ctx, key, find)

"""`trainboard reap`, for Ray: stop the heads that runs with ``runner.local: true`` started and
left behind (trainboard killed outright, so its teardown never ran). A head is an orphan when
its run is no longer active, or says "running" but its trainboard process is gone; a detached
run's head is left alone (its job is still there to attach to)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trainboard.backend.runners.ray.head import LocalHead
from trainboard.backend.store import RunStatus, RunStore


def orphaned_heads(store: RunStore, alive: Callable[[int], bool]) -> list[tuple[str, LocalHead, str]]:
    """(run id, head, why) for each live head of a run that no longer needs it."""
    found = []
    for record in store.all():
        runner = record.data.get("runner") or {}
        head_state = (runner.get("state") or {}).get("head") if runner.get("kind") == "ray" else None
        if not head_state or head_state.get("stopped"):
            continue
        head = LocalHead.from_state(head_state)
        status = record.status
        if status is RunStatus.DETACHED:
            continue
        if status is RunStatus.RUNNING and alive(record.trainboard_pid or 0):
            continue
        if head.alive():
            why = f"run {status}" if status is not RunStatus.RUNNING else "run crashed (its trainboard is gone)"
            found.append((record.run_id, head, why))
    return found


def reap_heads(store: RunStore, alive: Callable[[int], bool], dry_run: bool, echo: Callable[[str], None]) -> int:
    """Stop (or, with ``dry_run``, list) the orphaned heads; how many there were."""
    heads = orphaned_heads(store, alive)
    verb = "would stop" if dry_run else "stop"
    for run_id, head, why in heads:
        echo(f"{verb:<7} {'ray head':<14} {head.address:<24} run {run_id}: {why}")
        if not dry_run:
            asyncio.run(head.stop())
    return len(heads)

"""The git-notes hook: a base-branch run's result recorded in git notes (and pushed), and the
entry of the base branch looked up as the baseline when MLflow has none (see
``trainboard.backend.gitbaseline``)."""

from __future__ import annotations

import asyncio
from typing import Any

from trainboard.backend import gitbaseline as gb
from trainboard.backend.exitcodes import RunStatus
from trainboard.backend.hooks.base import BaselineLookup, Hook
from trainboard.backend.publish import base_branch_blocker
from trainboard.backend.redact import mask_config
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import Baseline, flatten, in_thread


class GitNotesHook(Hook):
    def __init__(self, records: bool = True) -> None:
        self.records = records  # False for a sweep's members: one member's result is not the baseline

    def baseline_source(self, ctx: RunContext) -> BaselineLookup | None:
        """Fetch the remote's git notes and look up this config's entry, in a thread (None: notes are off)."""
        git = ctx.state.git
        if not ctx.config.compare.git_notes or git is None or not git.commit:
            return None
        remote = gb.pick_remote(ctx.root, ctx.config.github.remote, git.branch)
        identity = gb.identity_for(ctx.config, ctx.loaded.path, ctx.root)
        task = asyncio.ensure_future(in_thread(gb.lookup, ctx.root, ctx.config.compare.base, identity, remote,
                                               list(ctx.config.metrics)))
        return _NotesLookup(ctx, task)

    async def after_report(self, ctx: RunContext) -> str:
        """A base-branch run's result, recorded in git notes and pushed, for later runs to compare with."""
        git, cfg, comparison = ctx.state.git, ctx.config, ctx.state.metrics.comparison
        assert git is not None and comparison is not None
        if not self.records:
            return ""
        if ctx.state.metrics.stale is not None:
            return ""  # the baseline later runs find must not be a result on stale metrics
        if not cfg.compare.git_notes or not base_branch_blocker(cfg, git.branch) or not git.commit:
            return ""  # only a run of the base branch records (not a fork's pull request from its own main)
        if git.dirty:
            ctx.notice("git notes: not recorded as the baseline: the checkout has uncommitted "
                       "changes, so the result is not that of its commit")
            return ""
        remote = gb.pick_remote(ctx.root, cfg.github.remote, git.branch)
        entry = gb.make_entry(
            gb.identity_for(cfg, ctx.loaded.path, ctx.root), branch=git.branch, commit=git.commit,
            status=RunStatus.SUCCEEDED if comparison.passed else RunStatus.GATE_FAILED, verdict=comparison.verdict,
            metrics={k: v for k, v in ctx.state.metrics.latest.items() if k in cfg.metrics},
            params=flatten(mask_config(cfg.params)), mlflow_run_id=ctx.state.tracking.mlflow_run_id,
            trainboard_run_id=ctx.run_id, overrides=ctx.redact.lines(list(ctx.loaded.overrides)))
        try:
            first = not await in_thread(gb.has_notes, ctx.root)
            done = await in_thread(gb.record, ctx.root, entry, remote, ctx.redact)
        except (gb.NotesError, OSError, ValueError) as exc:  # a notice, never a failed run
            ctx.notice(f"git notes: the baseline was not recorded: {exc}")
            return ""
        where = f"{gb.NOTES_REF} on {git.commit[:7]}"
        if done.pushed_to:
            ctx.notice(f"baseline recorded in {where}, pushed to {done.pushed_to!r}")
        elif done.problem:
            ctx.notice(f"baseline recorded in {where} here only: {done.problem}")
        elif first:  # said once: the first note of this repository
            ctx.notice(f"baseline recorded in {where} in this repository only: no git remote "
                       f"{cfg.github.remote!r} (github.remote) to push it to")
        ctx.update_record(baseline_note={"commit": git.commit, "pushed_to": done.pushed_to, "problem": done.problem})
        return ""


class _NotesLookup:
    """The git-notes entry a lookup found (a fetch that failed is a Notice: offline is fine)."""

    def __init__(self, ctx: RunContext, task: asyncio.Future[Any]) -> None:
        self.ctx, self.task = ctx, task

    async def result(self) -> Baseline | None:
        try:
            found, problem = await self.task
        except (gb.NotesError, OSError, ValueError) as exc:  # never more than a notice: MLflow and DVC remain
            self.ctx.notice(f"git notes: the baseline could not be looked up: {exc}")
            return None
        if problem:
            self.ctx.notice(f"git notes: could not fetch {gb.NOTES_REF} ({problem}); using what this "
                            "checkout has")
        return found.baseline if found is not None else None

    def cancel(self) -> None:
        self.task.cancel()

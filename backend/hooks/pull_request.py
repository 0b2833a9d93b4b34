"""The pull-request hook: at check, whether this run publishes at its end (github.publish);
at the end of the run, and on the dashboard's ``p`` and `trainboard pr`, the same
:func:`publish_run` pushes the outputs and report and opens or updates the pull request
(see ``trainboard.backend.publish``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import RunStatus
from trainboard.backend.github import PublishError, ReadOnlyToken, RunInfo, read_only_reason
from trainboard.backend.hooks.base import Hook
from trainboard.backend.publish import base_branch_blocker, publish, publishes_at_the_end
from trainboard.backend.publish import blocker as pr_blocker
from trainboard.backend.stages.base import RunContext

if TYPE_CHECKING:
    from trainboard.backend.compare import Comparison
    from trainboard.backend.config import RunConfig
    from trainboard.backend.github import PublishResult
    from trainboard.backend.redact import Redactor
    from trainboard.backend.store import RunRecord

def run_info(record: RunRecord, config: RunConfig, comparison: Comparison | None, stale: bool = False) -> RunInfo:
    """What the pull request says of a finished run (its record, and the verdict when there is one)."""
    status = "stale metrics" if stale else str(record.status or "")
    ended = record.status
    if comparison is not None and not stale and not (ended and (ended.is_failure or ended is RunStatus.CANCELLED)):
        status = RunStatus.SUCCEEDED if comparison.passed else RunStatus.GATE_FAILED
    return RunInfo(record.run_id, record.branch, record.commit, config.name,
                   comparison.verdict if comparison else record.verdict,
                   comparison=comparison, status=status)


def publish_run(record: RunRecord, run_dir: Path, root: Path, config: RunConfig, run: RunInfo,
                files: Mapping[str, Path], redact: Redactor) -> PublishResult:
    """Push the run's outputs and report, open or update its pull request, and record it.

    Raises ReadOnlyToken (nothing was written) and PublishError."""
    result = publish(run_dir, root, config, run, dict(files), redact)
    record.update(pull_request={"number": result.pr_number, "url": result.pr_url,
                                "comment_url": result.comment_url, "branch": result.branch})
    return result


class PullRequestHook(Hook):
    def __init__(self) -> None:
        self.at_end = False  # github.publish says so, and the check found a token and a repo
        self.read_only = ""  # why this run may not write to GitHub (a fork's pull request in CI)
        self.publishing = False
        self._settings_blocker: str | None = None  # what blocker() found in the settings

    def check(self, ctx: RunContext) -> None:
        """Before anything starts: can this run publish at its end, as github.publish asks?"""
        if not publishes_at_the_end(ctx.config):
            return
        assert ctx.state.git is not None
        if on_base := base_branch_blocker(ctx.config, ctx.state.git.branch):  # it records the baseline instead
            ctx.notice(f"no pull request for this run: {on_base}")
            return
        if reason := read_only_reason():  # a fork's pull request: nothing is written, the verdict is the exit
            self.read_only = reason
            return
        problem = pr_blocker(ctx.config, ctx.root)
        if not problem:
            self.at_end = True
        elif ctx.config.github.publish == "always":
            raise ctx.loaded.error("github.publish", f"the pull request cannot be published: {problem}",
                                   fix="set GITHUB_TOKEN and github.repo (or a GitHub remote), "
                                       "or set github.publish: ci")
        else:
            ctx.notice(f"no pull request for this run: {problem}")

    async def after_report(self, ctx: RunContext) -> str:
        note = ""
        if self.at_end:
            opened = await self._open(ctx)
            if opened is not None:
                note = f"pull request #{opened.number} {'opened' if opened.created else 'updated'}"
        if self.read_only:
            self._tell_read_only(ctx)
            note = "read-only: nothing posted to GitHub"
        return note

    def blocker(self, ctx: RunContext) -> str:
        """Why the finished run's pull request cannot be opened now; "" when it can."""
        record = ctx.state.record
        if self.publishing:
            return "the pull request is being published"
        if record is None or record.status is None or not record.status.has_result:
            return "the pull request opens once the run has finished with a result"
        if self._settings_blocker is None:  # token and repository: asked of git once, not on every redraw
            self._settings_blocker = (base_branch_blocker(ctx.config, record.branch)
                                      or pr_blocker(ctx.config, ctx.root))
        return self._settings_blocker

    async def open_now(self, ctx: RunContext) -> ev.PullRequestOpened | None:
        """Open or update the finished run's pull request (the dashboard's p); errors become events."""
        if blocked := self.blocker(ctx):
            ctx.notice(f"no pull request: {blocked}")
            return None
        try:
            opened = await self._open(ctx)
            if opened is None:
                self._tell_read_only(ctx)
            return opened
        except PublishError as exc:
            ctx.error(Stage.REPORT, f"pull request: {exc}")
            return None

    def _tell_read_only(self, ctx: RunContext) -> None:
        """A run that may not write to GitHub says why, here and on the CI step summary."""
        from trainboard.backend import ci

        ctx.notice(f"no comment or commit status from this run: {self.read_only}")
        ci.append_read_only_summary(self.read_only)

    async def _open(self, ctx: RunContext) -> ev.PullRequestOpened | None:
        """Publish; None when the token turned out read-only (nothing was written: said so)."""
        record = ctx.state.record
        assert record is not None and ctx.state.git is not None
        run = run_info(record, ctx.config, ctx.state.metrics.comparison, stale=ctx.state.metrics.stale is not None)
        self.publishing = True
        try:
            result = await asyncio.to_thread(publish_run, record, ctx.run_dir, ctx.root, ctx.config, run,
                                             ctx.state.returned_files, ctx.redact)
        except ReadOnlyToken as exc:
            self.read_only = str(exc)
            return None
        finally:
            self.publishing = False
        for line in result.notes:
            ctx.notice(f"pull request: {line}")
        if result.statuses:
            ctx.notice(f"commit statuses: {', '.join(result.statuses)}")
        for path in result.missing:
            ctx.notice(f"pull request: output {path} was not found, so not committed")
        for path in result.withheld:
            ctx.notice(f"pull request: {path} holds a secret, so it was not pushed")
        opened = ev.PullRequestOpened(result.pr_number, result.pr_url, result.comment_url, result.created_pr,
                                      result.branch)
        ctx.emit(opened)
        return opened

"""Report: the Markdown report in the run folder; then each hook's work on it (the git-notes
baseline of a base-branch run, the pull request)."""

from __future__ import annotations

from trainboard.backend import events as ev
from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import RunStatus
from trainboard.backend.runreport import write_report
from trainboard.backend.stages.base import RunContext


class ReportStage:
    stage = Stage.REPORT
    needs_job_success = True

    async def run(self, ctx: RunContext) -> str:
        result = ctx.state.metrics.comparison
        assert result is not None
        status = RunStatus.SUCCEEDED if result.passed else RunStatus.GATE_FAILED
        stale = ctx.state.metrics.stale is not None
        path = await write_report(ctx, f"error: {status} on stale metrics" if stale else status)
        ctx.emit(ev.ReportWritten(str(path)))
        note = ""
        for hook in ctx.hooks:
            note = await hook.after_report(ctx) or note
        return note

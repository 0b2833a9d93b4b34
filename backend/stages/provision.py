"""Provision: the runner gets its machine ready (this one, an SSH host, a fresh EC2 instance)."""

from __future__ import annotations

from trainboard.backend import events as ev
from trainboard.backend.events import Stage
from trainboard.backend.runnerlink import listen, runner_ready
from trainboard.backend.runners import make_runner
from trainboard.backend.stages.base import RunContext


class ProvisionStage:
    stage = Stage.PROVISION
    needs_job_success = False

    async def run(self, ctx: RunContext) -> str:
        ctx.emit(ev.RunnerChanged(state="provisioning", kind=ctx.config.runner.kind))
        state = ctx.state.runner
        if state.made is None:
            state.made = make_runner(ctx.config.runner, ctx.run_dir, ctx.run_id)
        runner = state.runner = state.made  # from now on teardown releases it
        listen(ctx)
        record = ctx.state.record
        assert record is not None
        try:
            host = await runner.provision()
        finally:  # what was created so far, for teardown, attach and reap
            record.merge("runner", state=runner.state())
        runner_ready(ctx, host)
        return ""

"""Teardown: an ordered list of steps run at the end of every run (success, failure, cancel,
Ctrl-C, SIGTERM, detach). Each step fails on its own: its problem is collected and the
next step runs; the problems are said once all have run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from trainboard.backend import events as ev
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.runnerlink import cost
from trainboard.backend.runreport import write_report
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import POLL_TIMEOUT


class TeardownProblem(Exception):
    """What a step says went wrong, as it should read (the step's own wording)."""


Step = Callable[[RunContext, ExitCode], Awaitable[None]]


async def _stop_background(ctx: RunContext, outcome: ExitCode) -> None:
    opening = ctx.state.tracking.opening
    if opening is not None and not opening.done():
        opening.cancel()
    if opening is not None:
        with contextlib.suppress(BaseException):
            await opening  # its thread's result, if any, is not needed now
    if ctx.state.runner.cost_task is not None:
        ctx.state.runner.cost_task.cancel()


async def _leave_runner(ctx: RunContext, outcome: ExitCode) -> None:
    runner = ctx.state.runner.runner
    if runner is not None and outcome is ExitCode.DETACHED:
        try:
            await runner.detach()
        except Exception as exc:
            raise TeardownProblem(f"leaving the runner: {exc}") from exc


async def _stop_job(ctx: RunContext, outcome: ExitCode) -> None:
    runner, handle = ctx.state.runner.runner, ctx.state.job.handle
    if runner is None or outcome is ExitCode.DETACHED or handle is None:
        return
    try:
        status = await runner.status(handle)
        if status.running:
            ctx.notice("stopping the job (SIGTERM, then SIGKILL)")
            await runner.stop(handle)
            final = await runner.status(handle)
            ctx.state.job.exit_code = final.exit_code
    except Exception as exc:
        orphan = runner.capabilities.orphan_timeout
        left = (f"; the host's watchdog stops it once trainboard has said nothing for "
                f"runner.orphan_timeout ({orphan:g} s)" if orphan else "")
        raise TeardownProblem(f"stopping the job: {exc}{left}") from exc


async def _release_runner(ctx: RunContext, outcome: ExitCode) -> None:
    runner, record = ctx.state.runner.runner, ctx.state.record
    if runner is None or outcome is ExitCode.DETACHED:
        return
    try:
        await runner.teardown()
        ctx.emit(ev.RunnerChanged(state="stopped", kind=runner.kind))
    except Exception as exc:
        raise TeardownProblem(f"runner teardown: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            if record is not None:
                record.merge("runner", state=runner.state())
        final = cost(ctx, final=True)
        if final is not None:
            ctx.emit(final)
            ctx.save_record(cost=round(final.cost, 4))


async def _stop_server(ctx: RunContext, outcome: ExitCode) -> None:
    tracking = ctx.state.tracking
    if tracking.server_task is not None and not tracking.server_task.done():
        tracking.server_task.cancel()
        with contextlib.suppress(BaseException):
            await tracking.server_task
    if tracking.server is not None:
        try:
            await tracking.server.stop()
        except Exception as exc:
            raise TeardownProblem(f"stopping the local MLflow server: {exc}") from exc


async def _mark_mlflow_run(ctx: RunContext, outcome: ExitCode) -> None:
    client, run_id = ctx.state.tracking.client, ctx.state.tracking.mlflow_run_id
    if client is None or not run_id or outcome not in (ExitCode.INTERRUPTED, ExitCode.INFRA_ERROR,
                                                        ExitCode.JOB_FAILED):
        return
    mlflow_status = "KILLED" if outcome is ExitCode.INTERRUPTED else "FAILED"
    try:
        await client.call(client.finish, run_id, mlflow_status, timeout=POLL_TIMEOUT)
    except Exception as exc:
        raise TeardownProblem(f"marking the MLflow run {mlflow_status}: {exc}") from exc


async def _report_the_end(ctx: RunContext, outcome: ExitCode) -> None:
    if ctx.state.record is None or outcome in (ExitCode.OK, ExitCode.GATE_FAILED, ExitCode.DETACHED):
        return  # a verdict's report was written at the report stage
    try:
        path = await write_report(ctx, outcome.status)
    except Exception as exc:
        raise TeardownProblem(f"writing the report: {exc}") from exc
    ctx.emit(ev.ReportWritten(str(path)))


STEPS: list[Step] = [_stop_background, _leave_runner, _stop_job, _release_runner, _stop_server, _mark_mlflow_run,
                     _report_the_end]


async def teardown(ctx: RunContext, outcome: ExitCode) -> None:
    """Run every step; then the problems, the record's last state and RunFinished."""
    ctx.state.stage_started[Stage.TEARDOWN] = time.time()
    ctx.emit(ev.StageChanged(Stage.TEARDOWN, StageState.RUNNING))
    problems = []
    for step in STEPS:
        try:
            await step(ctx, outcome)
        except TeardownProblem as exc:
            problems.append(str(exc))
    for problem in problems:
        ctx.error(Stage.TEARDOWN, problem)
    ctx.end_stage(Stage.TEARDOWN, StageState.FAILED if problems else StageState.DONE)
    duration = time.time() - ctx.state.started
    ctx.save_record(status=outcome.status, exit_code=int(outcome), job_exit_code=ctx.state.job.exit_code,
                    finished_at=time.time(), duration=duration)
    if ctx.state.record is not None:
        ctx.state.record.release_reserve()
    ctx.emit(ev.RunFinished(outcome=int(outcome), status=outcome.status, duration=duration))


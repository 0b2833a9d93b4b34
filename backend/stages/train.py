"""Train: start the job (or, on attach, follow the one an earlier session started), follow its
log (and its progress and metric lines) and poll its metrics until it exits.

A run cancelled while the job trains ends this stage as cancelled (skipped, "cancelled"),
not failed: also when the job, stopped by the same signal, exits first."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from trainboard.backend import events as ev
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import JobFailed
from trainboard.backend.jobs import follow, job_spec, start_job
from trainboard.backend.metricfeed import poll_metrics
from trainboard.backend.metriclines import MetricLines
from trainboard.backend.progress import ProgressTracker, final_text
from trainboard.backend.runnerlink import job_tracking_env
from trainboard.backend.runners import JobHandle
from trainboard.backend.stages.base import RunContext
from trainboard.backend.torchrun import distributed_command
from trainboard.backend.tracking import freeze_imported

_matplotlib_import: list[threading.Thread] = []  # started once a process (a sweep runs many members)


def _prefetch_matplotlib() -> None:
    """The report's plot needs matplotlib (~0.5 s): imported while the job trains, once."""
    if not _matplotlib_import:
        _matplotlib_import.append(threading.Thread(target=_import_matplotlib, name="matplotlib-import", daemon=True))
        _matplotlib_import[0].start()


def _import_matplotlib() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401

    freeze_imported("matplotlib")


class TrainStage:
    stage = Stage.TRAIN
    needs_job_success = False

    async def run(self, ctx: RunContext) -> str:
        ctx.emit(ev.RunnerChanged(state="training", kind=ctx.config.runner.kind))
        job = ctx.state.job
        progress = ProgressTracker()
        try:
            handle = job.handle if job.resumed and job.handle is not None else await _start(ctx)
            code = await _train(ctx, handle, progress)
        except asyncio.CancelledError:
            if _cancelled(ctx):
                ctx.end_stage(Stage.TRAIN, StageState.SKIPPED, "cancelled")
            raise
        steps = final_text(progress.latest) if progress.latest is not None else ""
        if code != 0 and _cancelled(ctx):
            ctx.end_stage(Stage.TRAIN, StageState.SKIPPED, "cancelled")
        elif code != 0:
            ctx.end_stage(Stage.TRAIN, StageState.FAILED, f"job exited {code}" + (f" after {steps}" if steps else ""))
        return steps


def _cancelled(ctx: RunContext) -> bool:
    """Whether the run is being cancelled (Ctrl-C, SIGTERM, the dashboard's c or q), not
    detached (the stage goes on in the next session) nor stopped by a failure."""
    outcome = ctx.state.outcome
    return bool(outcome.cancel_reason) and not outcome.detaching and not outcome.cancel_failed


async def _start(ctx: RunContext) -> JobHandle:
    cfg, tracking = ctx.config, ctx.state.tracking
    assert tracking.client is not None
    env = {
        "MLFLOW_TRACKING_URI": tracking.client.tracking_uri,
        "MLFLOW_RUN_ID": tracking.mlflow_run_id,
        "MLFLOW_EXPERIMENT_NAME": cfg.mlflow.experiment,
        "TRAINBOARD_RUN_ID": ctx.run_id,
    }
    if ctx.state.git is not None:  # the job's metadata on a cluster (the Ray runner's)
        env.update(TRAINBOARD_GIT_BRANCH=ctx.state.git.branch, TRAINBOARD_GIT_COMMIT=ctx.state.git.commit)
    if cfg.job.gpus:
        env["TRAINBOARD_GPUS"] = str(cfg.job.gpus)
    env.update(await job_tracking_env(ctx))
    command = distributed_command(cfg.job.command, cfg.job.processes)  # job.processes > 1: under torchrun
    return await start_job(ctx, job_spec(ctx, "job", (command,), env))


async def _train(ctx: RunContext, handle: JobHandle, progress: ProgressTracker) -> int:
    """Follow the job's log and poll its metrics until it exits; its exit code, recorded.
    The metric values it printed are all in MLflow (or said not to be) before this returns."""
    cfg = ctx.config
    lines = MetricLines(ctx)
    poller = asyncio.create_task(poll_metrics(ctx))
    _prefetch_matplotlib()
    try:
        timeout = None  # counted from the job's start: an attach gets what is left
        if cfg.job.timeout_minutes:
            timeout = max(0.0, cfg.job.timeout_minutes * 60 - (time.time() - handle.started_at))
        try:
            code = await asyncio.wait_for(follow(ctx, handle, "job", progress, lines), timeout)
        except TimeoutError:
            await ctx.runner.stop(handle)
            limit = f"job.timeout_minutes ({cfg.job.timeout_minutes:g})"
            raise JobFailed(f"the job ran past {limit}", None) from None
    finally:
        poller.cancel()
        with contextlib.suppress(BaseException):
            await poller
    await lines.flush()
    job = ctx.state.job
    job.exit_code = code
    job.seconds = time.time() - handle.started_at
    ctx.update_record(job_exit_code=code, job_seconds=job.seconds)
    ctx.emit(ev.JobFinished(exit_code=code, duration=job.seconds))
    return code

"""Attach: the state of a recorded run, rebuilt from its record, so that the session runs the
same plan from ``train``; or, for a run that has ended, shown as it ended (replayed)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

from trainboard.backend import events as ev
from trainboard.backend.baselines import find_baseline
from trainboard.backend.compare import Comparison
from trainboard.backend.config import RunConfig
from trainboard.backend.events import STAGES, Stage, StageState
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.gitinfo import GitState
from trainboard.backend.metricfeed import add_points, send_baseline
from trainboard.backend.metrichistory import read_metric_history
from trainboard.backend.mlflow_server import needs_forwarding
from trainboard.backend.redact import MASK, Redactor, unmask_config
from trainboard.backend.runnerlink import job_tracking_env, listen, runner_ready, serve_tracking
from trainboard.backend.runners import JobHandle, RunnerError, make_runner
from trainboard.backend.stages.base import RunContext
from trainboard.backend.store import RunRecord
from trainboard.backend.tracking import Tracking, TrackingError

REPLAY_LINES = 5000  # log lines a finished run shows on attach (the whole log stays on disk)


def is_live(record: RunRecord) -> bool:
    """Whether the recorded run's job may still be going (followed on attach, not replayed)."""
    return record.status is not None and record.status.is_live


def rebuild_from_record(ctx: RunContext, record: RunRecord) -> None:
    """The state a recorded run had: git, tracking, its stages as they were (sent to the views)."""
    state = ctx.state
    state.record = record
    record.redact = ctx.redact.data
    git = state.git = GitState(root=ctx.root, branch=record.branch, commit=record.commit, dirty=record.dirty,
                               is_git=True)
    mlflow = record.mlflow
    if mlflow.tracking_uri:
        state.tracking.client = Tracking(mlflow.tracking_uri, mlflow.experiment or ctx.config.mlflow.experiment)
    state.tracking.mlflow_run_id = mlflow.run_id
    state.started = float(record.created_at or time.time())
    ctx.emit(ev.RunStarted(run_id=ctx.run_id, branch=git.branch, commit=git.commit, dirty=git.dirty,
                           runner_kind=ctx.config.runner.kind, config_path=str(ctx.loaded.path),
                           run_dir=str(ctx.run_dir), at=state.started))
    live = is_live(record)
    for stage in STAGES:
        info = record.stages.get(stage.value)
        if info is None or info.state is StageState.RUNNING or (live and stage is Stage.TEARDOWN):
            continue
        state.stage_started[stage] = info.started_at or state.started
        state.ended.add(stage)
        ctx.emit(ev.StageChanged(stage, info.state, info.detail, info.elapsed))
    if state.tracking.mlflow_run_id and state.tracking.client is not None:
        client = state.tracking.client
        ctx.emit(ev.TrackingReady(client.tracking_uri, client.experiment, state.tracking.mlflow_run_id))


async def resume_live_run(ctx: RunContext, record: RunRecord) -> None:
    """A job left running: reconnect to its runner and to what it reaches MLflow through, read
    back its secrets, find the baseline and show the points the first session saw."""
    known = read_metric_history(ctx.run_dir)  # shown; polling asks only for newer ones
    ctx.state.metrics.cursor.newer(known)
    job = record.job
    if job is None:
        raise RunnerError(f"run {record.run_id} has no training job to attach to (it stopped before training)")
    await _reconnect_runner(ctx, record)
    await _restore_forward(ctx, record)
    handle = JobHandle(name="job", pid=job.pid, log_path=job.log, exit_path=job.exit_path,
                       started_at=float(job.started_at or 0))
    ctx.state.job.handle, ctx.state.job.resumed = handle, True
    train = record.stages.get(Stage.TRAIN.value)
    if train is not None and train.started_at:
        ctx.state.resumed_at[Stage.TRAIN] = train.started_at
    await _read_back_secrets(ctx, handle)
    record.update(status=RunStatus.RUNNING, trainboard_pid=os.getpid())
    if ctx.state.tracking.client is not None:
        ctx.state.metrics.baseline = await find_baseline(ctx, lambda: _recorded_baseline(ctx), early=False)
        send_baseline(ctx)
    add_points(ctx, known, persist=False)


async def _reconnect_runner(ctx: RunContext, record: RunRecord) -> None:
    runner = ctx.state.runner.made = make_runner(ctx.config.runner, ctx.run_dir, ctx.run_id)
    listen(ctx)
    recorded = record.runner
    ctx.emit(ev.RunnerChanged(state="reconnecting", kind=ctx.config.runner.kind, address=recorded.address))
    # Not the run's runner until it answers: a runner we cannot reach is left as it is
    # (its own watchdog still guards it), never torn down by a failed attach.
    host = await runner.reattach(recorded.state)
    ctx.state.runner.runner = runner
    runner_ready(ctx, host, at=recorded.ready_at or time.time())


async def _recorded_baseline(ctx: RunContext) -> Any:
    client = ctx.state.tracking.client
    assert client is not None
    try:
        return await client.call(client.baseline, ctx.config.compare.base, ctx.state.tracking.mlflow_run_id,
                                 list(ctx.config.metrics))
    except TrackingError as exc:
        ctx.notice(f"baseline unavailable: {exc}")
        return None


async def _restore_forward(ctx: RunContext, record: RunRecord) -> None:
    """What the job reaches MLflow through, when this machine served its store (a local one,
    a remote runner): the server again, and its forward to the runner.

    A job whose trainboard died (kill -9) meanwhile waits at the runner's relay: its MLflow
    calls get through once this has run.
    """
    client = ctx.state.tracking.client
    if client is None or not needs_forwarding(client.tracking_uri, ctx.capabilities.shares_filesystem):
        return
    serve_tracking(ctx, client.tracking_uri)
    uri = (await job_tracking_env(ctx))["MLFLOW_TRACKING_URI"]
    expected = record.job_tracking_uri
    if expected and expected != uri:
        ctx.error(Stage.TRAIN, f"the job logs to MLflow at {expected} on the runner, but its relay now "
                               f"listens at {uri}: its metrics from now on cannot reach this machine")
    ctx.notice(f"serving the MLflow store to the job again ({uri} on the runner)")


async def _read_back_secrets(ctx: RunContext, handle: JobHandle) -> None:
    """The job's environment, as the runner still has it (its secrets file, /proc), fills
    the ``***`` the record and the config file left, and its secrets join the redactor."""
    try:
        env = await ctx.runner.read_job_env(handle)
    except RunnerError as exc:
        ctx.notice(f"the job's environment could not be read back ({exc}): "
                   "its secrets are masked in the log only as far as the config file knows them")
        return
    if not env:
        return
    raw = ctx.loaded.raw
    if MASK in json.dumps(raw.get("job", {}).get("env", {})):
        raw = unmask_config(raw, {"job": {"env": env}})
        with contextlib.suppress(ValueError):
            ctx.loaded = dataclasses.replace(ctx.loaded, config=RunConfig.model_validate(raw), raw=raw)
    ctx.redact = ctx.redact.with_secrets(Redactor.from_env(env).secrets)
    if ctx.state.record is not None:
        ctx.state.record.redact = ctx.redact.data


def replay_ended_run(ctx: RunContext, record: RunRecord) -> ExitCode:
    """Show a run that has ended as it ended: stages, log tail, metric history, comparison."""
    from trainboard.backend.report import tail_lines

    rebuild_from_record(ctx, record)
    ctx.emit(ev.RunnerChanged(state="stopped", kind=ctx.config.runner.kind))
    for source in ("setup", "job"):
        lines = tail_lines(ctx.run_dir / f"{source}.log", REPLAY_LINES)
        if lines:
            size = (ctx.run_dir / f"{source}.log").stat().st_size
            ctx.emit(ev.LogLines(source, tuple(ctx.redact.lines(lines)), size))
    add_points(ctx, read_metric_history(ctx.run_dir), persist=False)
    if record.job_exit_code is not None:  # in run order: the job's end, then the comparison
        ctx.emit(ev.JobFinished(record.job_exit_code, record.job_seconds or 0.0))
    comparison = record.comparison
    if comparison:
        result = ctx.state.metrics.comparison = Comparison.from_dict(comparison)
        before = tuple((r.key, r.before) for r in result.rows if r.before is not None)
        ctx.emit(ev.BaselineFound(result.base_branch, result.baseline_run_id, before))
        ctx.emit(ev.ComparisonReady(result))
    report = ctx.run_dir / "report.md"
    if report.exists():
        ctx.emit(ev.ReportWritten(str(report)))
    outcome = ExitCode(record.exit_code if record.exit_code is not None else ExitCode.INFRA_ERROR)
    ctx.emit(ev.RunFinished(int(outcome), str(record.status), record.duration or 0.0))
    return outcome

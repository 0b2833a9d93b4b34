"""Check: everything that can be said before anything is spent (git, the config's folders,
each hook's check, the tracking server); then the run record, and the MLflow run opened
in the background while the runner is provisioned."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from trainboard.backend import events as ev
from trainboard.backend.baselines import find_baseline
from trainboard.backend.budget import check_budget
from trainboard.backend.config import ConfigError
from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import RunStatus
from trainboard.backend.gitinfo import git_state
from trainboard.backend.metricfeed import send_baseline
from trainboard.backend.params_schema import check_params
from trainboard.backend.redact import mask_config
from trainboard.backend.runnerlink import serve_tracking
from trainboard.backend.stages.base import RunContext
from trainboard.backend.sweep_shared import once, shared_baseline
from trainboard.backend.tracking import (
    BRANCH_TAG,
    COMMIT_TAG,
    PARAMS_HASH_TAG,
    RUN_TAG,
    Tracking,
    TrackingError,
    display_uri,
    in_thread,
    is_http,
    prefetch,
    probe,
    resolve_uri,
)


class CheckStage:
    stage = Stage.CHECK
    needs_job_success = False

    async def run(self, ctx: RunContext) -> str:
        cfg = ctx.config
        mlflow_import = prefetch(cfg.mlflow.tracking_uri)
        _check_repository(ctx)
        check_params(ctx.loaded, ctx.root)
        if projection := check_budget(ctx.loaded):  # a projection over budget.max_cost_usd: exit 2
            ctx.notice(projection)
        for hook in ctx.hooks:
            hook.check(ctx)
        uri = resolve_uri(cfg.mlflow.tracking_uri, ctx.root)
        problem = await probe(uri)  # a tracking server that does not answer: said now, in seconds
        if problem:
            raise TrackingError(str(ctx.loaded.error(
                "mlflow.tracking_uri", f"no MLflow tracking server answers at {display_uri(uri)}: {problem}",
                fix="start the tracking server, or point mlflow.tracking_uri at one that runs "
                    "(or use the local store, sqlite:///.trainboard/mlflow.db); nothing was started")))
        ctx.state.tracking.client = once(ctx, ("tracking", uri, cfg.mlflow.experiment), lambda: Tracking(
            uri, cfg.mlflow.experiment, ctx.root / ".trainboard" / "mlartifacts"))  # one client for a sweep's members
        _create_record(ctx, uri)
        # MLflow's import and first store access take seconds: the run is
        # created while the runner is provisioned, synced and set up.
        ctx.state.tracking.opening = asyncio.create_task(_open_tracking(ctx, mlflow_import))
        serve_tracking(ctx, uri)  # a remote job cannot open the local store: serve it here, forward it there
        return ""


def _check_repository(ctx: RunContext) -> None:
    git = ctx.state.git = once(ctx, ("git", ctx.root), lambda: git_state(ctx.root))  # a sweep's members: one look
    if not git.is_git:
        raise ConfigError(
            f"the config's folder {ctx.root} is not inside a git repository",
            file=str(ctx.loaded.path),
            fix="run trainboard from a git checkout (`git init` and commit your code): it syncs "
            "the current commit plus uncommitted changes, and compares branches",
        )
    workdir = ctx.config.job.workdir
    if not (ctx.root / workdir).is_dir():
        raise ctx.loaded.error("job.workdir", f"folder {workdir!r} does not exist in {ctx.root}",
                               fix="name a folder of the repository, relative to its root")


def _create_record(ctx: RunContext, uri: str) -> None:
    cfg, git = ctx.config, ctx.state.git
    assert git is not None
    ctx.state.record = ctx.store.create(
        ctx.run_id,
        redact=ctx.redact.data,  # the config and overrides are kept masked
        name=cfg.name,
        config_path=str(ctx.loaded.path.resolve()),  # attach reads the secrets back from it
        overrides=list(ctx.loaded.overrides),
        config=ctx.loaded.raw,
        branch=git.branch,
        commit=git.commit,
        dirty=git.dirty,
        runner={"kind": cfg.runner.kind},
        mlflow={"tracking_uri": uri, "experiment": cfg.mlflow.experiment, "run_id": ""},
        status=RunStatus.RUNNING,
        stages={},
        trainboard_pid=os.getpid(),
        **ctx.record_extra,
    )
    ctx.emit(ev.RunStarted(run_id=ctx.run_id, branch=git.branch, commit=git.commit, dirty=git.dirty,
                           runner_kind=cfg.runner.kind, config_path=str(ctx.loaded.path), run_dir=str(ctx.run_dir)))


async def _open_tracking(ctx: RunContext, mlflow_import: Any) -> None:
    """The MLflow run (tagged with the branch and commit), and the baseline."""
    tracking, git, record, cfg = ctx.state.tracking.client, ctx.state.git, ctx.state.record, ctx.config
    assert tracking is not None and git is not None and record is not None
    if mlflow_import.is_alive():
        await in_thread(mlflow_import.join)  # daemon threads: none of them holds the process at exit

    async def from_mlflow() -> Any:
        return await tracking.call(tracking.baseline, cfg.compare.base, None, list(cfg.metrics))

    # The run is made while the baseline is looked up: the job waits for the one, not the other.
    tags = ctx.state.tracking.run_tags = {  # what the run is made with (a sweep's parent may come later)
        RUN_TAG: ctx.run_id,
        BRANCH_TAG: git.branch,
        COMMIT_TAG: git.commit,
        PARAMS_HASH_TAG: cfg.params_hash(),
        "trainboard.dirty": str(git.dirty).lower(),
        "trainboard.runner": cfg.runner.kind,
        **ctx.tags,
    }
    creating = asyncio.ensure_future(tracking.call(tracking.create_run, f"{cfg.name}-{ctx.run_id}", tags,
                                                   urgent=True))
    try:
        # A fresh CI checkout's store has no run of the base branch: git notes may (see trainboard.backend.gitbaseline).
        # Fetched meanwhile for a local store; for a shared server only when it has no baseline.
        # A sweep's members share one lookup (see trainboard.backend.sweep_shared).
        early = not is_http(tracking.tracking_uri)
        baseline = ctx.state.metrics.baseline = await shared_baseline(
            ctx, tracking.tracking_uri, lambda: find_baseline(ctx, from_mlflow, early=early))
    except BaseException:
        with contextlib.suppress(Exception):  # the run made meanwhile is teardown's to end
            ctx.state.tracking.mlflow_run_id = await asyncio.shield(creating)
        raise
    mlflow_run_id = ctx.state.tracking.mlflow_run_id = await creating
    # The params follow while the job starts (it needs the run's id, not them); collect waits for them.
    logging_params = ctx.state.tracking.logging_params = asyncio.ensure_future(tracking.call(
        tracking.log_params, mlflow_run_id, mask_config(cfg.params)))  # a secret-named param is logged as ***
    logging_params.add_done_callback(lambda task: task.cancelled() or task.exception())  # read: never "unretrieved"
    record.merge("mlflow", run_id=mlflow_run_id, baseline_run_id=baseline.mlflow_run_id if baseline else "",
                 baseline_source=(baseline.source or "mlflow") if baseline else "")
    ctx.emit(ev.TrackingReady(tracking.tracking_uri, tracking.experiment, mlflow_run_id))
    send_baseline(ctx)

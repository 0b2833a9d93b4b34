"""Sync: the commit plus uncommitted changes, the params and the masked config go to the
runner's workspace; then the setup commands (the config's, then the hooks') run there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from trainboard.backend import events as ev
from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import JobFailed
from trainboard.backend.gitinfo import files_to_sync
from trainboard.backend.jobs import job_spec, run_job
from trainboard.backend.redact import masked_config_file
from trainboard.backend.stages.base import RunContext
from trainboard.backend.sweep_shared import once, once_async


class SyncStage:
    stage = Stage.SYNC
    needs_job_success = False

    async def run(self, ctx: RunContext) -> str:
        cfg = ctx.config
        assert ctx.state.git is not None
        git = ctx.state.git
        files = await once_async(ctx, ("files", git.root), lambda: asyncio.to_thread(files_to_sync, git))
        params = yaml.safe_dump(cfg.params, sort_keys=False).encode()
        extra = {str(Path(cfg.job.workdir) / "params.yaml"): params}
        synced = len(files)  # the config file among them, masked on its way (see _mask_config_copy)
        files, extra = _mask_config_copy(ctx, files, extra)
        await ctx.runner.sync(ctx.root, files, extra)
        note = f"{synced} files + params.yaml"
        setup = list(cfg.job.setup)
        for hook in ctx.hooks:
            setup += hook.setup_commands(ctx)
        if setup:
            ctx.emit(ev.RunnerChanged(state="setting up", kind=cfg.runner.kind))
            code = await run_job(ctx, job_spec(ctx, "setup", tuple(setup)))
            if code != 0:
                raise JobFailed(f"setup failed with exit code {code}: see setup.log", code)
        if ctx.state.tracking.opening is not None:
            await ctx.state.tracking.opening  # the job needs the MLflow run's id
        return note


def _mask_config_copy(ctx: RunContext, files: list[str], extra: dict[str, bytes]) -> tuple[list[str], dict[str, bytes]]:
    """The config file goes to the runner's workspace with its secrets masked (the job
    gets them in its environment): the synced file list without it, and its masked copy."""
    try:
        rel = ctx.loaded.path.resolve().relative_to(ctx.root.resolve()).as_posix()
    except ValueError:
        return files, extra  # outside the repository: not synced
    if rel not in files or rel in extra:
        return files, extra
    masked = once(ctx, ("masked config", rel), lambda: _masked_config(ctx.loaded.path))
    return [f for f in files if f != rel], {**extra, rel: masked}


def _masked_config(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    return masked_config_file(text).encode()

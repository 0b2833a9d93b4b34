"""The DVC hook: checks the repository's DVC project, prepares DVC on the runner, pushes the
outputs and brings the pointer, lock and metrics files back, and offers the base branch's
committed metrics files as a baseline (see ``trainboard.backend.dvc``)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from trainboard.backend import dvc
from trainboard.backend import events as ev
from trainboard.backend.config import ConfigError
from trainboard.backend.events import Stage
from trainboard.backend.exitcodes import JobFailed
from trainboard.backend.hooks.base import BaselineLookup, Hook
from trainboard.backend.jobs import job_spec, run_job
from trainboard.backend.metricfeed import add_points
from trainboard.backend.stages.base import RunContext
from trainboard.backend.sweep_shared import once
from trainboard.backend.tracking import Baseline


class DvcHook(Hook):
    def __init__(self) -> None:
        self.project: Any = None  # the repository's DvcProject, when this run uses DVC
        self.remote = ""

    def check(self, ctx: RunContext) -> None:
        """Before anything starts: the repository's dvc.yaml, the outputs and the remote make sense."""
        cfg = ctx.config
        try:
            project = once(ctx, ("dvc project", ctx.root), lambda: dvc.scan_project(ctx.root))
        except dvc.DvcError as exc:
            raise ConfigError(f"dvc.yaml: {exc}", file=str(ctx.root / "dvc.yaml"),
                              fix="fix the dvc.yaml (`dvc status` shows what DVC thinks of it)") from None
        # A DVC project: a .dvc/ at the root, or a dvc.yaml where the job runs. A dvc.yaml
        # elsewhere in a repository without .dvc/ (an example in a subfolder) is not this run's.
        here = {"dvc.yaml", (Path(cfg.job.workdir) / "dvc.yaml").as_posix()}
        if not (cfg.dvc.outputs or project.has_dvc_dir or here & set(project.dvc_yamls)):
            return
        try:
            remote = dvc.check_remote(cfg.dvc.remote or dvc.default_remote(ctx.root))
            for output in cfg.dvc.outputs:
                dvc.normalize_path((Path(cfg.job.workdir) / output).as_posix())
        except dvc.DvcError as exc:
            raise ctx.loaded.error("dvc", str(exc), fix="see the dvc section of sample_params.yaml") from None
        if not ctx.capabilities.keeps_workspace:
            # A push after the job would find none of what it wrote.
            raise ctx.loaded.error("runner.kind", f"the {cfg.runner.kind} runner cannot run trainboard's DVC "
                                   "steps (a DVC project, dvc.outputs): a later job would not see what the "
                                   "training job wrote",
                                   fix="run `dvc push` in the job's own command, or its outputs through "
                                       "job.outputs (docs/ray.md); or use the local, ssh or ec2 runner")
        if dvc.is_local_remote(remote) and not ctx.capabilities.shares_filesystem and cfg.dvc.outputs:
            raise ctx.loaded.error("dvc.remote", f"a folder ({remote}) cannot be reached from a {cfg.runner.kind} "
                                   "runner: it pushes the outputs itself",
                                   fix="use a remote both reach, e.g. dvc.remote: s3://bucket/prefix")
        self.project, self.remote = project, remote

    def setup_commands(self, ctx: RunContext) -> list[str]:
        # after the user's setup, which may be what installs dvc
        return dvc.dvc_prepare_commands(ctx.config.job.workdir) if self.project is not None else []

    def _outputs(self, ctx: RunContext) -> list[str]:
        """dvc.outputs as repository paths (the config names them from job.workdir)."""
        return [(Path(ctx.config.job.workdir) / o).as_posix().rstrip("/") for o in ctx.config.dvc.outputs]

    async def after_collect(self, ctx: RunContext, code: int) -> str:
        """After a successful job: push the outputs from the runner, bring the pointer, lock
        and metrics files back into the checkout, and read the metrics files. A note."""
        if self.project is None or code != 0:
            return ""
        note = await self._push(ctx)
        project, returned = self.project, ctx.state.returned_files
        back = dvc.dvc_return_files(self._outputs(ctx), project.dvc_yamls, project.metrics_files,
                                    stage_outs=project.stage_outs)
        for rel in back:
            if await ctx.runner.fetch(rel, ctx.root / rel):
                returned[rel] = ctx.root / rel
        for rel in dvc.ensure_gitignored(ctx.root, dvc.pushed_outputs(self._outputs(ctx), project.stage_outs)):
            returned[rel] = ctx.root / rel
        ctx.update_record(dvc_files=sorted(returned))
        values, problems = dvc.collect_metrics(ctx.root, project.metrics_files)
        for problem in problems:
            ctx.notice(f"DVC metrics: {problem}")
        step = max((p.step for p in ctx.state.metrics.points), default=0)
        now = int(time.time() * 1000)
        latest = ctx.state.metrics.latest
        add_points(ctx, [ev.MetricPoint(k, v, step, now) for k, v in sorted(values.items()) if k not in latest])
        return note  # MLflow's values win where both have a key

    async def _push(self, ctx: RunContext) -> str:
        """Push the outputs with DVC from the runner (its own credentials, or this machine's keys)."""
        cfg, project = ctx.config, self.project
        commands = dvc.dvc_output_commands(self._outputs(ctx), self.remote, stage_outs=project.stage_outs,
                                           workdir=cfg.job.workdir, endpoint_url=cfg.dvc.endpoint_url or None,
                                           prepare=False)
        if not commands:
            return ""
        env = dict(dvc.DVC_ENV)
        caps = ctx.capabilities
        if not caps.shares_filesystem and not dvc.is_local_remote(self.remote) and not caps.cloud_role:
            env.update(dvc.aws_env(os.environ))  # the runner pushes to S3 itself, with these keys
        if await run_job(ctx, job_spec(ctx, "dvc", tuple(commands), env)) != 0:
            raise JobFailed("pushing the outputs with DVC failed: see dvc.log", None, stage=Stage.COLLECT)
        return f", {len(dvc.pushed_outputs(self._outputs(ctx), project.stage_outs))} pushed with DVC"

    def baseline_source(self, ctx: RunContext) -> BaselineLookup | None:
        if self.project is None or not self.project.metrics_files:
            return None
        return _CommittedMetrics(ctx, list(self.project.metrics_files))


class _CommittedMetrics:
    """No MLflow run of the base branch yet: its committed metrics files (`dvc metrics diff`)."""

    def __init__(self, ctx: RunContext, files: list[str]) -> None:
        self.ctx, self.files = ctx, files

    async def result(self) -> Baseline | None:
        found = await asyncio.to_thread(dvc.base_branch_baseline, self.ctx.root, self.ctx.config.compare.base,
                                        self.files)
        return dataclasses.replace(found, source="committed metrics, DVC") if found is not None else None

    def cancel(self) -> None:
        return None

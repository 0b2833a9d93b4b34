"""The run: a small driver over a plan of stages (check, provision, sync, train, collect,
compare, report), then teardown.

A :class:`Session` runs the stages of ``trainboard.backend.stages`` in order and emits
immutable events (see ``trainboard.backend.events``) to its subscribers. Views hold no run
logic: they render events and call :meth:`Session.cancel`. Teardown
(``trainboard.backend.teardown``) runs in ``finally``, on success, failure, cancel, Ctrl-C
and SIGTERM alike. An attach rebuilds the state from the run record and runs the same plan
from ``train`` (``trainboard.backend.restore``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from trainboard.backend import events as ev
from trainboard.backend.config import ConfigError, LoadedConfig, RunConfig
from trainboard.backend.eventbus import EventBus, Subscriber
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import ExitCode, JobFailed, exit_code_for
from trainboard.backend.github import PublishError
from trainboard.backend.gitinfo import repo_root
from trainboard.backend.hooks import Hook, configured_hooks
from trainboard.backend.hooks.pull_request import PullRequestHook
from trainboard.backend.jobs import follow
from trainboard.backend.metrichistory import METRICS_FILE, read_metric_history, write_metric_history
from trainboard.backend.redact import Redactor, config_secrets
from trainboard.backend.restore import is_live, rebuild_from_record, replay_ended_run, resume_live_run
from trainboard.backend.runners import JobHandle, Runner, RunnerError
from trainboard.backend.stages.base import RunContext, StageStep
from trainboard.backend.stages.check import CheckStage
from trainboard.backend.stages.collect import CollectStage
from trainboard.backend.stages.compare import CompareStage
from trainboard.backend.stages.provision import ProvisionStage
from trainboard.backend.stages.report import ReportStage
from trainboard.backend.stages.sync import SyncStage
from trainboard.backend.stages.train import TrainStage
from trainboard.backend.store import RunRecord, RunStore, new_run_id
from trainboard.backend.sweep_shared import Shared
from trainboard.backend.teardown import teardown
from trainboard.backend.tracking import TrackingError, limit_http_client

__all__ = ["METRICS_FILE", "EventBus", "JobFailed", "Session", "Subscriber", "plan", "read_metric_history",
           "write_metric_history"]


def plan(start: Stage = Stage.CHECK) -> list[StageStep]:
    """The stages of a run, from ``start`` (an attach starts at train); teardown is not one of them."""
    steps: list[StageStep] = [CheckStage(), ProvisionStage(), SyncStage(), TrainStage(), CollectStage(),
                              CompareStage(), ReportStage()]
    return steps[[step.stage for step in steps].index(start):]


def failure_message(exc: BaseException) -> str | None:
    """How an expected failure reads on the views; None for a fault nothing names (a bug)."""
    if isinstance(exc, ConfigError | JobFailed):
        return str(exc)
    if isinstance(exc, RunnerError | TrackingError | OSError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, PublishError):
        return f"pull request: {exc}"
    return None


class Session:
    def __init__(self, loaded: LoadedConfig, *, root: Path | None = None, run_id: str | None = None,
                 hooks: list[Hook] | None = None, tags: dict[str, str] | None = None,
                 record_extra: dict[str, Any] | None = None, shared: Shared | None = None,
                 gate: Callable[[], Awaitable[None]] | None = None) -> None:
        """``hooks``: the integrations (default: every configured one); ``tags`` and ``record_extra``:
        extra MLflow tags and record keys (a sweep's member: its parent run, its values);
        ``shared``: what a sweep's members look up once for all (sweep_shared); ``gate``: awaited before
        the train stage (a sweep's member prepared ahead waits there for its slot, see sweep_slots)."""
        root = root or repo_root(loaded.path.resolve().parent)
        # Secret values (env vars named like TOKEN/SECRET/KEY, config keys named like token or
        # password) never reach a view, the report or a file.
        redact = Redactor.from_env(os.environ, loaded.config.job.env, extra=config_secrets(loaded.raw))
        self.ctx = RunContext(loaded=loaded, root=root, store=RunStore(root / ".trainboard"),
                              run_id=run_id or new_run_id(), redact=redact,
                              hooks=configured_hooks() if hooks is None else hooks, tags=dict(tags or {}),
                              record_extra=dict(record_extra or {}), shared=shared, gate=gate)
        self.root, self.store, self.run_id, self.bus = root, self.ctx.store, self.ctx.run_id, self.ctx.bus
        self.state = self.ctx.state
        self.ctx.stop = self.cancel  # the cost cap stops the run as a cancel (trainboard.backend.budget)
        self._task: asyncio.Task[Any] | None = None
        self._attach_to: RunRecord | None = None  # set by Session.attach

    # ------------------------------------------------------------------ what the views read

    @property
    def loaded(self) -> LoadedConfig:
        return self.ctx.loaded

    @property
    def config(self) -> RunConfig:
        return self.ctx.config

    @property
    def redact(self) -> Redactor:
        return self.ctx.redact

    @property
    def record(self) -> RunRecord | None:
        return self.state.record

    @property
    def runner(self) -> Runner | None:
        return self.state.runner.runner

    @runner.setter
    def runner(self, runner: Runner | None) -> None:
        self.state.runner.runner = self.state.runner.made = runner

    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir

    # ------------------------------------------------------------------ API for views

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self.bus.subscribe(callback)

    def cancel(self, reason: str = "cancelled", failed: bool = False) -> bool:
        """Stop the run and tear down. Returns False if it was already stopping.

        ``failed``: the run is stopped because something broke (a view crashed): it ends
        as an error (exit 3), not as an interruption.
        """
        outcome = self.state.outcome
        if outcome.cancel_reason or self._task is None or self._task.done():
            return False
        outcome.cancel_reason, outcome.cancel_failed = reason, failed
        self._task.cancel()
        return True

    @property
    def can_detach(self) -> bool:
        """Whether the training job is running and can be left (see :attr:`detach_blocker`)."""
        return not self.detach_blocker

    @property
    def detach_blocker(self) -> str:
        """Why the session cannot detach now; "" when it can."""
        job = self.state.job
        if job.handle is None or job.handle.name != "job" or job.exit_code is not None:
            return "only while the job trains: before that, and after, stop instead"
        if self.state.tracking.server is not None:
            # The job logs to MLflow through this session's server and SSH forward: both end with it.
            # `trainboard attach` serves and forwards them again (as after a crash), but until then
            # the job's MLflow calls wait at the runner's relay and, after MLflow's client retries
            # (minutes), fail: leaving it on purpose would put the job at that risk.
            return ("the job logs to MLflow through this session's SSH forward; "
                    "to detach, use a tracking server both sides reach (mlflow.tracking_uri: http://...)")
        return ""

    def detach(self) -> bool:
        """End this session and leave the job running; `trainboard attach RUN` comes back.

        Only while the training job runs. Returns False when there is nothing to leave.
        """
        if not self.can_detach:
            return False
        self.state.outcome.detaching = True
        if not self.cancel("detached"):
            self.state.outcome.detaching = False
            return False
        return True

    @classmethod
    def attach(cls, record: RunRecord, root: Path) -> Session:
        """A session for a recorded run: a job still running is followed to its end
        (then collected, compared and reported); a finished run is shown as it ended.

        The record keeps the config's secrets masked: they are read back from the config
        file, and from the running job's environment once the runner answers."""
        from trainboard.backend.store import recorded_config

        raw = recorded_config(record)
        loaded = LoadedConfig(
            config=RunConfig.model_validate(raw),
            path=Path(record.config_path or "config"),
            overrides=tuple(record.overrides),
            raw=raw,
        )
        session = cls(loaded, root=root, run_id=record.run_id)
        session._attach_to = record
        return session

    async def wait_finished(self) -> None:
        """Return once :meth:`run` has returned, teardown included (at once if it never started)."""
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            await asyncio.wait({self._task})

    @property
    def _pull_request(self) -> PullRequestHook:
        return next(h for h in self.ctx.hooks if isinstance(h, PullRequestHook))

    @property
    def pull_request_blocker(self) -> str:
        """Why the finished run's pull request cannot be opened now; "" when it can."""
        return self._pull_request.blocker(self.ctx)

    async def open_pull_request(self) -> ev.PullRequestOpened | None:
        """Open or update the finished run's pull request (the dashboard's p); errors become events."""
        return await self._pull_request.open_now(self.ctx)

    # ------------------------------------------------------------------ the run

    async def run(self) -> ExitCode:
        self._task = asyncio.current_task()
        self.state.started = time.time()
        if self._attach_to is not None and not is_live(self._attach_to):
            return replay_ended_run(self.ctx, self._attach_to)
        release_http = limit_http_client()  # MLflow calls of a few seconds each, not minutes
        outcome, failed_stage = ExitCode.INFRA_ERROR, None
        try:
            outcome = await self._run_plan()
        except (asyncio.CancelledError, Exception) as exc:
            outcome, failed_stage = self._stopped_by(exc)
        finally:
            outcome = await self._end(outcome, failed_stage)
            release_http()
        return outcome

    async def _run_plan(self) -> ExitCode:
        """The plan from check; after an attach, from train on the state rebuilt from the record."""
        steps = plan()
        if self._attach_to is not None:
            rebuild_from_record(self.ctx, self._attach_to)
            await resume_live_run(self.ctx, self._attach_to)
            steps = plan(Stage.TRAIN)
        for step in steps:
            code = self.state.job.exit_code
            if step.needs_job_success and code != 0:
                raise JobFailed(f"the job exited with code {code}", code, stage=Stage.TRAIN)
            if step.stage is Stage.TRAIN and self.ctx.gate is not None:
                await self.ctx.gate()
            async with self.ctx.stage(step.stage, began=self.state.resumed_at.get(step.stage)) as note:
                note(await step.run(self.ctx))
        comparison = self.state.metrics.comparison
        assert comparison is not None
        if self.state.metrics.stale is not None:
            return ExitCode.INFRA_ERROR  # a verdict on values that may not be the last is no pass (nor a fail)
        return ExitCode.OK if comparison.passed else ExitCode.GATE_FAILED

    def _stopped_by(self, exc: BaseException) -> tuple[ExitCode, Stage | None]:
        """The outcome of a run that ``exc`` ended, said on the views; and the stage to mark failed."""
        ctx, outcome = self.ctx, self.state.outcome
        stage = ctx.current_stage()
        if isinstance(exc, asyncio.CancelledError):
            if outcome.detaching:
                ctx.notice(f"detached: the job runs on; `trainboard attach {self.run_id}` returns")
                return ExitCode.DETACHED, None
            if outcome.cancel_failed:
                ctx.error(stage, f"{outcome.cancel_reason}: tearing down")
                return ExitCode.INFRA_ERROR, stage
            ctx.notice(f"{outcome.cancel_reason or 'cancelled'}: tearing down")
            if stage is not None:  # cut short, not failed: in whichever stage the cancel came
                ctx.end_stage(stage, StageState.SKIPPED, "cancelled")
            return exit_code_for(exc), None
        if isinstance(exc, JobFailed) and exc.stage is not None:
            stage = exc.stage
        message = failure_message(exc)
        if message is None:  # a fault nothing above names (a bug): exit 3, never 0; teardown still runs
            ctx.crashed(stage, exc)
        else:
            ctx.error(stage, message)
        return exit_code_for(exc), stage

    async def _end(self, outcome: ExitCode, failed_stage: Stage | None) -> ExitCode:
        """Mark the failed stage, tear down (whatever happens meanwhile), and settle the exit code."""
        ctx, bus = self.ctx, self.bus
        if bus.failure is not None and outcome in (ExitCode.OK, ExitCode.GATE_FAILED):
            outcome = ExitCode.INFRA_ERROR
            ctx.crashed(ctx.current_stage(), bus.failure, what="a view failed")
        if failed_stage is not None:
            try:
                ctx.end_stage(failed_stage, StageState.FAILED)
            except Exception:  # nothing before teardown may keep it from running
                pass
        # Teardown always finishes: a second cancel (a view closing, the
        # event loop shutting down) must not cut it short.
        ending = asyncio.ensure_future(teardown(ctx, outcome))
        while not ending.done():
            try:
                await asyncio.shield(ending)
            except asyncio.CancelledError:
                continue
            except Exception as exc:  # teardown's own bug: said, kept, and never exit 0
                outcome = ExitCode.INFRA_ERROR if outcome is ExitCode.OK else outcome
                ctx.crashed(Stage.TEARDOWN, exc, what="teardown failed")
        if bus.failure is not None and outcome in (ExitCode.OK, ExitCode.GATE_FAILED):
            outcome = ExitCode.INFRA_ERROR  # a view failed while the run ended
        return outcome

    # ------------------------------------------------------------------ for benchmarks and tests

    def _emit(self, event: ev.Event) -> None:
        """Send an event to every subscriber."""
        self.ctx.emit(event)

    async def _follow(self, handle: JobHandle, source: str) -> int:
        """Follow a job's log into LogLines events until it exits (see ``trainboard.backend.jobs``)."""
        return await follow(self.ctx, handle, source)

"""The run: check, provision, sync, train, collect, compare, report, tear down.

A :class:`Session` runs the stages and publishes immutable events (see
``trainboard.backend.events``) to its subscribers. Views hold no run logic: they render
events and call :meth:`Session.cancel`. Teardown runs in ``finally``, on
success, failure, cancel, Ctrl-C and SIGTERM alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison, compare
from trainboard.backend.config import ConfigError, LoadedConfig, RunConfig
from trainboard.backend.events import STAGES, Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.github import PublishError, ReadOnlyToken, read_only_reason
from trainboard.backend.gitinfo import GitState, files_to_sync, git_state, repo_root
from trainboard.backend.logtail import CHUNK_SIZE, LineSplitter
from trainboard.backend.mlflow_server import LocalTrackingServer, needs_forwarding
from trainboard.backend.publish import base_branch_blocker, publishes_at_the_end
from trainboard.backend.publish import blocker as pr_blocker
from trainboard.backend.redact import MASK, Redactor, config_secrets, mask_config, masked_config_file, unmask_config
from trainboard.backend.runners import Host, JobHandle, JobSpec, Runner, RunnerError, make_runner
from trainboard.backend.store import RunRecord, RunStore, new_run_id
from trainboard.backend.tracking import (
    BRANCH_TAG,
    COMMIT_TAG,
    PARAMS_HASH_TAG,
    POLL_TIMEOUT,
    RUN_TAG,
    Baseline,
    MetricCursor,
    Tracking,
    TrackingError,
    display_uri,
    flatten,
    in_thread,
    is_http,
    job_http_env,
    limit_http_client,
    prefetch,
    probe,
    resolve_uri,
    why_unreachable,
)

Subscriber = Callable[[ev.Event], None]

TAIL_IDLE = 0.05  # seconds between reads of a log that has nothing new
COST_INTERVAL = 15.0  # seconds between CostUpdated events while a paid runner is up
FINAL_READ_GRACE = 5.0  # at most this long, the last metric read retries a store that does not answer


REPLAY_LINES = 5000  # log lines a finished run shows on attach (the whole log stays on disk)
METRICS_FILE = "metrics.jsonl"


def write_metric_history(run_dir: Path, points: list[ev.MetricPoint], append: bool) -> None:
    """The run's metric history on disk, one JSON object a line."""
    if not run_dir.is_dir():
        return
    text = "".join(
        json.dumps({"key": p.key, "value": p.value, "step": p.step, "timestamp": p.timestamp}) + "\n" for p in points
    )
    with open(run_dir / METRICS_FILE, "a" if append else "w") as fh:
        fh.write(text)


def read_metric_history(run_dir: Path) -> list[ev.MetricPoint]:
    try:
        text = (run_dir / METRICS_FILE).read_text()
    except FileNotFoundError:
        return []
    points = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
            points.append(ev.MetricPoint(str(d["key"]), float(d["value"]), int(d["step"]), int(d["timestamp"])))
        except (ValueError, KeyError, TypeError):
            continue
    return points


def _import_matplotlib() -> None:
    """The report's plot needs matplotlib (~0.5 s): import it while the job trains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


class JobFailed(Exception):
    def __init__(self, message: str, exit_code: int | None, stage: Stage | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stage = stage  # the stage to blame, when it is not the one running


class EventBus:
    """Synchronous fan-out: every subscriber sees every event, in order.

    A subscriber that raises (a view's bug) never stops the run or its teardown:
    its first exception is kept in :attr:`failure`, and the session ends with exit 3.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.failure: BaseException | None = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, event: ev.Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:
                if self.failure is None:
                    self.failure = exc


class Session:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        root: Path | None = None,
        run_id: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.root = root or repo_root(loaded.path.resolve().parent)
        self.store = RunStore(self.root / ".trainboard")
        self.run_id = run_id or new_run_id()
        self.bus = EventBus()
        # Secret values (env vars named like TOKEN/SECRET/KEY, config keys named like token or
        # password) never reach a view, the report or a file.
        self.redact = Redactor.from_env(os.environ, self.config.job.env, extra=config_secrets(loaded.raw))
        self.record: RunRecord | None = None
        self.runner: Runner | None = None
        self.tracking: Tracking | None = None
        self.mlflow_run_id = ""
        self.baseline: Baseline | None = None
        self.comparison: Comparison | None = None
        self.git: GitState | None = None
        self.points: list[ev.MetricPoint] = []
        self.latest: dict[str, float] = {}
        self._job: JobHandle | None = None
        self._job_exit: int | None = None
        self._job_seconds: float | None = None
        self._task: asyncio.Task[Any] | None = None
        self._tracking_task: asyncio.Task[None] | None = None
        self._cancel_reason = ""
        self._cancel_failed = False
        self._detaching = False
        self._attach_to: RunRecord | None = None  # set by Session.attach
        self._stage_started: dict[Stage, float] = {}
        self._ended: set[Stage] = set()
        self._cursor = MetricCursor()
        self._latest_mark: dict[str, tuple[int, int]] = {}
        self._fresh_at: float | None = None  # when the last metric poll that MLflow answered began
        self._stale: ev.MetricsStale | None = None  # MLflow stopped answering, until it answers again
        self._poll_task: asyncio.Task[bool] | None = None  # the poll under way, if any
        self._started = 0.0
        self._server: LocalTrackingServer | None = None  # serves the local store to a remote job
        self._server_task: asyncio.Task[None] | None = None
        self._interruption = ""  # a spot interruption notice the runner reported
        self._ready_at: float | None = None
        self._hourly_price: float | None = None
        self._cost_task: asyncio.Task[None] | None = None
        self._runner_state = ""  # the runner's last state as the views show it
        self._publish_at_end = False  # github.publish says so, and the check found a token and a repo
        self._read_only = ""  # why this run may not write to GitHub (a fork's pull request in CI)
        self._publishing = False
        self._settings_blocker: str | None = None  # what pull_request_blocker found in the settings
        self._dvc: Any = None  # the repository's DVC project (trainboard.backend.dvc.DvcProject) when DVC is in use
        self._dvc_remote = ""
        self._dvc_files: dict[str, Path] = {}  # pointer, lock, metrics and .gitignore files brought back
        self._record_unwritable = False  # a record write failed (said once; teardown goes on)

    # ------------------------------------------------------------------ API for views

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        return self.bus.subscribe(callback)

    def cancel(self, reason: str = "cancelled", failed: bool = False) -> bool:
        """Stop the run and tear down. Returns False if it was already stopping.

        ``failed``: the run is stopped because something broke (a view crashed): it ends
        as an error (exit 3), not as an interruption.
        """
        if self._cancel_reason or self._task is None or self._task.done():
            return False
        self._cancel_reason = reason
        self._cancel_failed = failed
        self._task.cancel()
        return True

    @property
    def can_detach(self) -> bool:
        """Whether the training job is running and can be left (see :attr:`detach_blocker`)."""
        return not self.detach_blocker

    @property
    def detach_blocker(self) -> str:
        """Why the session cannot detach now; "" when it can."""
        if self._job is None or self._job.name != "job" or self._job_exit is not None:
            return "only while the job trains: before that, and after, stop instead"
        if self._server is not None:
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
        self._detaching = True
        if not self.cancel("detached"):
            self._detaching = False
            return False
        return True


    @classmethod
    def attach(cls, record: RunRecord, root: Path) -> Session:
        """A session for a recorded run: a job still running is followed to its end
        (then collected, compared and reported); a finished run is shown as it ended.

        The record keeps the config's secrets masked: they are read back from the config
        file, and from the running job's environment once the runner answers (_attached)."""
        from trainboard.backend.store import recorded_config

        raw = recorded_config(record)
        loaded = LoadedConfig(
            config=RunConfig.model_validate(raw),
            path=Path(record.get("config_path") or "config"),
            overrides=tuple(record.get("overrides") or ()),
            raw=raw,
        )
        session = cls(loaded, root=root, run_id=record.run_id)
        session._attach_to = record
        return session

    @property
    def run_dir(self) -> Path:
        return self.store.runs / self.run_id

    async def wait_finished(self) -> None:
        """Return once :meth:`run` has returned, teardown included (at once if it never started)."""
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            await asyncio.wait({self._task})

    # ------------------------------------------------------------------ the run

    async def run(self) -> ExitCode:
        self._task = asyncio.current_task()
        self._started = time.time()
        outcome = ExitCode.INFRA_ERROR
        failed_stage: Stage | None = None
        if self._attach_to is not None and self._attach_to.get("status") not in ("running", "detached"):
            return self._replay(self._attach_to)
        release_http = limit_http_client()  # MLflow calls of a few seconds each, not minutes
        try:
            outcome = await (self._attached(self._attach_to) if self._attach_to else self._stages())
        except asyncio.CancelledError:
            if self._detaching:
                outcome = ExitCode.DETACHED
                self._publish(ev.Notice(f"detached: the job runs on; `trainboard attach {self.run_id}` returns"))
            elif self._cancel_failed:
                outcome, failed_stage = ExitCode.INFRA_ERROR, self._current_stage()
                self._error(failed_stage, f"{self._cancel_reason}: tearing down")
            else:
                outcome = ExitCode.INTERRUPTED
                failed_stage = self._current_stage()
                self._publish(ev.Notice(f"{self._cancel_reason or 'cancelled'}: tearing down"))
        except ConfigError as exc:
            outcome, failed_stage = ExitCode.CONFIG_ERROR, self._current_stage()
            self._error(failed_stage, str(exc))
        except JobFailed as exc:
            outcome, failed_stage = ExitCode.JOB_FAILED, exc.stage or self._current_stage()
            self._error(failed_stage, str(exc))
        except (RunnerError, TrackingError, OSError) as exc:
            outcome, failed_stage = ExitCode.INFRA_ERROR, self._current_stage()
            self._error(failed_stage, f"{type(exc).__name__}: {exc}")
        except PublishError as exc:
            outcome, failed_stage = ExitCode.INFRA_ERROR, self._current_stage()
            self._error(failed_stage, f"pull request: {exc}")
        except Exception as exc:  # a fault nothing above names (a bug): exit 3, never 0; teardown still runs
            outcome, failed_stage = ExitCode.INFRA_ERROR, self._current_stage()
            self._crashed(failed_stage, exc)
        finally:
            if self.bus.failure is not None and outcome in (ExitCode.OK, ExitCode.GATE_FAILED):
                outcome = ExitCode.INFRA_ERROR
                self._crashed(self._current_stage(), self.bus.failure, what="a view failed")
            if failed_stage is not None:
                try:
                    self._end_stage(failed_stage, StageState.FAILED)
                except Exception:  # nothing before teardown may keep it from running
                    pass
            # Teardown always finishes: a second cancel (a view closing, the
            # event loop shutting down) must not cut it short.
            teardown = asyncio.ensure_future(self._teardown(outcome))
            while not teardown.done():
                try:
                    await asyncio.shield(teardown)
                except asyncio.CancelledError:
                    continue
                except Exception as exc:  # teardown's own bug: said, kept, and never exit 0
                    outcome = ExitCode.INFRA_ERROR if outcome is ExitCode.OK else outcome
                    self._crashed(Stage.TEARDOWN, exc, what="teardown failed")
            if self.bus.failure is not None and outcome in (ExitCode.OK, ExitCode.GATE_FAILED):
                outcome = ExitCode.INFRA_ERROR  # a view failed while the run ended
            release_http()
        return outcome

    def _crashed(self, stage: Stage | None, exc: BaseException, what: str = "unexpected error") -> None:
        """An exception nothing expected: one line on the views, the masked traceback in the run folder."""
        from trainboard.backend.crash import TRACEBACK_FILE, crash_file, one_line, save_traceback

        files = [self.run_dir / TRACEBACK_FILE] if self.record is not None else []
        path = save_traceback(exc, [*files, crash_file(self.store.root / "crashes")], self.redact)
        where = f"traceback in {path}" if path else "the traceback could not be saved"
        try:
            self._error(stage, f"{what}: {one_line(exc)} ({where})")
        except Exception:
            pass

    async def _stages(self) -> ExitCode:
        cfg = self.config
        async with self._stage(Stage.CHECK):
            mlflow_import = prefetch()
            self.git = git_state(self.root)
            if not self.git.is_git:
                raise ConfigError(
                    f"{self.root} is not inside a git repository",
                    file=str(self.loaded.path),
                    fix="run trainboard from a git checkout (`git init` and commit your code): it syncs "
                    "the current commit plus uncommitted changes, and compares branches",
                )
            if not (self.root / cfg.job.workdir).is_dir():
                raise self.loaded.error(
                    "job.workdir",
                    f"folder {cfg.job.workdir!r} does not exist in {self.root}",
                    fix="name a folder of the repository, relative to its root",
                )
            self._check_publishing()
            self._check_dvc()
            uri = resolve_uri(cfg.mlflow.tracking_uri, self.root)
            problem = await probe(uri)  # a tracking server that does not answer: said now, in seconds
            if problem:
                raise TrackingError(str(self.loaded.error(
                    "mlflow.tracking_uri", f"no MLflow tracking server answers at {display_uri(uri)}: {problem}",
                    fix="start the tracking server, or point mlflow.tracking_uri at one that runs "
                        "(or use the local store, sqlite:///.trainboard/mlflow.db); nothing was started")))
            self.tracking = Tracking(uri, cfg.mlflow.experiment, self.root / ".trainboard" / "mlartifacts")
            self.record = self.store.create(
                self.run_id,
                redact=self.redact.data,  # the config and overrides are kept masked
                name=cfg.name,
                config_path=str(self.loaded.path.resolve()),  # attach reads the secrets back from it
                overrides=list(self.loaded.overrides),
                config=self.loaded.raw,
                branch=self.git.branch,
                commit=self.git.commit,
                dirty=self.git.dirty,
                runner={"kind": cfg.runner.kind},
                mlflow={"tracking_uri": uri, "experiment": cfg.mlflow.experiment, "run_id": ""},
                status="running",
                stages={},
                trainboard_pid=os.getpid(),
            )
            self._publish(
                ev.RunStarted(
                    run_id=self.run_id,
                    branch=self.git.branch,
                    commit=self.git.commit,
                    dirty=self.git.dirty,
                    runner_kind=cfg.runner.kind,
                    config_path=str(self.loaded.path),
                    run_dir=str(self.run_dir),
                )
            )
            # MLflow's import and first store access take seconds: the run is
            # created while the runner is provisioned, synced and set up.
            self._tracking_task = asyncio.create_task(self._open_tracking(mlflow_import))
            if needs_forwarding(uri, cfg.runner.kind):
                # A remote job cannot open the local store: serve it here, forward it there.
                self._server = LocalTrackingServer(uri, self.root / ".trainboard" / "mlartifacts")
                self._server_task = asyncio.create_task(self._server.start())

        async with self._stage(Stage.PROVISION):
            self._publish(ev.RunnerChanged(state="provisioning", kind=cfg.runner.kind))
            self.runner = make_runner(cfg.runner, self.run_dir, self.run_id)
            self.runner.notify = self._runner_event
            try:
                host = await self.runner.provision()
            finally:  # what was created so far, for teardown, attach and reap
                self.record.update(runner={**self.record.get("runner", {}), "state": self.runner.state()})
            self._runner_ready(host)

        async with self._stage(Stage.SYNC) as note:
            files = await asyncio.to_thread(files_to_sync, self.git)
            params = yaml.safe_dump(cfg.params, sort_keys=False).encode()
            params_path = str(Path(cfg.job.workdir) / "params.yaml")
            extra = {params_path: params}
            synced = len(files)  # the config file among them, masked on its way (see _mask_config_copy)
            files, extra = self._mask_config_copy(files, extra)
            await self.runner.sync(self.root, files, extra)
            note(f"{synced} files + params.yaml")
            setup = list(cfg.job.setup)
            if self._dvc is not None:  # after the user's setup, which may be what installs dvc
                from trainboard.backend import dvc

                setup += dvc.dvc_prepare_commands(cfg.job.workdir)
            if setup:
                self._publish(ev.RunnerChanged(state="setting up", kind=cfg.runner.kind))
                handle = await self._start(self._spec("setup", tuple(setup)))
                code = await self._follow(handle, "setup")
                if code != 0:
                    raise JobFailed(f"setup failed with exit code {code}: see setup.log", code)
            await self._tracking_task  # the job needs the MLflow run's id

        async with self._stage(Stage.TRAIN):
            self._publish(ev.RunnerChanged(state="training", kind=cfg.runner.kind))
            env = {
                "MLFLOW_TRACKING_URI": self.tracking.tracking_uri,
                "MLFLOW_RUN_ID": self.mlflow_run_id,
                "MLFLOW_EXPERIMENT_NAME": cfg.mlflow.experiment,
                "TRAINBOARD_RUN_ID": self.run_id,
            }
            env.update(await self._remote_tracking_env())
            handle = await self._start(self._spec("job", (cfg.job.command,), env))
            code = await self._train(handle)
        return await self._finish(code)

    # ------------------------------------------------------------------ DVC

    def _check_dvc(self) -> None:
        """Before anything starts: the repository's dvc.yaml, the outputs and the remote make sense."""
        from trainboard.backend import dvc

        cfg = self.config
        try:
            project = dvc.scan_project(self.root)
        except dvc.DvcError as exc:
            raise ConfigError(f"dvc.yaml: {exc}", file=str(self.root / "dvc.yaml"),
                              fix="fix the dvc.yaml (`dvc status` shows what DVC thinks of it)") from None
        # A DVC project: a .dvc/ at the root, or a dvc.yaml where the job runs. A dvc.yaml
        # elsewhere in a repository without .dvc/ (an example in a subfolder) is not this run's.
        here = {"dvc.yaml", (Path(cfg.job.workdir) / "dvc.yaml").as_posix()}
        if not (cfg.dvc.outputs or project.has_dvc_dir or here & set(project.dvc_yamls)):
            return
        try:
            remote = dvc.check_remote(cfg.dvc.remote or dvc.default_remote(self.root))
            for output in cfg.dvc.outputs:
                dvc.normalize_path((Path(cfg.job.workdir) / output).as_posix())
        except dvc.DvcError as exc:
            raise self.loaded.error("dvc", str(exc), fix="see the dvc section of sample_params.yaml") from None
        if dvc.is_local_remote(remote) and cfg.runner.kind != "local" and cfg.dvc.outputs:
            raise self.loaded.error("dvc.remote", f"a folder ({remote}) cannot be reached from a {cfg.runner.kind} "
                                    "runner: it pushes the outputs itself",
                                    fix="use a remote both reach, e.g. dvc.remote: s3://bucket/prefix")
        self._dvc, self._dvc_remote = project, remote

    def _dvc_outputs(self) -> list[str]:
        """dvc.outputs as repository paths (the config names them from job.workdir)."""
        return [(Path(self.config.job.workdir) / o).as_posix().rstrip("/") for o in self.config.dvc.outputs]

    async def _dvc_collect(self, code: int) -> str:
        """After a successful job: push the outputs from the runner, bring the pointer, lock
        and metrics files back into the checkout, and read the metrics files. A note."""
        from trainboard.backend import dvc

        assert self.runner is not None and self.record is not None
        project, cfg = self._dvc, self.config
        if code != 0:
            return ""
        commands = dvc.dvc_output_commands(self._dvc_outputs(), self._dvc_remote, stage_outs=project.stage_outs,
                                           workdir=cfg.job.workdir, endpoint_url=cfg.dvc.endpoint_url or None,
                                           prepare=False)
        note = ""
        if commands:
            env = dict(dvc.DVC_ENV)
            role = getattr(cfg.runner, "instance_profile", None)  # an ec2 instance with its own role
            if cfg.runner.kind != "local" and not dvc.is_local_remote(self._dvc_remote) and not role:
                env.update(dvc.aws_env(os.environ))  # the runner pushes to S3 itself, with these keys
            handle = await self._start(self._spec("dvc", tuple(commands), env))
            if await self._follow(handle, "dvc") != 0:
                raise JobFailed("pushing the outputs with DVC failed: see dvc.log", None, stage=Stage.COLLECT)
            note = f", {len(dvc.pushed_outputs(self._dvc_outputs(), project.stage_outs))} pushed with DVC"
        back = dvc.dvc_return_files(self._dvc_outputs(), project.dvc_yamls, project.metrics_files,
                                    stage_outs=project.stage_outs)
        for rel in back:
            if await self.runner.fetch(rel, self.root / rel):
                self._dvc_files[rel] = self.root / rel
        for rel in dvc.ensure_gitignored(self.root, dvc.pushed_outputs(self._dvc_outputs(), project.stage_outs)):
            self._dvc_files[rel] = self.root / rel
        self.record.update(dvc_files=sorted(self._dvc_files))
        values, problems = dvc.collect_metrics(self.root, project.metrics_files)
        for problem in problems:
            self._publish(ev.Notice(f"DVC metrics: {problem}"))
        step = max((p.step for p in self.points), default=0)
        now = int(time.time() * 1000)
        fresh = [ev.MetricPoint(k, v, step, now) for k, v in sorted(values.items()) if k not in self.latest]
        self._accept(fresh)  # MLflow's values win where both have a key
        return note

    # ------------------------------------------------------------------ the pull request

    def _check_publishing(self) -> None:
        """Before anything starts: can this run publish at its end, as github.publish asks?"""
        if not publishes_at_the_end(self.config):
            return
        assert self.git is not None
        if on_base := base_branch_blocker(self.config, self.git.branch):  # it records the baseline instead
            self._publish(ev.Notice(f"no pull request for this run: {on_base}"))
            return
        if reason := read_only_reason():  # a fork's pull request: nothing is written, the verdict is the exit
            self._read_only = reason
            return
        problem = pr_blocker(self.config, self.root)
        if not problem:
            self._publish_at_end = True
        elif self.config.github.publish == "always":
            raise self.loaded.error("github.publish", f"the pull request cannot be published: {problem}",
                                    fix="set GITHUB_TOKEN and github.repo (or a GitHub remote), "
                                        "or set github.publish: ci")
        else:
            self._publish(ev.Notice(f"no pull request for this run: {problem}"))

    @property
    def pull_request_blocker(self) -> str:
        """Why the finished run's pull request cannot be opened now; "" when it can."""
        if self._publishing:
            return "the pull request is being published"
        if self.record is None or self.record.get("status") not in ("succeeded", "gate-failed"):
            return "the pull request opens once the run has finished with a result"
        if self._settings_blocker is None:  # token and repository: asked of git once, not on every redraw
            self._settings_blocker = (base_branch_blocker(self.config, str(self.record.get("branch", "")))
                                      or pr_blocker(self.config, self.root))
        return self._settings_blocker

    async def open_pull_request(self) -> ev.PullRequestOpened | None:
        """Open or update the finished run's pull request (the dashboard's p); errors become events."""
        if self.pull_request_blocker:
            self._publish(ev.Notice(f"no pull request: {self.pull_request_blocker}"))
            return None
        try:
            opened = await self._open_pull_request()
            if opened is None:
                self._tell_read_only(self._read_only)
            return opened
        except PublishError as exc:
            self._error(Stage.REPORT, f"pull request: {exc}")
            return None

    def _tell_read_only(self, reason: str) -> None:
        """A run that may not write to GitHub says why, here and on the CI step summary."""
        from trainboard.backend import ci

        self._publish(ev.Notice(f"no comment or commit status from this run: {reason}"))
        ci.append_read_only_summary(reason)

    async def _open_pull_request(self) -> ev.PullRequestOpened | None:
        """Publish; None when the token turned out read-only (nothing was written: said so)."""
        assert self.record is not None and self.git is not None
        from trainboard.backend.github import RunInfo
        from trainboard.backend.publish import publish

        stale = self._stale is not None
        status = "stale metrics" if stale else str(self.record.get("status") or "")
        if self.comparison is not None and not stale and status not in ("failed", "cancelled"):
            status = "succeeded" if self.comparison.passed else "gate-failed"
        run = RunInfo(self.run_id, self.git.branch, self.git.commit, self.config.name,
                      self.comparison.verdict if self.comparison else str(self.record.get("verdict", "")),
                      comparison=self.comparison, status=status)
        self._publishing = True
        try:
            result = await asyncio.to_thread(publish, self.run_dir, self.root, self.config, run, self._dvc_files,
                                             self.redact)
        except ReadOnlyToken as exc:
            self._read_only = str(exc)
            return None
        finally:
            self._publishing = False
        for line in result.notes:
            self._publish(ev.Notice(f"pull request: {line}"))
        if result.statuses:
            self._publish(ev.Notice(f"commit statuses: {', '.join(result.statuses)}"))
        for path in result.missing:
            self._publish(ev.Notice(f"pull request: output {path} was not found, so not committed"))
        for path in result.withheld:
            self._publish(ev.Notice(f"pull request: {path} holds a secret, so it was not pushed"))
        opened = ev.PullRequestOpened(result.pr_number, result.pr_url, result.comment_url, result.created_pr,
                                      result.branch)
        self.record.update(pull_request={"number": result.pr_number, "url": result.pr_url,
                                         "comment_url": result.comment_url, "branch": result.branch})
        self._publish(opened)
        return opened

    def _runner_event(self, event: ev.Event) -> None:
        """What a runner reports: once ready, its "ready" after a reconnect means back to
        what it was doing (training, setting up), which the views keep showing."""
        if isinstance(event, ev.RunnerChanged) and event.state == "ready" and self._ready_at is not None:
            event = dataclasses.replace(event, state=self._runner_state, at=time.time())
        self._publish(event)

    def _runner_ready(self, host: Host, at: float | None = None) -> None:
        assert self.runner is not None and self.record is not None
        self._ready_at = at or time.time()
        details = dict(host.details)
        try:
            self._hourly_price = float(details["hourly_price"]) if details.get("hourly_price") else None
        except ValueError:
            self._hourly_price = None
        self.record.update(runner={"kind": host.kind, "address": host.address, "workspace": host.workspace,
                                   "details": details, "ready_at": self._ready_at, "state": self.runner.state(),
                                   **({"hourly_price": self._hourly_price} if self._hourly_price is not None else {})})
        self._publish(ev.RunnerChanged(state="ready", kind=host.kind, address=host.address, details=host.details,
                                       at=self._ready_at))
        if self._hourly_price is not None and self._cost_task is None:
            self._cost_task = asyncio.create_task(self._tick_cost())

    def _cost(self, final: bool = False) -> ev.CostUpdated | None:
        if self._hourly_price is None or self._ready_at is None:
            return None
        uptime = max(0.0, time.time() - self._ready_at)
        return ev.CostUpdated(self._hourly_price, uptime, self._hourly_price * uptime / 3600, final)

    async def _tick_cost(self) -> None:
        while (cost := self._cost()) is not None:
            self._publish(cost)
            await asyncio.sleep(COST_INTERVAL)

    async def _remote_tracking_env(self) -> dict[str, str]:
        """How a job on a remote runner reaches MLflow: the forwarded local server, or the
        configured server's URI with this machine's MLflow credentials (never printed)."""
        assert self.runner is not None
        if self._server is not None and self._server_task is not None:
            await self._server_task
            port = await self.runner.forward(self._server.port)
            uri = f"http://127.0.0.1:{port}"
            self._save_record(job_tracking_uri=uri)  # attach checks the forward it restores against it
            return {"MLFLOW_TRACKING_URI": uri}
        if self.runner.kind == "local":
            return {}
        return {name: value for name, value in os.environ.items()
                if name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI"}

    async def _train(self, handle: JobHandle) -> int:
        """Follow the job's log and poll its metrics until it exits (inside TRAIN)."""
        cfg = self.config
        assert self.runner is not None and self.record is not None
        poller = asyncio.create_task(self._poll_metrics())
        threading.Thread(target=_import_matplotlib, name="matplotlib-import", daemon=True).start()
        try:
            timeout = None  # counted from the job's start: an attach gets what is left
            if cfg.job.timeout_minutes:
                timeout = max(0.0, cfg.job.timeout_minutes * 60 - (time.time() - handle.started_at))
            try:
                code = await asyncio.wait_for(self._follow(handle, "job"), timeout)
            except TimeoutError:
                await self.runner.stop(handle)
                limit = f"job.timeout_minutes ({cfg.job.timeout_minutes:g})"
                raise JobFailed(f"the job ran past {limit}", None) from None
        finally:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller
        self._job_exit = code
        self._job_seconds = time.time() - handle.started_at
        self.record.update(job_exit_code=code, job_seconds=self._job_seconds)
        self._publish(ev.JobFinished(exit_code=code, duration=self._job_seconds))
        if code != 0:
            self._end_stage(Stage.TRAIN, StageState.FAILED, f"job exited {code}")
        return code

    async def _finish(self, code: int) -> ExitCode:
        """Collect, compare and report once the job has exited with ``code``."""
        cfg = self.config
        assert self.runner is not None and self.tracking is not None and self.record is not None
        async with self._stage(Stage.COLLECT) as note:
            await self._final_metrics()  # points logged after the last poll, and those the polls missed
            await self._check_deliveries()
            status = "FINISHED" if code == 0 else "FAILED"
            try:
                await self.tracking.call(self.tracking.finish, self.mlflow_run_id, status, timeout=POLL_TIMEOUT)
            except TrackingError as exc:  # the run goes on to its verdict, said to be on stale metrics
                self._error(Stage.COLLECT, f"the MLflow run could not be marked {status} (a later run will not "
                                           f"take it as its baseline): {why_unreachable(exc)}")
            got = []
            for rel in cfg.job.outputs:
                src = str(Path(cfg.job.workdir) / rel)
                if await self.runner.fetch(src, self.run_dir / Path(rel).name):
                    got.append(rel)
            missing = sorted(set(cfg.job.outputs) - set(got))
            pushed = await self._dvc_collect(code) if self._dvc is not None else ""
            note(f"{len(got)} outputs" + (f", missing: {', '.join(missing)}" if missing else "") + pushed)

        if code != 0:
            raise JobFailed(f"the job exited with code {code}", code, stage=Stage.TRAIN)

        async with self._stage(Stage.COMPARE) as note:
            self.comparison = self._compare(final=True)
            note(self.comparison.verdict)
            if self._stale is not None:  # never a verdict on stale values without saying so
                since = time.strftime("%H:%M:%S", time.localtime(self._stale.since))
                self._error(Stage.COMPARE, f"the verdict is computed on stale metrics: MLflow has not answered "
                                           f"since {since} ({self._stale.reason}); points logged after that are "
                                           "not in it")
                note(f"{self.comparison.verdict} (on stale metrics)")
                self._save_record(verdict_on_stale_metrics=True)
            self._publish(ev.ComparisonReady(self.comparison))
            self.record.update(verdict=self.comparison.verdict, gates_passed=self.comparison.passed,
                               comparison=self.comparison.to_dict())

        stale = self._stale is not None
        async with self._stage(Stage.REPORT) as note:
            status = "succeeded" if self.comparison.passed else "gate-failed"
            path = await self._write_report(f"error: {status} on stale metrics" if stale else status)
            self._publish(ev.ReportWritten(str(path)))
            if not stale:  # a base-branch run's result: the baseline later runs find in git notes
                await self._record_baseline()
            if self._publish_at_end:
                opened = await self._open_pull_request()
                if opened is not None:
                    note(f"pull request #{opened.number} {'opened' if opened.created else 'updated'}")
            if self._read_only:
                self._tell_read_only(self._read_only)
                note("read-only: nothing posted to GitHub")

        if stale:  # a verdict on values that may not be the last is no pass (nor a fail) CI can act on
            return ExitCode.INFRA_ERROR
        return ExitCode.OK if self.comparison.passed else ExitCode.GATE_FAILED

    async def _attached(self, record: RunRecord) -> ExitCode:
        """Follow a recorded job that was left running, then finish the run as usual."""
        self._restore(record)
        # The points the first session saw are on disk: show them, and poll only for newer ones.
        known = read_metric_history(self.run_dir)
        self._cursor.newer(known)
        job = record.get("job")
        if not job:
            raise RunnerError(f"run {record.run_id} has no training job to attach to (it stopped before training)")
        kind = self.config.runner.kind
        runner = make_runner(self.config.runner, self.run_dir, self.run_id)
        runner.notify = self._runner_event
        recorded = record.get("runner") or {}
        self._publish(ev.RunnerChanged(state="reconnecting", kind=kind, address=recorded.get("address", "")))
        # Not self.runner until it answers: a runner we cannot reach is left as it is
        # (its own watchdog still guards it), never torn down by a failed attach.
        host = await runner.reattach(recorded.get("state") or {})
        self.runner = runner
        self._runner_ready(host, at=float(recorded.get("ready_at") or time.time()))
        await self._restore_forward(record)
        handle = JobHandle(name="job", pid=int(job["pid"]), log_path=job["log"], exit_path=job["exit_path"],
                           started_at=float(job["started_at"]))
        self._job = handle
        await self._read_back_secrets(runner, handle)
        record.update(status="running", trainboard_pid=os.getpid())
        if self.tracking is not None:
            try:
                self.baseline = await self.tracking.call(
                    self.tracking.baseline, self.config.compare.base, self.mlflow_run_id, list(self.config.metrics)
                )
            except TrackingError as exc:
                self._publish(ev.Notice(f"baseline unavailable: {exc}"))
            if self.baseline is None:  # as a fresh run looks it up: the base branch's git notes
                self.baseline = await self._notes_baseline(self._notes_lookup())
            self._publish_baseline()
        self._accept(known, persist=False)
        began = ((record.get("stages") or {}).get(Stage.TRAIN.value) or {}).get("started_at")
        async with self._stage(Stage.TRAIN, began=began):
            self._publish(ev.RunnerChanged(state="training", kind=kind))
            code = await self._train(handle)
        return await self._finish(code)

    async def _restore_forward(self, record: RunRecord) -> None:
        """After an attach: what the job reaches MLflow through, when this machine served its
        store (a local one, a remote runner): the server again, and its forward to the runner.

        A job whose trainboard died (kill -9) meanwhile waits at the runner's relay: its MLflow
        calls get through once this has run.
        """
        assert self.runner is not None
        if self.tracking is None or not needs_forwarding(self.tracking.tracking_uri, self.config.runner.kind):
            return
        self._server = LocalTrackingServer(self.tracking.tracking_uri, self.root / ".trainboard" / "mlartifacts")
        self._server_task = asyncio.create_task(self._server.start())
        uri = (await self._remote_tracking_env())["MLFLOW_TRACKING_URI"]
        expected = record.get("job_tracking_uri")
        if expected and expected != uri:
            self._error(Stage.TRAIN, f"the job logs to MLflow at {expected} on the runner, but its relay now "
                                     f"listens at {uri}: its metrics from now on cannot reach this machine")
        self._publish(ev.Notice(f"serving the MLflow store to the job again ({uri} on the runner)"))

    async def _check_deliveries(self) -> None:
        """A runner that relays the job's MLflow calls to this machine (the ssh runner's forward)
        tells whether some never got through; then the metrics are stale, as when MLflow is away."""
        check = getattr(self.runner, "undelivered_metrics", None)
        if check is None or self._server is None or self._stale is not None:
            return
        try:
            since = await check()
        except RunnerError as exc:
            self._publish(ev.Notice(f"could not ask the runner whether the job's metrics all arrived: {exc}"))
            return
        if since is not None:
            self._stale = ev.MetricsStale(since, "some of the job's MLflow calls never reached this machine "
                                                 "(the SSH forward was away longer than the relay waits)")
            self._save_record(metrics_stale={"since": since, "reason": self._stale.reason})
            self._publish(self._stale)

    def _replay(self, record: RunRecord) -> ExitCode:
        """Show a finished run as it ended: stages, log tail, metric history, comparison."""
        from trainboard.backend.report import tail_lines

        self._restore(record)
        self._publish(ev.RunnerChanged(state="stopped", kind=self.config.runner.kind))
        for source in ("setup", "job"):
            lines = tail_lines(self.run_dir / f"{source}.log", REPLAY_LINES)
            if lines:
                size = (self.run_dir / f"{source}.log").stat().st_size
                self._publish(ev.LogLines(source, tuple(self.redact.lines(lines)), size))
        self._accept(read_metric_history(self.run_dir), persist=False)
        comparison = record.get("comparison")
        if comparison:
            self.comparison = Comparison.from_dict(comparison)
            before = tuple((r.key, r.before) for r in self.comparison.rows if r.before is not None)
            self._publish(ev.BaselineFound(self.comparison.base_branch, self.comparison.baseline_run_id, before))
            self._publish(ev.ComparisonReady(self.comparison))
        if record.get("job_exit_code") is not None:
            self._publish(ev.JobFinished(int(record.get("job_exit_code")), float(record.get("job_seconds") or 0)))
        report = self.run_dir / "report.md"
        if report.exists():
            self._publish(ev.ReportWritten(str(report)))
        outcome = ExitCode(int(record.get("exit_code", ExitCode.INFRA_ERROR)))
        self._publish(ev.RunFinished(int(outcome), str(record.get("status")), float(record.get("duration") or 0)))
        return outcome

    async def _read_back_secrets(self, runner: Runner, handle: JobHandle) -> None:
        """The job's environment, as the runner still has it (its secrets file, /proc), fills
        the ``***`` the record and the config file left, and its secrets join the redactor."""
        read = getattr(runner, "read_job_env", None)  # a runner that cannot tell has none
        if read is None:
            return
        try:
            env: dict[str, str] = await read(handle)
        except RunnerError as exc:
            self._publish(ev.Notice(f"the job's environment could not be read back ({exc}): "
                                    "its secrets are masked in the log only as far as the config file knows them"))
            return
        if not env:
            return
        raw = self.loaded.raw
        if MASK in json.dumps(raw.get("job", {}).get("env", {})):
            raw = unmask_config(raw, {"job": {"env": env}})
            with contextlib.suppress(ValueError):
                self.loaded = dataclasses.replace(self.loaded, config=RunConfig.model_validate(raw), raw=raw)
                self.config = self.loaded.config
        self.redact = self.redact.with_secrets(Redactor.from_env(env).secrets)
        if self.record is not None:
            self.record.redact = self.redact.data

    def _restore(self, record: RunRecord) -> None:
        """The state a recorded run had: git, tracking, its stages as they were."""
        self.record = record
        record.redact = self.redact.data
        self.git = GitState(root=self.root, branch=str(record.get("branch", "")), commit=str(record.get("commit", "")),
                            dirty=bool(record.get("dirty")), is_git=True)
        mlflow = record.get("mlflow") or {}
        if mlflow.get("tracking_uri"):
            self.tracking = Tracking(mlflow["tracking_uri"], mlflow.get("experiment", self.config.mlflow.experiment))
        self.mlflow_run_id = mlflow.get("run_id", "")
        self._started = float(record.get("created_at") or time.time())
        self._publish(ev.RunStarted(run_id=self.run_id, branch=self.git.branch, commit=self.git.commit,
                                    dirty=self.git.dirty, runner_kind=self.config.runner.kind,
                                    config_path=str(self.loaded.path), run_dir=str(self.run_dir),
                                    at=self._started))
        live = record.get("status") in ("running", "detached")
        for stage in STAGES:
            info = (record.get("stages") or {}).get(stage.value)
            if not info or info.get("state") == StageState.RUNNING.value or (live and stage is Stage.TEARDOWN):
                continue
            self._stage_started[stage] = info.get("started_at") or self._started
            self._ended.add(stage)
            self._publish(ev.StageChanged(stage, StageState(info["state"]), info.get("detail", ""),
                                          float(info.get("elapsed") or 0)))
        if self.mlflow_run_id and self.tracking is not None:
            self._publish(ev.TrackingReady(self.tracking.tracking_uri, self.tracking.experiment, self.mlflow_run_id))

    def _publish_baseline(self) -> None:
        base = self.baseline
        self._publish(
            ev.BaselineFound(
                branch=self.config.compare.base,
                mlflow_run_id=base.mlflow_run_id if base else "",
                metrics=tuple(sorted(base.metrics.items())) if base else (),
                label=base.label(self.config.compare.base) if base and base.source else "",
            )
        )

    # ------------------------------------------------------------------ pieces

    def _mask_config_copy(self, files: list[str], extra: dict[str, bytes]) -> tuple[list[str], dict[str, bytes]]:
        """The config file goes to the runner's workspace with its secrets masked (the job
        gets them in its environment): the synced file list without it, and its masked copy."""
        try:
            rel = self.loaded.path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return files, extra  # outside the repository: not synced
        if rel not in files or rel in extra:
            return files, extra
        try:
            text = self.loaded.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        return [f for f in files if f != rel], {**extra, rel: masked_config_file(text).encode()}

    def _spec(self, name: str, commands: tuple[str, ...], extra: dict[str, str] | None = None) -> JobSpec:
        env = job_http_env()  # the job's MLflow client keeps its long retries (trainboard's own are short)
        env.update(self.config.job.env)
        env.update(extra or {})
        return JobSpec(name=name, commands=commands, workdir=self.config.job.workdir, env=env)

    async def _start(self, spec: JobSpec) -> JobHandle:
        """Start a detached job and record it: teardown stops it, attach finds it."""
        assert self.runner is not None and self.record is not None
        handle = await self.runner.start(spec)
        self._job = handle
        self.record.update(**{spec.name: {"pid": handle.pid, "log": handle.log_path,
                                          "exit_path": handle.exit_path, "started_at": handle.started_at}})
        return handle

    async def _open_tracking(self, mlflow_import: Any) -> None:
        assert self.tracking is not None and self.git is not None and self.record is not None
        await in_thread(mlflow_import.join)  # daemon threads: none of them holds the process at exit
        tags = {
            RUN_TAG: self.run_id,
            BRANCH_TAG: self.git.branch,
            COMMIT_TAG: self.git.commit,
            PARAMS_HASH_TAG: self.config.params_hash(),
            "trainboard.dirty": str(self.git.dirty).lower(),
            "trainboard.runner": self.config.runner.kind,
        }
        # A fresh CI checkout's store has no run of the base branch: git notes may (see trainboard.backend.gitbaseline).
        # Fetched meanwhile for a local store; for a shared server only when it has no baseline.
        notes = self._notes_lookup() if not is_http(self.tracking.tracking_uri) else None
        self.baseline = await self.tracking.call(self.tracking.baseline, self.config.compare.base, None,
                                                 list(self.config.metrics))
        if self.baseline is None and self.config.compare.git_notes:
            self.baseline = await self._notes_baseline(notes or self._notes_lookup())
        elif notes is not None:
            notes.cancel()
        if self.baseline is None and self._dvc is not None and self._dvc.metrics_files:
            # No MLflow run of the base branch yet: its committed metrics files (`dvc metrics diff`).
            from trainboard.backend import dvc

            self.baseline = await asyncio.to_thread(dvc.base_branch_baseline, self.root, self.config.compare.base,
                                                    list(self._dvc.metrics_files))
            if self.baseline is not None:
                self.baseline = dataclasses.replace(self.baseline, source="committed metrics, DVC")
        self.mlflow_run_id = await self.tracking.call(
            self.tracking.create_run, f"{self.config.name}-{self.run_id}", tags,
            mask_config(self.config.params)  # a secret-named param is logged as ***
        )
        self.record.update(mlflow={**self.record.get("mlflow", {}), "run_id": self.mlflow_run_id,
                                   "baseline_run_id": self.baseline.mlflow_run_id if self.baseline else "",
                                   "baseline_source": (self.baseline.source or "mlflow") if self.baseline else ""})
        self._publish(ev.TrackingReady(self.tracking.tracking_uri, self.tracking.experiment, self.mlflow_run_id))
        self._publish_baseline()

    def _notes_lookup(self) -> asyncio.Task[Any] | None:
        """Fetch the remote's git notes and look up this config's entry, in a thread (None: notes are off)."""
        from trainboard.backend import gitbaseline as gb

        if not self.config.compare.git_notes or self.git is None or not self.git.commit:
            return None
        remote = gb.pick_remote(self.root, self.config.github.remote, self.git.branch)
        identity = gb.identity_for(self.config, self.loaded.path, self.root)
        return asyncio.ensure_future(in_thread(gb.lookup, self.root, self.config.compare.base, identity, remote,
                                               list(self.config.metrics)))

    async def _notes_baseline(self, lookup: asyncio.Task[Any] | None) -> Baseline | None:
        """The git-notes entry a lookup found (a fetch that failed is a Notice: offline is fine)."""
        from trainboard.backend.gitbaseline import NOTES_REF, NotesError

        if lookup is None:
            return None
        try:
            found, problem = await lookup
        except (NotesError, OSError, ValueError) as exc:  # never more than a notice: MLflow and DVC remain
            self._publish(ev.Notice(f"git notes: the baseline could not be looked up: {exc}"))
            return None
        if problem:
            self._publish(ev.Notice(f"git notes: could not fetch {NOTES_REF} ({problem}); using what this "
                                    "checkout has"))
        return found.baseline if found is not None else None

    async def _record_baseline(self) -> None:
        """A base-branch run's result, recorded in git notes and pushed, for later runs to compare with."""
        from trainboard.backend import gitbaseline as gb

        assert self.git is not None and self.comparison is not None and self.record is not None
        cfg = self.config
        if not cfg.compare.git_notes or not base_branch_blocker(cfg, self.git.branch) or not self.git.commit:
            return  # only a run of the base branch records (not a fork's pull request from its own main)
        if self.git.dirty:
            self._publish(ev.Notice("git notes: not recorded as the baseline: the checkout has uncommitted "
                                    "changes, so the result is not that of its commit"))
            return
        remote = gb.pick_remote(self.root, cfg.github.remote, self.git.branch)
        entry = gb.make_entry(
            gb.identity_for(cfg, self.loaded.path, self.root), branch=self.git.branch, commit=self.git.commit,
            status="succeeded" if self.comparison.passed else "gate-failed", verdict=self.comparison.verdict,
            metrics={k: v for k, v in self.latest.items() if k in cfg.metrics},
            params=flatten(mask_config(cfg.params)), mlflow_run_id=self.mlflow_run_id,
            trainboard_run_id=self.run_id, overrides=self.redact.lines(list(self.loaded.overrides)))
        try:
            first = not await in_thread(gb.has_notes, self.root)
            done = await in_thread(gb.record, self.root, entry, remote, self.redact)
        except (gb.NotesError, OSError, ValueError) as exc:  # a notice, never a failed run
            self._publish(ev.Notice(f"git notes: the baseline was not recorded: {exc}"))
            return
        where = f"{gb.NOTES_REF} on {self.git.commit[:7]}"
        if done.pushed_to:
            self._publish(ev.Notice(f"baseline recorded in {where}, pushed to {done.pushed_to!r}"))
        elif done.problem:
            self._publish(ev.Notice(f"baseline recorded in {where} here only: {done.problem}"))
        elif first:  # said once: the first note of this repository
            self._publish(ev.Notice(f"baseline recorded in {where} in this repository only: no git remote "
                                    f"{cfg.github.remote!r} (github.remote) to push it to"))
        self.record.update(baseline_note={"commit": self.git.commit, "pushed_to": done.pushed_to,
                                          "problem": done.problem})

    async def _follow(self, handle: JobHandle, source: str) -> int:
        """Stream a job's log into LogLines events until it exits; its exit code.

        The lines, masked, also go to ``<run_dir>/<source>.log``: the log kept here
        (rewritten from the start, as the runner's log is read from its start).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / f"{source}.log", "w", encoding="utf-8", errors="replace") as kept:
            return await self._follow_into(handle, source, kept)

    def _emit(self, source: str, lines: list[str], offset: int, kept: Any) -> None:
        masked = self.redact.lines(lines)
        kept.write("\n".join(masked) + "\n")
        self._publish(ev.LogLines(source, tuple(masked), offset))

    async def _follow_into(self, handle: JobHandle, source: str, kept: Any) -> int:
        assert self.runner is not None
        splitter = LineSplitter()
        while True:
            chunk = await self.runner.tail(handle, splitter.read_pos, CHUNK_SIZE)
            if chunk:
                lines = splitter.feed(chunk)
                if lines:
                    self._emit(source, lines, splitter.offset, kept)
                if len(chunk) == CHUNK_SIZE:
                    await asyncio.sleep(0)  # let the views breathe, then read on
                    continue
            status = await self.runner.status(handle)
            if status.interruption and not self._interruption:
                self._interruption = status.interruption
                self._error(self._current_stage(), f"the runner is being interrupted: {status.interruption}")
            if not status.running:
                # The exit code is written after the log is closed: drain what is left.
                while chunk := await self.runner.tail(handle, splitter.read_pos, CHUNK_SIZE):
                    lines = splitter.feed(chunk)
                    if lines:
                        self._emit(source, lines, splitter.offset, kept)
                rest = splitter.flush()
                if rest:
                    self._emit(source, rest, splitter.offset, kept)
                if self._interruption:
                    if source == "job":
                        self._job_exit = status.exit_code
                        if self.record is not None:
                            self.record.update(job_exit_code=status.exit_code)
                    raise RunnerError(f"the {source} was stopped by an interruption of the runner "
                                      f"(exit code {status.exit_code}): {self._interruption}")
                if status.exit_code is None:
                    raise JobFailed(f"the {source} vanished without an exit code", None)
                return status.exit_code
            if not chunk:
                kept.flush()  # the full-log view reads it while the job runs
                await asyncio.sleep(TAIL_IDLE)

    async def _poll_metrics(self) -> None:
        """Poll the run's latest metrics; re-armed when the last poll has finished.

        A store that stops answering is said once (MetricsStale) and once when it is
        back (MetricsFresh); polling goes on meanwhile."""
        if self._fresh_at is None:
            self._fresh_at = time.time()
        while True:
            # A task of its own: when the job ends mid-poll, the poll still finishes (bounded)
            # and what it learns (points, or that MLflow does not answer) is not lost.
            self._poll_task = asyncio.ensure_future(self._poll_once())
            await asyncio.shield(self._poll_task)
            await asyncio.sleep(self.config.mlflow.poll_interval)

    async def _poll_once(self) -> bool:
        """One poll, bounded by POLL_TIMEOUT; False when MLflow did not answer."""
        assert self.tracking is not None
        began = time.time()
        try:
            points = await self.tracking.call(self.tracking.latest, self.mlflow_run_id, timeout=POLL_TIMEOUT)
        except TrackingError as exc:
            self._metrics_failed(exc)
            return False
        self._accept(self._cursor.newer(points))  # the cursor moves on an answer only: no point is lost
        self._metrics_answered(began)
        return True

    async def _final_metrics(self) -> None:
        """After the job: the points logged since the last poll, then those the polls
        missed. A store that does not answer gets a short grace, then the metrics stay stale."""
        interval = self.config.mlflow.poll_interval
        deadline = time.monotonic() + min(FINAL_READ_GRACE, max(1.0, 3 * interval))
        if self._poll_task is not None and not self._poll_task.done():
            await self._poll_task  # the poll the job's end interrupted
        # One more read (points logged since); a store that does not answer, until the grace is over.
        while not (self._stale is not None and time.monotonic() >= deadline):
            if await self._poll_once():
                break
            await asyncio.sleep(min(interval, 1.0))
        if self._stale is None:
            await self._reconcile_history()

    def _metrics_failed(self, exc: BaseException) -> None:
        if self._stale is not None:
            return  # said once per outage
        since = self._fresh_at if self._fresh_at is not None else time.time()
        self._stale = ev.MetricsStale(since, f"MLflow unreachable: {why_unreachable(exc)}")
        self._save_record(metrics_stale={"since": since, "reason": self._stale.reason})
        self._publish(self._stale)

    def _metrics_answered(self, began: float) -> None:
        self._fresh_at = began
        if self._stale is not None:
            stale, self._stale = self._stale, None
            self._save_record(metrics_stale=None)
            self._publish(ev.MetricsFresh(stale.since))

    async def _reconcile_history(self) -> None:
        """Points logged and superseded between two polls (or during an outage): read the
        followed metrics' history once, at the end, and publish what the polls missed."""
        assert self.tracking is not None
        keys = list(self.config.metrics)
        try:
            history = await self.tracking.call(self.tracking.history, self.mlflow_run_id, keys,
                                               timeout=POLL_TIMEOUT * max(1, len(keys)))
        except TrackingError as exc:
            self._metrics_failed(exc)
            return
        seen = {(p.key, p.step, p.timestamp) for p in self.points}
        missed = sorted((p for p in history if (p.key, p.step, p.timestamp) not in seen), key=lambda p: (p.step, p.key))
        self._accept(missed)

    def _accept(self, fresh: list[ev.MetricPoint], persist: bool = True) -> None:
        if not fresh:
            return
        if persist:
            write_metric_history(self.run_dir, fresh, append=True)
        self.points.extend(fresh)
        for point in fresh:  # late points (from the history) never replace newer ones
            mark = (point.step, point.timestamp)
            if mark >= self._latest_mark.get(point.key, (-(2**62), 0)):
                self._latest_mark[point.key] = mark
                self.latest[point.key] = point.value
        self._publish(ev.MetricPoints(tuple(fresh)))
        if self.baseline is not None or self.config.compare.gates:
            self._publish(ev.ComparisonReady(self._compare(final=False)))

    def _compare(self, final: bool) -> Comparison:
        base = self.baseline
        label = base.label(self.config.compare.base) if base else ""
        return compare(
            self.config,
            self.latest,
            base.metrics if base else None,
            baseline_run_id=(base.mlflow_run_id or f"git:{base.commit[:7]}") if base else "",
            baseline_label=label,
            final=final,
        )

    async def _write_report(self, status: str) -> Path:
        from trainboard.backend import report as rp

        assert self.record is not None and self.git is not None
        history = self.points  # complete for the followed metrics after _reconcile_history
        base_metrics = self.baseline.metrics if self.baseline else None
        plot = None
        if history:
            from trainboard.backend.plots import metrics_plot

            made = await asyncio.to_thread(
                metrics_plot, self.config, history, base_metrics, self.run_dir / "metrics.png"
            )
            plot = made.name if made else None
        cm = self.run_dir / "confusion_matrix.png"
        data = rp.ReportInput(
            name=self.config.name,
            run_id=self.run_id,
            branch=self.git.branch,
            commit=self.git.commit,
            dirty=self.git.dirty,
            runner=self.config.runner.kind,
            status=status,
            job_exit_code=self._job_exit,
            job_seconds=self._job_seconds,
            mlflow_run_id=self.mlflow_run_id,
            experiment=self.config.mlflow.experiment,
            comparison=self.comparison,
            params=self.config.params,
            baseline_params=self.baseline.params if self.baseline else None,
            plot=plot,
            confusion_matrix=cm.name if cm.exists() else None,
            log_tail=self.redact.lines(rp.tail_lines(self.run_dir / "job.log", self.config.report.log_lines)),
        )
        path = self.run_dir / "report.md"
        path.write_text(self.redact(rp.render(data)))  # its params table too
        self.record.update(report=str(path))
        return path

    async def _teardown(self, outcome: ExitCode) -> None:
        self._stage_started[Stage.TEARDOWN] = time.time()
        self._publish(ev.StageChanged(Stage.TEARDOWN, StageState.RUNNING))
        problems = []
        if self._tracking_task is not None and not self._tracking_task.done():
            self._tracking_task.cancel()
        if self._tracking_task is not None:
            with contextlib.suppress(BaseException):
                await self._tracking_task  # its thread's result, if any, is not needed now
        if self._cost_task is not None:
            self._cost_task.cancel()
        if self.runner is not None and outcome is ExitCode.DETACHED:
            try:
                await self.runner.detach()
            except Exception as exc:
                problems.append(f"leaving the runner: {exc}")
        elif self.runner is not None:
            if self._job is not None:
                try:
                    status = await self.runner.status(self._job)
                    if status.running:
                        self._publish(ev.Notice("stopping the job (SIGTERM, then SIGKILL)"))
                        await self.runner.stop(self._job)
                        final = await self.runner.status(self._job)
                        self._job_exit = final.exit_code
                except Exception as exc:  # teardown must go on whatever failed
                    orphan = getattr(self.config.runner, "orphan_timeout", 0)
                    left = (f"; the host's watchdog stops it once trainboard has said nothing for "
                            f"runner.orphan_timeout ({orphan:g} s)" if orphan else "")
                    problems.append(f"stopping the job: {exc}{left}")
            try:
                await self.runner.teardown()
                self._publish(ev.RunnerChanged(state="stopped", kind=self.runner.kind))
            except Exception as exc:
                problems.append(f"runner teardown: {exc}")
            finally:
                with contextlib.suppress(Exception):
                    if self.record is not None:
                        self.record.update(runner={**self.record.get("runner", {}), "state": self.runner.state()})
            cost = self._cost(final=True)
            if cost is not None:
                self._publish(cost)
                self._save_record(cost=round(cost.cost, 4))
        if self._server_task is not None and not self._server_task.done():
            self._server_task.cancel()
            with contextlib.suppress(BaseException):
                await self._server_task
        if self._server is not None:
            try:
                await self._server.stop()
            except Exception as exc:
                problems.append(f"stopping the local MLflow server: {exc}")
        if self.tracking is not None and self.mlflow_run_id and outcome in (
            ExitCode.INTERRUPTED,
            ExitCode.INFRA_ERROR,
            ExitCode.JOB_FAILED,
        ):
            mlflow_status = "KILLED" if outcome is ExitCode.INTERRUPTED else "FAILED"
            try:
                await self.tracking.call(self.tracking.finish, self.mlflow_run_id, mlflow_status, timeout=POLL_TIMEOUT)
            except Exception as exc:
                problems.append(f"marking the MLflow run {mlflow_status}: {exc}")
        if self.record is not None and outcome not in (ExitCode.OK, ExitCode.GATE_FAILED, ExitCode.DETACHED):
            try:
                path = await self._write_report(outcome.status)
                self._publish(ev.ReportWritten(str(path)))
            except Exception as exc:
                problems.append(f"writing the report: {exc}")
        for problem in problems:
            self._error(Stage.TEARDOWN, problem)
        self._end_stage(Stage.TEARDOWN, StageState.FAILED if problems else StageState.DONE)
        duration = time.time() - self._started
        self._save_record(
            status=outcome.status,
            exit_code=int(outcome),
            job_exit_code=self._job_exit,
            finished_at=time.time(),
            duration=duration,
        )
        if self.record is not None:
            self.record.release_reserve()
        self._publish(ev.RunFinished(outcome=int(outcome), status=outcome.status, duration=duration))

    # ------------------------------------------------------------------ stage bookkeeping

    @contextlib.asynccontextmanager
    async def _stage(self, stage: Stage, began: float | None = None) -> AsyncIterator[Callable[[str], None]]:
        detail = [""]
        self._stage_started[stage] = began or time.time()
        self._publish(ev.StageChanged(stage, StageState.RUNNING, at=self._stage_started[stage]))
        self._record_stage(stage, StageState.RUNNING)

        def note(text: str) -> None:
            detail[0] = text

        yield note
        self._end_stage(stage, StageState.DONE, detail[0])

    def _current_stage(self) -> Stage | None:
        running = [s for s in self._stage_started if s not in self._ended]
        return running[-1] if running else None

    def _end_stage(self, stage: Stage, state: StageState, detail: str = "") -> None:
        if stage in self._ended:
            return
        self._ended.add(stage)
        elapsed = time.time() - self._stage_started.get(stage, time.time())
        self._publish(ev.StageChanged(stage, state, detail, elapsed))
        self._record_stage(stage, state, detail, elapsed)

    def _record_stage(self, stage: Stage, state: StageState, detail: str = "", elapsed: float = 0.0) -> None:
        if self.record is None:
            return
        stages = self.record.data.setdefault("stages", {})
        stages[stage.value] = {"state": state.value, "detail": detail, "elapsed": round(elapsed, 3),
                               "started_at": self._stage_started.get(stage)}
        self._save_record()

    def _save_record(self, **fields: Any) -> bool:
        """Write the record; a failure (a full disk) is said once and never stops the run's end."""
        if self.record is None:
            return False
        try:
            self.record.update(**fields)
            return True
        except OSError as exc:
            if not self._record_unwritable:
                self._record_unwritable = True
                self._publish(ev.ErrorRaised(self._current_stage(), self.redact(
                    f"cannot write the run record {self.record.path / 'record.json'}: {exc}")))
            return False

    def _error(self, stage: Stage | None, message: str) -> None:
        message = self.redact(message)
        if self.record is not None:
            self.record.data.setdefault("errors", []).append({"stage": stage.value if stage else None,
                                                             "message": message})
            self._save_record()
        self._publish(ev.ErrorRaised(stage, message))

    def _publish(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunnerChanged) and event.state != "reconnecting":
            self._runner_state = event.state
        self.bus.publish(event)

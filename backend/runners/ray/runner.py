"""The `ray` runner: the job as a Ray job, through a cluster's Job Submission API.

The run's snapshot is the job's ``runtime_env.working_dir`` (uploaded as a package); the job's env goes
in ``runtime_env.env_vars``; its submission id is the run id, so a retried start finds the job it
started instead of starting a second. Its log comes back through :class:`LogPump`; its status,
exit code and stop through the job server. With ``local: true`` the runner starts a head on
127.0.0.1 (:class:`LocalHead`) and stops it at teardown; it never stops a cluster it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trainboard.backend import events as ev
from trainboard.backend.runners.base import Capabilities, Host, JobHandle, JobSpec, JobStatus, Notify, RunnerError
from trainboard.backend.runners.local import copy_files, copy_out
from trainboard.backend.runners.ray.client import TERMINAL, JobInfo, JobServer, cluster_headers
from trainboard.backend.runners.ray.entry import ARTIFACT_DIR, write_scripts
from trainboard.backend.runners.ray.head import LocalHead
from trainboard.backend.runners.ray.logs import LogPump

IDLE = 0.5  # seconds between looks at a job with nothing new (each look is a call to the cluster)
SETUP_NOTE = b"On Ray, the setup commands run in the job's working dir, before its command: see job.log.\n"
PENDING_NOTICE = 30.0  # seconds a job may wait for the cluster's resources before the views are told
PENDING_STOP = 5.0  # seconds a stopped job may stay pending (its supervisor unplaced) before we let go
STOPPED_CODE = 143  # a job Ray stopped, when its driver left no exit code


class RayRunner:
    kind = "ray"
    notify: Notify | None

    def __init__(self, config: Any, run_dir: Path, run_id: str) -> None:
        self.config, self.run_dir, self.run_id = config, Path(run_dir), run_id
        self.files = self.run_dir / "runner"  # raw logs (secrets and all), removed at teardown
        self.working_dir = self.files / "ray-working-dir"
        self.outputs = self.files / "ray-outputs"  # where a job that sees this machine's files leaves its outputs
        # A head of the run's own, or a cluster whose nodes see this machine's files: the job opens
        # a SQLite MLflow store by its path and leaves its outputs where fetch() reads them.
        self.capabilities = Capabilities(shares_filesystem=bool(config.local or config.shared_filesystem),
                                         keeps_workspace=False)
        self.head: LocalHead | None = None
        self.server: JobServer | None = None
        self.version = ""
        self.notify = None
        self._pumps: dict[str, LogPump] = {}
        self._setup: tuple[str, ...] = ()  # setup commands, run at the start of the job
        self._stopped_head: dict[str, Any] | None = None  # the run's head, once teardown stopped it
        self._shown = ("", "")  # the job and status the views were last told
        self._pending_since, self._said_pending = 0.0, False

    # -- the cluster ------------------------------------------------------------------------

    async def provision(self) -> Host:
        if self.config.local:
            self._say("starting", "starting a Ray head on 127.0.0.1")
            self.head = await LocalHead.start()
        try:
            await self._connect(self.head.address if self.head else self.config.address)
        except BaseException:
            await self._stop_head()
            raise
        return self._host()

    async def _connect(self, address: str) -> None:
        self.server = JobServer(address, cluster_headers(self.config.token_env))
        self.version = await self.server.connect(self.config.connect_timeout)

    def _host(self) -> Host:
        assert self.server is not None
        resources = self._resources_text()
        return Host(kind=self.kind, address=self.server.address, workspace="(the job's working dir on the cluster)",
                    details=(("cluster", "this run's head" if self.head else "existing"),
                             ("resources", resources), ("ray", self.version)))

    def state(self) -> dict[str, Any]:
        return {"address": self.server.address if self.server else self.config.address,
                "head": self.head.state() if self.head else self._stopped_head}

    async def reattach(self, state: dict[str, Any]) -> Host:
        if state.get("head"):
            if state["head"].get("stopped"):
                raise RunnerError("the Ray head this run started was stopped at its teardown")
            self.head = LocalHead.from_state(state["head"])
            if not self.head.alive():
                self.head = None
                raise RunnerError("the Ray head this run started on 127.0.0.1 is gone (the machine restarted, "
                                  "or someone stopped it): its job is lost")
        await self._connect(str(state.get("address") or self.config.address))
        return self._host()

    def _show_job(self, submission_id: str, status: str) -> None:
        """The job's id and Ray's word for its state, in the runner panel ("ready" keeps the
        state the run shows: see runnerlink.listen)."""
        if self.notify is not None and self._shown != (submission_id, status):
            self._shown = (submission_id, status)
            self.notify(ev.RunnerChanged(state="ready", kind=self.kind, at=time.time(), details=(
                ("job", submission_id), ("job status", status.lower()))))

    def _say(self, state: str, message: str = "") -> None:
        if self.notify is None:
            return
        self.notify(ev.RunnerChanged(state=state, kind=self.kind, at=time.time()))
        if message:
            self.notify(ev.Notice(message))

    # -- the job ----------------------------------------------------------------------------

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
        def fresh_copy() -> None:
            shutil.rmtree(self.working_dir, ignore_errors=True)
            copy_files(source, files, extra, self.working_dir)

        await asyncio.to_thread(fresh_copy)

    def _server(self) -> JobServer:
        if self.server is None:
            raise RunnerError("the Ray runner is not connected to a cluster")
        return self.server

    async def start(self, spec: JobSpec) -> JobHandle:
        log_path = self.files / f"ray-{spec.name}.log"
        if spec.name == "setup":  # the job's working dir is a fresh copy: setup runs there, first
            self._setup = spec.commands
            self.files.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(SETUP_NOTE)
            return JobHandle(name=spec.name, pid=0, log_path=str(log_path), exit_path="", started_at=time.time())
        sid = self.run_id if spec.name == "job" else f"{self.run_id}-{spec.name}"
        commands = (self._setup if spec.name == "job" else ()) + spec.commands
        job = JobSpec(name=spec.name, commands=commands, workdir=spec.workdir, env=spec.env,
                      stop_on_error=spec.stop_on_error, outputs=spec.outputs)
        entrypoint = await asyncio.to_thread(write_scripts, self.working_dir, job, list(spec.outputs),
                                             not self.capabilities.shares_filesystem)
        fresh = await self._server().submit(sid, entrypoint, self._runtime_env(spec.env), self._resources(),
                                            _metadata(spec.env))
        if fresh:
            log_path.unlink(missing_ok=True)  # a copy of an earlier job of this id is not this one's
        else:
            self._say("training", f"the Ray job {sid} was submitted already: following it")
        if sid not in self._pumps:
            self._pumps[sid] = LogPump(self._server(), sid, log_path, self._trouble)
        self._show_job(sid, "submitted" if fresh else "found")
        return JobHandle(name=spec.name, pid=0, log_path=str(log_path), exit_path=sid, started_at=time.time())

    def _runtime_env(self, env: dict[str, str]) -> dict[str, Any]:
        env_vars = {**env, "PYTHONUNBUFFERED": "1", "RAY_JOB_STOP_WAIT_TIME_S": str(self.config.stop_wait_seconds)}
        if self.capabilities.shares_filesystem:
            env_vars["TRAINBOARD_OUTPUT_DIR"] = str(self.outputs.resolve())
        return {"working_dir": str(self.working_dir), "env_vars": env_vars}

    def _resources_text(self) -> str:
        cfg = self.config
        return f"{cfg.num_cpus:g} CPU" + (f", {cfg.num_gpus:g} GPU" if cfg.num_gpus else "")

    def _resources(self) -> dict[str, float]:
        return {"num_cpus": float(self.config.num_cpus), "num_gpus": float(self.config.num_gpus)}

    def _trouble(self, message: str) -> None:
        if self.notify is not None:
            self.notify(ev.Notice(f"Ray: {message}"))

    def _pump(self, handle: JobHandle) -> LogPump:
        pump = self._pumps.get(handle.exit_path)
        if pump is None:  # an attach: the copy an earlier session made goes on
            pump = self._pumps[handle.exit_path] = LogPump(self._server(), handle.exit_path,
                                                          Path(handle.log_path), self._trouble)
        return pump

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        if not handle.exit_path:
            return SETUP_NOTE[offset:offset + limit]
        pump = self._pump(handle)
        return await asyncio.to_thread(pump.read, offset, limit)

    async def status(self, handle: JobHandle) -> JobStatus:
        if not handle.exit_path:
            return JobStatus(running=False, exit_code=0)
        info = await self._server().info(handle.exit_path)
        pump = self._pump(handle)
        if info is None:
            pump.close()
            return JobStatus(running=False, exit_code=None)
        if info.driver_node_id:
            pump.start(info.driver_node_id)
        status = _status(info)
        self._show_job(handle.exit_path, status)
        if status == "PENDING":
            self._pending_since = self._pending_since or time.monotonic()
            if time.monotonic() - self._pending_since > PENDING_NOTICE and not self._said_pending:
                self._said_pending = True
                self._trouble(f"the job has waited {PENDING_NOTICE:g} s for the cluster to start it: "
                              f"{info.message or 'no word from Ray'} (asked for {self._resources_text()})")
        if status not in TERMINAL:
            return JobStatus(running=True, exit_code=None)
        await pump.finish()
        code = info.driver_exit_code
        if code is None:
            code = STOPPED_CODE if status == "STOPPED" else (0 if status == "SUCCEEDED" else 1)
        if status == "FAILED" and info.message:
            self._trouble(f"the job failed: {info.message}")
        return JobStatus(running=False, exit_code=int(code))

    async def idle(self, handle: JobHandle, seconds: float) -> None:
        await asyncio.sleep(max(seconds, IDLE))

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        """Ray's stop: SIGTERM to the job's processes, SIGKILL ``stop_wait_seconds`` later."""
        if not handle.exit_path:
            return
        server = self._server()
        info = await server.info(handle.exit_path)
        if info is None or _status(info) in TERMINAL:
            return
        await server.stop(handle.exit_path)
        deadline = time.monotonic() + self.config.stop_wait_seconds + grace + 10
        pending_until = time.monotonic() + PENDING_STOP
        while time.monotonic() < deadline:
            info = await server.info(handle.exit_path)
            status = _status(info) if info is not None else "gone"
            if info is None or status in TERMINAL:
                return
            if status == "PENDING" and time.monotonic() > pending_until:
                # Ray queues the stop for the job's supervisor, which the cluster has not placed:
                # the job never started, and is stopped the moment it would.
                self._trouble(f"the job {handle.exit_path} never started (the cluster had no room for "
                              f"{self._resources_text()}); Ray stops it if it ever starts, and fails it "
                              "after its start timeout")
                return
            await asyncio.sleep(0.2)
        waited = self.config.stop_wait_seconds + grace
        raise RunnerError(f"the Ray job {handle.exit_path} did not stop within {waited:g} s")

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        return await self._job_env(handle.exit_path)

    async def _job_env(self, submission_id: str) -> dict[str, str]:
        """The env a job was submitted with (its runtime_env's env_vars); {} when it cannot tell."""
        with contextlib.suppress(RunnerError):
            info = await self._server().info(submission_id)
            if info is not None:
                return dict(info.runtime_env.get("env_vars") or {})
        return {}

    # -- what the job leaves ----------------------------------------------------------------

    async def fetch(self, relpath: str, dest: Path) -> bool:
        if self.capabilities.shares_filesystem:
            return await asyncio.to_thread(copy_out, self.outputs / relpath, dest)
        # The MLflow run the job uploaded them to, as the cluster keeps the training job's env
        # (an attach knows it too).
        env = await self._job_env(self.run_id)
        return await asyncio.to_thread(self._download, env.get("MLFLOW_TRACKING_URI"), env.get("MLFLOW_RUN_ID"),
                                       relpath, dest)

    def _download(self, uri: str | None, run_id: str | None, relpath: str, dest: Path) -> bool:
        """A remote cluster's outputs: the MLflow run's ``trainboard-outputs/`` artifacts."""
        if not uri or not run_id:
            return False
        from mlflow.tracking import MlflowClient

        with tempfile.TemporaryDirectory(dir=self.files) as tmp:
            try:
                got = MlflowClient(uri).download_artifacts(run_id, f"{ARTIFACT_DIR}/{relpath}", tmp)
            except Exception:  # MLflow's errors for a missing artifact vary by store
                return False
            return copy_out(Path(got), dest)

    async def forward(self, port: int) -> int:
        """The job reaches 127.0.0.1:``port`` here only when the cluster is this machine."""
        host = urlsplit(self._server().address).hostname or ""
        with contextlib.suppress(ValueError):
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return port
        raise RunnerError(f"the Ray cluster at {self._server().address} cannot reach this machine's MLflow "
                          "store: set mlflow.tracking_uri to an MLflow server the cluster can reach")

    async def undelivered_metrics(self) -> float | None:
        return None

    # -- the end ----------------------------------------------------------------------------

    async def detach(self) -> None:
        for pump in self._pumps.values():
            pump.close()
        if self.server is not None:
            await self.server.close()

    async def teardown(self) -> None:
        """Stop any job still running, then the head if this run started it; nothing else."""
        server = self.server
        for sid, pump in list(self._pumps.items()):
            pump.close()
            if server is not None:
                with contextlib.suppress(RunnerError):
                    await self.stop(JobHandle("job", 0, str(pump.path), sid, 0.0))
        if server is not None:
            await server.close()
        await self._stop_head()
        shutil.rmtree(self.working_dir, ignore_errors=True)
        shutil.rmtree(self.outputs, ignore_errors=True)  # collect has copied them into the run's folder
        for raw in self.files.glob("ray-*.log"):  # the masked copies in run_dir are the logs that stay
            raw.unlink(missing_ok=True)

    async def _stop_head(self) -> None:
        head, self.head = self.head, None
        if head is not None:
            self._say("stopping", "stopping the Ray head this run started")
            await head.stop()
            self._stopped_head = {**head.state(), "stopped": True}


def _status(info: JobInfo) -> str:
    """Ray's word for a job's state (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED)."""
    return info.status


def _metadata(env: dict[str, str]) -> dict[str, str]:
    names = {"TRAINBOARD_RUN_ID": "trainboard_run", "TRAINBOARD_GIT_BRANCH": "branch",
             "TRAINBOARD_GIT_COMMIT": "commit"}
    return {key: env[name] for name, key in names.items() if env.get(name)}

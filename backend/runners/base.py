"""The runner protocol: provision, sync, start a detached job, tail its log, tear down.

Four kinds implement it: ``local`` (this machine), ``ssh`` (any host reached
with asyncssh), ``ec2`` (a fresh instance, then the SSH runner on it) and ``ray``
(a Ray cluster's Job Submission API).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainboard.backend import events as ev


class RunnerError(Exception):
    """The runner could not do what was asked (an infrastructure error)."""


class PreflightError(RunnerError):
    """A check before anything was spent failed (missing permission, bad setting)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a runner can do, declared by the runner, so that the run never branches on its kind."""

    # The job runs on this machine: it sees this machine's files (a folder DVC remote, a file or
    # sqlite MLflow store) and environment (this machine's MLflow credentials).
    shares_filesystem: bool
    # The machine has cloud credentials of its own (an EC2 instance profile): it can reach a cloud
    # DVC remote without this machine's keys.
    cloud_role: bool = False
    # The job's MLflow calls go through a relay on the host that can say whether some never
    # arrived (:meth:`Runner.undelivered_metrics`).
    relays_tracking: bool = False
    # The job's workspace stays after it ends, for later steps there (the DVC hook's push); a Ray
    # job's working dir is a copy of its own, which a later job never sees.
    keeps_workspace: bool = True
    # The host stops a job that trainboard has not touched for this many seconds (0: no watchdog).
    orphan_timeout: float = 0.0


Notify = Callable[[ev.Event], None]  # a runner's way to publish RunnerChanged / Notice events


@dataclass(frozen=True, slots=True)
class Host:
    kind: str
    address: str
    workspace: str  # the repository copy on the runner
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One detached job: commands run through bash in ``workdir`` on the runner."""

    name: str  # "setup" or "job": names its log and exit-code files
    commands: tuple[str, ...]
    workdir: str  # relative to the workspace
    env: dict[str, str] = field(default_factory=dict)
    stop_on_error: bool = True
    outputs: tuple[str, ...] = ()  # what collect fetches (relative to workdir): where it must be kept


@dataclass(frozen=True, slots=True)
class JobHandle:
    name: str
    pid: int  # also the process-group and session id: the job leads its own session
    log_path: str  # on the runner
    exit_path: str  # on the runner
    started_at: float


@dataclass(frozen=True, slots=True)
class JobStatus:
    running: bool
    exit_code: int | None  # None while running, or when the job vanished without one
    interruption: str = ""  # e.g. a spot interruption notice the runner saw; "" when none


class Runner(Protocol):
    kind: str
    capabilities: Capabilities
    notify: Notify | None  # set by the session before provision()

    async def provision(self) -> Host:
        """Get the machine ready (create it, connect, make the workspace)."""

    async def reattach(self, state: dict[str, Any]) -> Host:
        """Reconnect to a machine a previous session provisioned, from its :meth:`state`."""

    def state(self) -> dict[str, Any]:
        """What :meth:`reattach` and ``trainboard reap`` need, JSON-able, kept in the run record."""

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None: ...

    async def start(self, spec: JobSpec) -> JobHandle: ...

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of the job's log from ``offset``; b"" when there is nothing new.

        Remote runners reconnect (with backoff) and retry on their own. The session
        keeps the lines it reads, masked, in ``<run_dir>/<name>.log``.
        """

    async def status(self, handle: JobHandle) -> JobStatus: ...

    async def idle(self, handle: JobHandle, seconds: float) -> None:
        """Wait ``seconds`` between looks at a job with nothing new, or less when the runner can
        tell the job has ended (the local runner)."""

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        """SIGTERM the job's process group, SIGKILL after ``grace`` seconds."""

    async def fetch(self, relpath: str, dest: Path) -> bool:
        """Copy a file or folder (relative to the workspace) here; False when missing."""

    async def forward(self, port: int) -> int:
        """Make 127.0.0.1:``port`` here reachable from the runner; the port the job uses there."""

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        """The running job's environment (attach masks its secrets); {} when it cannot tell."""

    async def undelivered_metrics(self) -> float | None:
        """When (epoch seconds) the job's MLflow calls first failed to reach this machine; None: all did."""

    async def detach(self) -> None:
        """Let go of the runner and leave the job (and the machine) running."""

    async def teardown(self) -> None:
        """Release everything this runner created; must be safe to call at any point."""

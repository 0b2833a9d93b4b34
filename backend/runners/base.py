"""The runner protocol: provision, sync, start a detached job, tail its log, tear down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class RunnerError(Exception):
    """The runner could not do what was asked (an infrastructure error)."""


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


@dataclass(frozen=True, slots=True)
class JobHandle:
    name: str
    pid: int  # also the process-group and session id: the job leads its own session
    log_path: str
    exit_path: str
    started_at: float


@dataclass(frozen=True, slots=True)
class JobStatus:
    running: bool
    exit_code: int | None  # None while running, or when the job vanished without one


class Runner(Protocol):
    kind: str

    async def provision(self) -> Host: ...

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None: ...

    async def start(self, spec: JobSpec) -> JobHandle: ...

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes: ...

    async def status(self, handle: JobHandle) -> JobStatus: ...

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None: ...

    async def fetch(self, relpath: str, dest: Path) -> bool: ...

    async def teardown(self) -> None: ...

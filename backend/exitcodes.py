"""Exit codes of every `trainboard` command (part of its API for CI) and the run statuses
the run record keeps.

Also the one mapping from an exception that ended a run to its exit code, and the
exit-code help the CLI prints, generated from the enum.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.events import Stage


class RunStatus(StrEnum):
    """A run's ``status``: ``running`` while its session is on it, then how it ended
    (ExitCode.status)."""

    RUNNING = "running"  # a session is on it (or crashed: reap checks trainboard_pid)
    DETACHED = "detached"  # the view left, the job runs on: `trainboard attach RUN`
    SUCCEEDED = "succeeded"
    GATE_FAILED = "gate-failed"
    JOB_FAILED = "job-failed"
    CONFIG_ERROR = "config-error"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_live(self) -> bool:
        """Whether the run's job may still be going."""
        return self in (RunStatus.RUNNING, RunStatus.DETACHED)

    @property
    def has_result(self) -> bool:
        """Whether the job finished and was compared (passed or not): a run to compare or publish."""
        return self in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED)

    @property
    def is_failure(self) -> bool:
        """Whether the job or trainboard failed (the dashboard shows the end of its log)."""
        return self in (RunStatus.JOB_FAILED, RunStatus.ERROR)


class ExitCode(IntEnum):
    OK = 0  # the run finished and every gate passed (or there is no gate)
    GATE_FAILED = 1  # the job succeeded but a metric gate failed
    CONFIG_ERROR = 2  # the config or the command line is wrong; nothing was started
    INFRA_ERROR = 3  # the runner, MLflow, git or the disk failed
    JOB_FAILED = 4  # the training job exited non-zero
    DETACHED = 5  # the view left, the job runs on: `trainboard attach RUN` returns to it
    INTERRUPTED = 130  # Ctrl-C / SIGTERM / cancel: torn down cleanly

    @property
    def status(self) -> RunStatus:
        """The status a run that ends with this code records."""
        return _STATUS[self]

    @property
    def help(self) -> str:
        return _HELP[self]


_STATUS = {
    ExitCode.OK: RunStatus.SUCCEEDED,
    ExitCode.GATE_FAILED: RunStatus.GATE_FAILED,
    ExitCode.CONFIG_ERROR: RunStatus.CONFIG_ERROR,
    ExitCode.INFRA_ERROR: RunStatus.ERROR,
    ExitCode.JOB_FAILED: RunStatus.JOB_FAILED,
    ExitCode.DETACHED: RunStatus.DETACHED,
    ExitCode.INTERRUPTED: RunStatus.CANCELLED,
}

_HELP = {
    ExitCode.OK: "ok: the run finished and every gate passed",
    ExitCode.GATE_FAILED: "gate failed: the job succeeded but a metric gate failed",
    ExitCode.CONFIG_ERROR: "config error: nothing was started",
    ExitCode.INFRA_ERROR: "infrastructure error: runner, MLflow, git or disk",
    ExitCode.JOB_FAILED: "job failed: the training job exited non-zero",
    ExitCode.DETACHED: "detached: the view left, the job runs on (trainboard attach RUN returns)",
    ExitCode.INTERRUPTED: "interrupted: Ctrl-C, SIGTERM or cancel; torn down cleanly",
}


class JobFailed(Exception):
    """A job of the run (setup, training, DVC push) failed: exit 4."""

    def __init__(self, message: str, exit_code: int | None, stage: Stage | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stage = stage  # the Stage to blame, when it is not the one running


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of a run that ``exc`` ended (a cancel is an interruption)."""
    import asyncio

    from trainboard.backend.config import ConfigError

    if isinstance(exc, asyncio.CancelledError):
        return ExitCode.INTERRUPTED
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG_ERROR
    if isinstance(exc, JobFailed):
        return ExitCode.JOB_FAILED
    return ExitCode.INFRA_ERROR  # the runner, MLflow, the disk, GitHub, or a fault nothing names (a bug)


def exit_codes_help() -> str:
    """The `exit codes:` section of the CLI's help."""
    width = max(len(str(int(code))) for code in ExitCode)
    lines = [f"  {int(code):<{width}} {code.help}" for code in ExitCode]
    return "exit codes:\n" + "\n".join(lines) + "\n"

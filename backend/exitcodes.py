"""Exit codes of every `trainboard` command: part of its API for CI.

Also the one mapping from an exception that ended a run to its exit code, and the
exit-code help the CLI prints, generated from the enum.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.events import Stage


class ExitCode(IntEnum):
    OK = 0  # the run finished and every gate passed (or there is no gate)
    GATE_FAILED = 1  # the job succeeded but a metric gate failed
    CONFIG_ERROR = 2  # the config or the command line is wrong; nothing was started
    INFRA_ERROR = 3  # the runner, MLflow, git or the disk failed
    JOB_FAILED = 4  # the training job exited non-zero
    DETACHED = 5  # the view left, the job runs on: `trainboard attach RUN` returns to it
    INTERRUPTED = 130  # Ctrl-C / SIGTERM / cancel: torn down cleanly

    @property
    def status(self) -> str:
        return _STATUS[self]

    @property
    def help(self) -> str:
        return _HELP[self]


_STATUS = {
    ExitCode.OK: "succeeded",
    ExitCode.GATE_FAILED: "gate-failed",
    ExitCode.CONFIG_ERROR: "config-error",
    ExitCode.INFRA_ERROR: "error",
    ExitCode.JOB_FAILED: "job-failed",
    ExitCode.DETACHED: "detached",
    ExitCode.INTERRUPTED: "cancelled",
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

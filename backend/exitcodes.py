"""Exit codes of every `trainboard` command: part of its API for CI."""

from __future__ import annotations

from enum import IntEnum


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


_STATUS = {
    ExitCode.OK: "succeeded",
    ExitCode.GATE_FAILED: "gate-failed",
    ExitCode.CONFIG_ERROR: "config-error",
    ExitCode.INFRA_ERROR: "error",
    ExitCode.JOB_FAILED: "job-failed",
    ExitCode.DETACHED: "detached",
    ExitCode.INTERRUPTED: "cancelled",
}

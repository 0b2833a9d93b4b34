"""A run's status said as a clause ("the run was cancelled", "the job failed (exit 3)"):
the one wording the report, both views, the runs screens and the commit statuses use
when there is no verdict to give."""

from __future__ import annotations

from trainboard.backend.exitcodes import RunStatus

HAPPENED: dict[str, str] = {
    RunStatus.RUNNING: "the run is still running",
    RunStatus.DETACHED: "the job runs on, detached",
    RunStatus.SUCCEEDED: "the run succeeded",
    RunStatus.GATE_FAILED: "the run failed its gates",
    RunStatus.JOB_FAILED: "the job failed",
    RunStatus.CONFIG_ERROR: "the config was refused",
    RunStatus.ERROR: "the run stopped on an error",
    RunStatus.CANCELLED: "the run was cancelled",
}


def what_happened(status: str | None, job_exit_code: int | None = None) -> str:
    """The clause for ``status``; a failed job's exit code with it."""
    if not status:
        return "the run did not finish"
    text = HAPPENED.get(status, f"the run ended as {status}")
    if status == RunStatus.JOB_FAILED and job_exit_code is not None:
        text += f" (exit {job_exit_code})"
    return text

"""Runners: where a job runs. Every kind implements :class:`Runner`."""

from __future__ import annotations

from backend.runners.base import Host, JobHandle, JobSpec, JobStatus, Runner, RunnerError


def make_runner(kind: str, run_dir: str) -> Runner:
    """The runner for a config's ``runner.kind``."""
    if kind == "local":
        from backend.runners.local import LocalRunner

        return LocalRunner(run_dir)
    raise RunnerError(f"unknown runner kind {kind!r}")


__all__ = ["Host", "JobHandle", "JobSpec", "JobStatus", "Runner", "RunnerError", "make_runner"]

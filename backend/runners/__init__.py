"""Runners: where a job runs. Every kind implements :class:`Runner`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainboard.backend.runners.base import (
    Host,
    JobHandle,
    JobSpec,
    JobStatus,
    Notify,
    PreflightError,
    Runner,
    RunnerError,
)


def make_runner(config: Any, run_dir: str | Path, run_id: str) -> Runner:
    """The runner for a config's ``runner`` section (its ``kind`` picks the class)."""
    kind = config.kind
    if kind == "local":
        from trainboard.backend.runners.local import LocalRunner

        return LocalRunner(run_dir)
    if kind == "ssh":
        from trainboard.backend.runners.ssh import SshRunner

        return SshRunner.from_config(config, Path(run_dir), run_id)
    if kind == "ec2":
        from trainboard.backend.runners.ec2 import Ec2Runner

        return Ec2Runner(config, Path(run_dir), run_id)
    if kind == "ray":
        from trainboard.backend.runners.ray import RayRunner

        return RayRunner(config, Path(run_dir), run_id)
    raise RunnerError(f"unknown runner kind {kind!r}")


__all__ = ["Host", "JobHandle", "JobSpec", "JobStatus", "Notify", "PreflightError", "Runner", "RunnerError",
           "make_runner"]

"""The `ray` runner: a job on a Ray cluster (an existing one's job server, or a head of the
run's own on 127.0.0.1), through Ray's Job Submission API. Ray is imported only when used."""

from trainboard.backend.runners.ray.runner import RayRunner

__all__ = ["RayRunner"]

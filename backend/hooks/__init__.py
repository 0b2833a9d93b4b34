"""Integrations a run calls at fixed points of its plan (DVC, git-notes baselines, the pull request)."""

from __future__ import annotations

from trainboard.backend.hooks.base import BaselineLookup, Hook


def configured_hooks() -> list[Hook]:
    """The hooks every run consults, in order (each decides at check whether it has work)."""
    from trainboard.backend.hooks.dvc import DvcHook
    from trainboard.backend.hooks.git_notes import GitNotesHook
    from trainboard.backend.hooks.pull_request import PullRequestHook

    return [GitNotesHook(), PullRequestHook(), DvcHook()]


__all__ = ["BaselineLookup", "Hook", "configured_hooks"]

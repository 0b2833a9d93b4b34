"""What a sweep's member is made of, besides its values: its hooks, and its config on a host of
an ssh pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig
    from trainboard.backend.hooks import Hook


def member_hooks() -> list[Hook]:
    """A member's hooks: every configured one but the pull request (the sweep opens one for the
    whole sweep), and git notes only as a baseline source (the sweep's best is the result)."""
    from trainboard.backend.hooks import configured_hooks
    from trainboard.backend.hooks.git_notes import GitNotesHook
    from trainboard.backend.hooks.pull_request import PullRequestHook

    hooks = [hook for hook in configured_hooks() if not isinstance(hook, PullRequestHook)]
    for hook in hooks:
        if isinstance(hook, GitNotesHook):
            hook.records = False
    return hooks


def on_host(loaded: LoadedConfig, host: str) -> LoadedConfig:
    """The member's config on one host of an ssh pool (``host`` or ``host:port``)."""
    from trainboard.backend.config import load_config

    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    overrides = [*loaded.overrides, f"runner.host={name}"] + ([f"runner.port={port}"] if port else [])
    return load_config(loaded.path, overrides)

"""Between a run and GitHub: which settings, whether to publish, what to publish.

The session calls :func:`publish` at the end of a run (see ``github.publish``),
the dashboard's ``p`` and ``trainboard pr RUN`` call it for a finished run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from trainboard.backend import ci
from trainboard.backend.config import RunConfig
from trainboard.backend.github import (
    GithubSettings,
    PublishError,
    PublishResult,
    RunInfo,
    check,
    outputs_for_run,
    publish_run,
)


def settings_for(config: RunConfig) -> GithubSettings:
    gh = config.github
    return GithubSettings(repo=gh.repo, remote=gh.remote, base=config.compare.base, api_url=gh.api_url,
                          web_url=gh.web_url, statuses=gh.statuses)


def publishes_at_the_end(config: RunConfig, env: Mapping[str, str] | None = None) -> bool:
    """Whether a run publishes when it ends: ``always``, or ``ci`` inside GitHub Actions."""
    mode = config.github.publish
    return mode == "always" or (mode == "ci" and ci.in_github_actions(env))


def base_branch_blocker(config: RunConfig, branch: str, env: Mapping[str, str] | None = None) -> str:
    """A run of the base branch itself opens no pull request (it would be into its own branch):
    its result is the baseline. "" for any other branch, and for a pull request's CI run (a
    fork's pull request from its own ``main`` has the base's name)."""
    base = config.compare.base
    env = os.environ if env is None else env
    if branch != base or (ci.in_github_actions(env) and env.get("GITHUB_EVENT_NAME", "").startswith("pull_request")):
        return ""
    return f"the run is on the base branch {base!r} (compare.base): its result is the baseline, not a pull request"


def blocker(config: RunConfig, root: Path, env: Mapping[str, str] | None = None) -> str:
    """Why a pull request cannot be published from here; "" when it can (no network used)."""
    try:
        check(settings_for(config), root, env)
    except PublishError as exc:
        return str(exc)
    return ""


def publish(run_dir: Path, root: Path, config: RunConfig, run: RunInfo, extra_outputs: Mapping[str, Path] | None = None,
            redact: Callable[[str], str] | None = None, env: Mapping[str, str] | None = None) -> PublishResult:
    """Push the run's outputs and report, open or update its pull request (blocking: call it in a thread)."""
    outputs = outputs_for_run(run_dir, config.job.workdir, config.job.outputs)
    outputs.update(extra_outputs or {})
    return publish_run(run_dir, repo_root=root, settings=settings_for(config), run=run, outputs=outputs,
                       env=os.environ if env is None else env, redact=redact)

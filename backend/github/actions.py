"""What a GitHub Actions run says about itself: its event payload, the pull request whose CI
it is, whether its token may write at all, and the address of the run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainboard.backend.github.common import READ_ONLY_FORK

PR_EVENTS = ("pull_request", "pull_request_target")


@dataclass(frozen=True)
class PullRequestEvent:
    """The pull request whose CI this is (GitHub Actions)."""

    number: int
    repo: str  # owner/name of the repository the pull request lives in
    head_ref: str
    head_sha: str = ""
    head_repo: str = ""  # owner/name the head branch lives in: another one for a fork

    @property
    def from_fork(self) -> bool:
        return bool(self.head_repo and self.repo and self.head_repo.lower() != self.repo.lower())


def full_name(value: object) -> str:
    name = (value or {}).get("full_name") if isinstance(value, dict) else None
    return name if isinstance(name, str) and "/" in name else ""


def actions_event(env: Mapping[str, str]) -> dict[str, Any] | None:
    """The GitHub Actions event payload at ``GITHUB_EVENT_PATH``; None without a readable one."""
    path = env.get("GITHUB_EVENT_PATH", "")
    if not path:
        return None
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return event if isinstance(event, dict) else None


def pull_request_event(env: Mapping[str, str]) -> PullRequestEvent | None:
    """The pull request of a ``pull_request`` workflow run, from ``GITHUB_EVENT_PATH``."""
    name = env.get("GITHUB_EVENT_NAME", "")
    if name and name not in PR_EVENTS:
        return None
    event = actions_event(env) or {}
    pr = event.get("pull_request")
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int):
        return None
    head: dict[str, Any] = pr["head"] if isinstance(pr.get("head"), dict) else {}
    base: dict[str, Any] = pr["base"] if isinstance(pr.get("base"), dict) else {}
    repo = ""
    for candidate in (full_name(event.get("repository")), full_name(base.get("repo")),
                      env.get("GITHUB_REPOSITORY")):
        if isinstance(candidate, str) and "/" in candidate:
            repo = candidate
            break
    sha = head.get("sha")
    return PullRequestEvent(number=pr["number"], repo=repo, head_ref=str(head.get("ref") or ""),
                            head_sha=sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha) else "",
                            head_repo=full_name(head.get("repo")))


def read_only_reason(env: Mapping[str, str] | None = None, token_env: str = "GITHUB_TOKEN") -> str:
    """Why this GitHub Actions run may not write to GitHub at all ("" when it may): a
    ``pull_request`` run for a fork's pull request gets a read-only token, and the
    training job ``trainboard init`` writes gets no token at all."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true" or env.get("GITHUB_EVENT_NAME", "pull_request") != "pull_request":
        return ""
    event = pull_request_event(env)
    if event is None:
        return ""
    if event.from_fork:
        return READ_ONLY_FORK
    if not env.get(token_env):
        return (f"this pull request run has no {token_env} (the training job gets none): the comment and the "
                f"status are posted by the trainboard-publish workflow")
    return ""



def actions_run_url(env: Mapping[str, str]) -> str:
    server, repo, run_id = (env.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}" if server and repo and run_id.isdigit() else ""


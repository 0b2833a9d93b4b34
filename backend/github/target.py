"""Where to publish, without the network: the repository (the pull request event's, the
config's, or the remote's), the API to talk to, and the token being there at all."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from trainboard.backend import gitpush
from trainboard.backend.github.actions import pull_request_event
from trainboard.backend.github.common import DEFAULT_API_URL, GithubSettings, PublishError
from trainboard.backend.gitpush import Git

_REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")


def remote_repo(settings: GithubSettings, repo_root: Path) -> tuple[str, str]:
    """(owner/name parsed from the remote, the remote's URL as written) — ("", "") without one."""
    git = Git(repo_root)
    urls = [gitpush.remote_url(git, settings.remote), gitpush.configured_remote_url(git, settings.remote)]
    for url in urls:
        parsed = gitpush.parse_github_repo(url) if url else None
        if parsed:
            return parsed, url
    return "", next((u for u in urls if u), "")


def resolve_repo(settings: GithubSettings, repo_root: Path, env: Mapping[str, str] | None = None) -> str:
    """``owner/name``: the PR event's repository in a PR's CI, else ``github.repo``,
    else parsed from the remote's URL."""
    event = pull_request_event(os.environ if env is None else env)
    if event is not None and event.repo:
        return event.repo
    if settings.repo:
        if not _REPO_NAME.match(settings.repo):
            raise PublishError(f"github.repo {settings.repo!r} is not owner/name: "
                               f"set it like `github.repo: octo/models`")
        return settings.repo
    parsed, url = remote_repo(settings, repo_root)
    if parsed:
        return parsed
    if not url:
        raise PublishError(f"the git remote {settings.remote!r} does not exist in {repo_root}: "
                           f"set github.remote to the remote to push to, or add it (`git remote add`)")
    shown = gitpush.scrub_url_credentials(url)
    raise PublishError(f"cannot tell the GitHub repository from remote {settings.remote!r} ({shown}): "
                       f"set github.repo: owner/name in the config")


def resolve_api_url(settings: GithubSettings, repo_root: Path) -> tuple[str, str]:
    """(the API to talk to, a note when it was inferred). ``github.api_url`` when set;
    else, for a remote on a host other than github.com (GitHub Enterprise Server),
    ``https://HOST/api/v3``; else api.github.com."""
    if settings.api_url:
        return settings.api_url.rstrip("/"), ""
    _, url = remote_repo(settings, repo_root)
    host = gitpush.remote_host(url) if url else ""
    if not host or "." not in host or host.lower() in ("github.com", "www.github.com", "ssh.github.com"):
        return DEFAULT_API_URL, ""
    api = f"https://{host}/api/v3"
    return api, (f"github.api_url is not set and remote {settings.remote!r} is on {host}: talking to {api} "
                 f"(GitHub Enterprise Server's API there); set github.api_url if yours lives elsewhere")


def check(settings: GithubSettings, repo_root: Path, env: Mapping[str, str] | None = None) -> str:
    """What publishing needs before a run spends anything: the token is set and the
    repository is known. Returns ``owner/name``; raises :class:`PublishError`."""
    env = os.environ if env is None else env
    if not env.get(settings.token_env):
        raise PublishError(f"{settings.token_env} is not set: export a GitHub token that may push and open pull "
                           f"requests (in Actions: `env: {settings.token_env}: ${{{{ secrets.GITHUB_TOKEN }}}}` "
                           f"with `permissions: contents: write, pull-requests: write, statuses: write`)")
    return resolve_repo(settings, repo_root, env)

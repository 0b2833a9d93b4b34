"""What every part of GitHub publishing shares: GitHub's limits and the names trainboard
uses there, the settings, the run being published, the result, the errors, and the one
scrubber that masks the token (and the run's secrets) in everything sent."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from trainboard.backend import gitpush
from trainboard.backend.compare import Comparison
from trainboard.backend.exitcodes import RunStatus
from trainboard.backend.redact import Redactor

BODY_LIMIT = 65536  # GitHub's limit on a pull request's or comment's body, in characters
REPORT_FILE = "report.md"
DEFAULT_API_URL = "https://api.github.com"
ACTIONS_BOT = "github-actions[bot]"  # who GITHUB_TOKEN writes as
DEFAULT_NAME = "trainboard"  # a config without a name
READ_ONLY_FORK = ("a pull request from a fork gets a read-only token: the comment and the status are posted "
                  "by the trainboard-publish workflow")


class PublishError(Exception):
    """Publishing failed; the message says what and what to do, with secrets masked."""


class ReadOnlyToken(PublishError):
    """The token may read but not write here (a fork's pull request): nothing was written."""


@dataclass(frozen=True)
class GithubSettings:
    """How to reach GitHub and where to publish. Config section ``github:``."""

    repo: str = ""  # owner/name; "" → parsed from the remote's URL
    remote: str = "origin"  # the git remote the outputs branch is pushed to
    base: str = "main"  # the pull request's base branch (the session passes compare.base)
    api_url: str = ""  # "" → api.github.com, or https://HOST/api/v3 for a remote on another host
    web_url: str = ""  # where plots are linked; "" → derived from api_url
    token_env: str = "GITHUB_TOKEN"  # the environment variable holding the token
    branch_prefix: str = gitpush.DEFAULT_PREFIX  # outputs branch: <prefix><source-branch>
    reports_dir: str = ".trainboard/reports"  # report and plots in the branch: <dir>/<source-branch>/
    author_name: str = ""  # the outputs commit's author; "" → git's identity, else trainboard's
    author_email: str = ""
    statuses: bool = True  # post a commit status per gated metric
    attempts: int = 5  # tries per GitHub operation on 5xx, rate limits and network errors
    backoff: float = 2.0  # seconds before the first retry of a 5xx; doubles each time
    max_wait: float = 300.0  # the longest single wait for a rate limit to reset, in seconds
    timeout: int = 30  # seconds per HTTP request
    seconds_between_requests: float = 0.25  # PyGithub's pacing (GitHub's guidance for integrations)
    seconds_between_writes: float = 1.0

    @property
    def api(self) -> str:
        return (self.api_url or DEFAULT_API_URL).rstrip("/")

    @property
    def web(self) -> str:
        """The web address that repository pages (and plot links) live under."""
        if self.web_url:
            return self.web_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.api)
        host = parts.netloc
        if host == "api.github.com":
            return f"{parts.scheme}://github.com"
        if host.startswith("api."):
            host = host[len("api."):]
        path = re.sub(r"/api(/v3)?$", "", parts.path)
        return urllib.parse.urlunsplit((parts.scheme, host, path, "", "")).rstrip("/")


@dataclass(frozen=True)
class RunInfo:
    """The run being published."""

    run_id: str
    branch: str  # the source branch the run trained
    commit: str  # the run's commit (the first outputs commit's parent)
    name: str = DEFAULT_NAME  # the config's name: its report comment and statuses are its own
    verdict: str = ""  # one line: the comparison's verdict
    comparison: Comparison | None = None  # for the commit statuses; None: no statuses
    status: str = RunStatus.SUCCEEDED  # the run's status: succeeded, gate-failed; anything else posts "error"


@dataclass(frozen=True)
class PublishResult:
    pr_number: int
    pr_url: str
    comment_url: str
    created_pr: bool  # False when an open pull request was updated, or in a PR's CI
    branch: str  # the outputs branch pushed; "" in a PR's CI (nothing pushed)
    commit: str = ""  # the outputs commit pushed; "" in a PR's CI
    repo: str = ""
    pr_ci: bool = False  # True: commented on the pull request whose CI this is
    files: tuple[str, ...] = ()  # repository paths committed on the outputs branch
    missing: tuple[str, ...] = field(default=())  # outputs named but not found on disk
    withheld: tuple[str, ...] = field(default=())  # binary files not pushed: they hold a secret
    statuses: tuple[str, ...] = ()  # "context: state" for each commit status posted
    notes: tuple[str, ...] = ()  # what the user should know (an inferred api_url, ...)


def combined_scrub(token: str, redact: Callable[[str], str] | None) -> Callable[[str], str]:
    own = Redactor([token])

    def scrub(text: str) -> str:
        if redact is not None:
            text = redact(text)
        return gitpush.scrub_url_credentials(own(text))

    return scrub


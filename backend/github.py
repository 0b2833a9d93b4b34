"""Publish a run to GitHub: its outputs on a branch, a pull request, one report comment,
and the gate as commit statuses.

``publish_run`` does it all, synchronously (a session calls it through
``asyncio.to_thread``):

1. The repository is read first, with what the token may do there: a token that
   may not push, a conversation that is locked, a wrong ``api_url`` stop here,
   before anything is pushed.
2. Outside a pull request's CI, the run's outputs (DVC pointer files,
   ``dvc.lock``, the metrics file) and its report with plots are committed, in a
   temporary index, on top of the previous tip of ``trainboard/<source-branch>``
   (the run's commit on the first publish) and pushed without force: every
   publish is a fast-forward, so a "no force push" branch rule holds (see
   ``trainboard.backend.gitpush``). From a fork (``github.remote`` is another repository
   than ``github.repo``), the head is sent as ``owner:branch`` with ``head_repo``.
3. The pull request from that branch to the base branch is opened, or, when one
   is already open, its title and body are updated to the latest report. When
   GitHub refuses to open it, the branch this publish created is deleted again.
4. A single report comment per config (marker ``<!-- trainboard-report:<config> -->``),
   written by the token's own identity, is edited in place, or posted when there
   is none yet; a person's comment quoting the marker is left alone.
5. A commit status per gated metric (``trainboard/<metric>``, or
   ``trainboard/<config>/<metric>`` for a named config) on the pull request's head
   commit, so the gate can be a required check.

Inside a pull request's CI (``GITHUB_EVENT_NAME=pull_request`` and a
``GITHUB_EVENT_PATH`` holding the PR), nothing is pushed and no pull request is
opened: the report goes into the report comment of *that* pull request and the
statuses onto its head commit. A pull request from a fork gets a read-only token
there: :func:`read_only_reason` says so and nothing is written at all (the
``workflow_run`` half, ``trainboard pr --results``, publishes).

The token comes from ``GITHUB_TOKEN`` (or the variable the settings name) and
never appears in what this module sends, pushes or raises: every body, title,
pushed text file and error message passes the run's redactor plus the token; a
binary file (a plot) holding a secret is not pushed at all.
Rate limits and 5xx answers are retried with backoff, within bounds; then one
:class:`PublishError` says what failed and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainboard.backend import gitpush
from trainboard.backend.compare import Comparison
from trainboard.backend.gitpush import Git, Identity, NotFastForward, PushError
from trainboard.backend.redact import Redactor

if TYPE_CHECKING:
    from github.GithubException import GithubException
    from github.IssueComment import IssueComment
    from github.PullRequest import PullRequest
    from github.Repository import Repository

T = TypeVar("T")

MARKER = "<!-- trainboard-report -->"  # the marker before configs had their own (still adopted, if ours)
MARKER_PREFIX = "<!-- trainboard-report"
BODY_LIMIT = 65536  # GitHub's limit on a pull request's or comment's body, in characters
TITLE_LIMIT = 250
STATUS_DESCRIPTION_LIMIT = 140  # GitHub cuts a commit status's description there
REPORT_FILE = "report.md"
PR_EVENTS = ("pull_request", "pull_request_target")
DEFAULT_API_URL = "https://api.github.com"
ACTIONS_BOT = "github-actions[bot]"  # who GITHUB_TOKEN writes as
DEFAULT_NAME = "trainboard"  # a config without a name
READ_ONLY_FORK = ("a pull request from a fork gets a read-only token: the comment and the status are posted "
                  "by the trainboard-publish workflow")
PUSH_ATTEMPTS = 3  # fast-forward pushes tried when another publish moved the outputs branch meanwhile


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
    status: str = "succeeded"  # the run's status: succeeded, gate-failed; anything else posts "error"


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


def _full_name(value: object) -> str:
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
    for candidate in (_full_name(event.get("repository")), _full_name(base.get("repo")),
                      env.get("GITHUB_REPOSITORY")):
        if isinstance(candidate, str) and "/" in candidate:
            repo = candidate
            break
    sha = head.get("sha")
    return PullRequestEvent(number=pr["number"], repo=repo, head_ref=str(head.get("ref") or ""),
                            head_sha=sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}", sha) else "",
                            head_repo=_full_name(head.get("repo")))


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


# ------------------------------------------------------------------ checks without the network


_REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")


def _remote_repo(settings: GithubSettings, repo_root: Path) -> tuple[str, str]:
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
    parsed, url = _remote_repo(settings, repo_root)
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
    _, url = _remote_repo(settings, repo_root)
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

def outputs_for_run(record_dir: Path, workdir: str, outputs: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Repository path → the run's copy, for ``job.outputs`` as the session collects them
    (each into the run folder under its file name)."""
    found: dict[str, Path] = {}
    for rel in outputs:
        path = gitpush.repo_path(str(Path(workdir) / rel))
        found[path] = record_dir / Path(rel).name
    return found


# ------------------------------------------------------------------ rendering


_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"\n]*\")?\)")


def _is_relative(target: str) -> bool:
    return not (re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith(("/", "#")))


def report_links(report: str) -> list[str]:
    """Relative link and image targets in a markdown report, in order, once each."""
    seen: list[str] = []
    for match in _LINK.finditer(report):
        target = urllib.parse.unquote(match["target"])
        if _is_relative(target) and target not in seen:
            seen.append(target)
    return seen


def blob_url(web: str, repo: str, branch: str, path: str) -> str:
    """A file on a branch, served raw (so images render in pull requests)."""
    quoted = urllib.parse.quote
    return f"{web}/{repo}/blob/{quoted(branch, safe='/')}/{quoted(path, safe='/')}?raw=true"


def rewrite_links(report: str, resolve: Callable[[str], str | None], missing_note: Callable[[str, str], str]) -> str:
    """Relative links made absolute with ``resolve``; an image it cannot resolve is
    replaced by ``missing_note(alt, target)``, a plain link is left as it is."""

    def replace(match: re.Match[str]) -> str:
        target = urllib.parse.unquote(match["target"])
        if not _is_relative(target):
            return match[0]
        url = resolve(target)
        if url is None:
            return missing_note(match["text"], target) if match["bang"] else match[0]
        return f"{match['bang']}[{match['text']}]({url}{match['title'] or ''})"

    return _LINK.sub(replace, report)


def fit_body(text: str, limit: int = BODY_LIMIT, where: str = "") -> str:
    """``text`` within GitHub's body limit: cut at a line, code fence closed, with a note."""
    if len(text) <= limit:
        return text
    note = (f"\n\n---\n*Report truncated to fit GitHub's {limit}-character limit "
            f"(it has {len(text)} characters)" + (f"; the full report is {where}" if where else "") + ".*\n")
    room = limit - len(note) - len("\n```\n")
    cut = text[:room]
    if "\n" in cut:
        cut = cut[: cut.rfind("\n")]
    if sum(1 for line in cut.splitlines() if line.lstrip().startswith("```")) % 2:
        cut += "\n```"
    return cut + note


# ------------------------------------------------------------------ GitHub calls with retries


def _header(exc: GithubException, name: str) -> str:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        parts = [str(data.get("message") or "")]
        for err in data.get("errors") or []:
            if isinstance(err, dict):
                parts.append(str(err.get("message") or " ".join(str(err.get(k, "")) for k in ("field", "code"))))
            else:
                parts.append(str(err))
        return "; ".join(p.strip() for p in parts if p and p.strip())
    return str(data or "")[:300]


def _rate_limit_wait(exc: GithubException, now: float) -> float | None:
    """Seconds to wait when ``exc`` is a rate limit answer, else None."""
    if exc.status not in (403, 429):
        return None
    retry_after = _header(exc, "retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    if _header(exc, "x-ratelimit-remaining") == "0":
        reset = _header(exc, "x-ratelimit-reset")
        try:
            return max(0.0, float(reset) - now) + 1.0  # the reset is in whole seconds
        except ValueError:
            return 60.0
    message = _message(exc).lower()
    if exc.status == 429 or "secondary rate limit" in message or "rate limit" in message:
        return 60.0  # GitHub: wait at least a minute before retrying a secondary limit
    return None


def _accepted_permissions(exc: GithubException) -> str:
    """GitHub's ``x-accepted-github-permissions`` (alternatives separated by ``;``, the
    permissions of one by ``,``) as workflow ``permissions:``: ``issues: write` or `pull-requests: write``."""
    alternatives = []
    for alternative in _header(exc, "x-accepted-github-permissions").split(";"):
        needed = []
        for part in alternative.split(","):
            name, _, level = part.strip().partition("=")
            if name and level:
                needed.append(f"{name.strip().replace('_', '-')}: {level.strip()}")
        if needed:
            alternatives.append(", ".join(needed))
    return "` or `".join(dict.fromkeys(alternatives))


ACTIONS_SETTING_OFF = (
    "GitHub Actions may not open pull requests in this repository: turn on Settings → Actions → General → "
    "Workflow permissions → \"Allow GitHub Actions to create and approve pull requests\" (for an organization, "
    "first in the organization's Settings → Actions → General), or publish with a personal access token "
    "(`env: GITHUB_TOKEN: ${{ secrets.YOUR_PAT }}`)"
)


@dataclass(frozen=True)
class _Where:
    """What the error messages need to know about where this runs."""

    actions: bool = False  # inside GitHub Actions (the token is most likely GITHUB_TOKEN)
    fork_pr: bool = False  # a pull request from a fork: its token is read-only
    api_inferred: bool = False  # api_url was inferred from the remote's host


class _Client:
    """PyGithub behind bounded retries and masked errors."""

    def __init__(self, settings: GithubSettings, token: str, scrub: Callable[[str], str],
                 sleep: Callable[[float], None], clock: Callable[[], float], where: _Where | None = None) -> None:
        from github import Auth, Github

        self.settings = settings
        self.scrub = scrub
        self.sleep = sleep
        self.clock = clock
        self.where = where or _Where()
        # Retries are ours (below): around whole operations, so that a retried POST
        # first looks for what an earlier, failed-looking try may have created.
        self.gh = Github(
            auth=Auth.Token(token),
            base_url=settings.api,
            timeout=settings.timeout,
            retry=None,
            per_page=100,  # fewer round trips through long comment lists
            seconds_between_requests=settings.seconds_between_requests or None,
            seconds_between_writes=settings.seconds_between_writes or None,
            user_agent="trainboard",
        )

    def close(self) -> None:
        self.gh.close()

    def call(self, what: str, operation: Callable[[], T], needs: str = "") -> T:
        """``operation()``, tried again on 5xx answers, rate limits and network errors:
        at most ``attempts`` times, waiting as GitHub asks (up to ``max_wait``) or with
        exponential backoff. Other failures raise :class:`PublishError` at once.
        ``needs``: the permission the operation takes (``pull-requests: write``), for a 403."""
        import requests
        from github.GithubException import GithubException

        settings = self.settings
        delay = max(0.0, settings.backoff)
        attempts = max(1, settings.attempts)
        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except GithubException as exc:
                wait = _rate_limit_wait(exc, self.clock())
                if wait is not None:
                    if wait > settings.max_wait:
                        raise PublishError(self.scrub(
                            f"{what}: GitHub's rate limit is spent and resets in {wait:.0f} s, more than "
                            f"github.max_wait ({settings.max_wait:g} s): publish later with `trainboard pr RUN`"
                        )) from None
                    reason = f"rate limited ({exc.status}: {_message(exc)})"
                elif exc.status >= 500:
                    wait, delay = delay, delay * 2
                    reason = f"GitHub answered {exc.status}" + (f" ({_message(exc)})" if _message(exc) else "")
                else:
                    raise self.error(what, exc, needs) from None
            except requests.RequestException as exc:
                wait, delay = delay, delay * 2
                reason = f"network error ({type(exc).__name__}: {exc})"
            if attempt >= attempts:
                raise PublishError(self.scrub(
                    f"{what} failed after {attempts} tries: {reason}. GitHub may be down or limiting this "
                    f"token: retry later with `trainboard pr RUN`"
                    + (f" (api_url: {settings.api})" if settings.api != DEFAULT_API_URL else "")
                )) from None
            self.sleep(wait)

    def error(self, what: str, exc: GithubException, needs: str = "") -> PublishError:
        status = exc.status
        message = _message(exc)
        low = message.lower()
        hint = ""
        if status == 401:
            hint = f"GitHub refused the token in {self.settings.token_env} (expired, revoked or mistyped?)"
        elif "locked" in low and status in (403, 404, 422):
            hint = ("the pull request's conversation is locked: unlock it (its sidebar → Unlock conversation) "
                    "or publish with the token of someone who may write on locked conversations")
        elif status == 403 and "not permitted to create or approve pull requests" in low:
            hint = ACTIONS_SETTING_OFF
        elif status == 403 and self.where.fork_pr:
            hint = READ_ONLY_FORK
        elif status == 403:
            accepted = _accepted_permissions(exc) or needs
            if self.where.actions:
                hint = (f"the workflow's GITHUB_TOKEN lacks `{accepted or 'the permission'}`: add it to the "
                        "workflow's `permissions:` (trainboard needs `contents: write`, `pull-requests: write`, "
                        "`statuses: write`); a repository or organization whose default token is read-only "
                        "needs them listed")
            else:
                hint = (f"the token in {self.settings.token_env} may not do this"
                        + (f": it needs `{accepted}`" if accepted else "")
                        + " (fine-grained token: Contents, Pull requests and Commit statuses: read and write; "
                        "classic token: the `repo` scope)")
        elif status == 404:
            hint = "not found, or the token cannot see it: check github.repo and the token's repository access"
        elif status == 422:
            hint = "GitHub rejected the request"
        text = f"{what}: GitHub answered {status}" + (f" ({message})" if message else "")
        text += f": {hint}" if hint else ""
        return PublishError(self.scrub(text))

    def api_answers(self) -> str:
        """"" when ``api_url`` answers as GitHub's API does; else what it answered."""
        import requests
        from github.GithubException import GithubException

        try:
            _, data = self.gh.requester.requestJsonAndCheck("GET", "/rate_limit")
        except GithubException as exc:
            if exc.status in (401, 403, 429) or exc.status >= 500:
                return ""  # an API that refuses this token, or is down, is still the API
            return f"GET /rate_limit: {exc.status}" + (f" ({_message(exc)})" if _message(exc) else "")
        except (requests.RequestException, ValueError) as exc:
            return f"GET /rate_limit: {type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 — a non-JSON page breaks PyGithub in several ways
            return f"GET /rate_limit: not GitHub's JSON ({type(exc).__name__})"
        if not isinstance(data, dict) or not ({"resources", "rate"} & set(data)):
            return "GET /rate_limit: an answer that is not GitHub's"
        return ""

    def wrong_api_url(self, answered: str) -> PublishError:
        api = self.settings.api
        origin = " (inferred from the remote's host)" if self.where.api_inferred else ""
        return PublishError(self.scrub(
            f"github.api_url {api}{origin} does not answer as GitHub's API ({answered}); "
            f"this is not the token's fault: set github.api_url to your GitHub's API — https://api.github.com "
            f"for github.com, https://HOST/api/v3 for GitHub Enterprise Server"))



# ------------------------------------------------------------------ identities, markers, statuses


def config_slug(name: str) -> str:
    """A config's name as it appears in markers and status contexts."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")[:60]
    return slug or DEFAULT_NAME


def marker(name: str) -> str:
    """The hidden first line of a config's report comment."""
    return f"<!-- trainboard-report:{config_slug(name)} -->"


def neutralize_markers(text: str) -> str:
    """``text`` with any trainboard marker it quotes broken, so it can never pass as one."""
    return text.replace(MARKER_PREFIX, "<!-- trainboard&#8209;report")


def status_context(name: str, key: str) -> str:
    """``trainboard/<metric>``, or ``trainboard/<config>/<metric>`` for a named config."""
    metric = re.sub(r"[^A-Za-z0-9._/-]+", "-", key)[:80] or "metric"
    slug = config_slug(name)
    return f"trainboard/{metric}" if slug == DEFAULT_NAME else f"trainboard/{slug}/{metric}"


def _short(text: str, limit: int = STATUS_DESCRIPTION_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def commit_statuses(run: RunInfo) -> list[tuple[str, str, str]]:
    """(context, state, description) for each commit status the run gets: one per
    gated metric (success/failure), or one for the config when no metric is gated;
    ``error`` on all of them when the run has no verdict to trust (it crashed, or
    judged stale metrics)."""
    comparison = run.comparison
    gated = [r for r in comparison.rows if r.gate] if comparison is not None else []
    if comparison is None and run.status in ("succeeded", "gate-failed"):
        return []  # nothing was compared: no verdict to post
    if run.status not in ("succeeded", "gate-failed") or comparison is None:
        why = _short(f"no verdict: the run {run.status or 'did not finish'}", STATUS_DESCRIPTION_LIMIT)
        contexts = [status_context(run.name, r.key) for r in gated] or [status_context(run.name, "gate")]
        return [(context, "error", why) for context in contexts]
    if not gated:
        state = "success" if comparison.passed else "failure"
        return [(status_context(run.name, "gate"), state, _short(run.verdict or comparison.verdict))]
    out = []
    base = comparison.base_branch
    for row in gated:
        if row.after is None:
            value = "not logged"
        elif row.delta is not None:
            value = f"{row.fmt(row.after)} ({row.fmt(row.delta, signed=True)} vs {base})"
        else:
            value = f"{row.fmt(row.after)} (no baseline on {base} yet)"
        verdict = "pass" if row.passed is not False else "fail"
        text = f"{value}: {verdict}" + (f" ({row.reason})" if row.passed is False and row.reason else "")
        out.append((status_context(run.name, row.key), "failure" if row.passed is False else "success",
                    _short(text)))
    return out


def _own_login(client: _Client) -> str:
    """Who the token writes as: ``GET /user``'s login; an Actions token cannot read it
    and writes as github-actions[bot]; "" when unknown (then only bots' comments are ours)."""
    from github.GithubException import GithubException

    def read() -> str:
        try:
            return str(client.gh.requester.requestJsonAndCheck("GET", "/user")[1].get("login") or "")
        except GithubException as exc:
            if exc.status in (403, 404):
                return ACTIONS_BOT if client.where.actions else ""
            raise

    return client.call("reading who the token is", read)


def _is_ours(comment: IssueComment, login: str) -> bool:
    user = comment.user  # from the list's own data: no request
    if user is None:
        return False
    if login:
        return str(user.login or "").lower() == login.lower()
    return user.type == "Bot"


def _upsert_comment(pr: PullRequest, body: str, name: str, login: str) -> IssueComment:
    """Edit this config's report comment — the one that starts with its marker and that
    the token's identity wrote — or post it."""
    own = marker(name)
    legacy = config_slug(name) == DEFAULT_NAME
    for comment in pr.get_issue_comments():
        text = comment.body or ""
        if not (text.startswith(own) or (legacy and text.startswith(MARKER))) or not _is_ours(comment, login):
            continue
        if comment.body != body:
            comment.edit(body)
        return comment
    return pr.create_issue_comment(body)


def _post_statuses(client: _Client, repo: Repository, sha: str, run: RunInfo, target_url: str) -> tuple[str, ...]:
    posted = []
    for context, state, description in commit_statuses(run):
        payload: dict[str, Any] = {"state": state, "context": context, "description": client.scrub(description)}
        if target_url:
            payload["target_url"] = target_url

        def post(payload: dict[str, Any] = payload) -> None:
            client.gh.requester.requestJsonAndCheck("POST", f"{repo.url}/statuses/{sha}", input=payload)

        client.call(f"setting the commit status {context} on {sha[:10]}", post, needs="statuses: write")
        posted.append(f"{context}: {state}")
    return tuple(posted)


def actions_run_url(env: Mapping[str, str]) -> str:
    server, repo, run_id = (env.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}" if server and repo and run_id.isdigit() else ""


# ------------------------------------------------------------------ publishing


@dataclass(frozen=True)
class _Plan:
    """What to publish, rendered and masked."""

    report: str  # the masked report, links relative (as pushed)
    files: dict[str, bytes]  # repository path → content (text files masked)
    links: dict[str, str]  # report link target → repository path on the outputs branch
    missing: tuple[str, ...]
    withheld: tuple[str, ...]


def _is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _masked(data: bytes, scrub: Callable[[str], str]) -> bytes | None:
    """A text file with its secrets masked; a binary file as it is, or None when it
    holds a secret (it cannot be masked without breaking it, so it is not pushed)."""
    if _is_text(data):
        return scrub(data.decode("utf-8")).encode("utf-8")
    raw = data.decode("latin-1")  # one char a byte: secret values and shapes still match
    return data if scrub(raw) == raw else None


def _plan(record_dir: Path, report_dir: str, outputs: Mapping[str, Path], scrub: Callable[[str], str]) -> _Plan:
    report_path = record_dir / REPORT_FILE
    try:
        report = scrub(report_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"no report to publish: {report_path} does not exist (the run did not get "
                           f"to its report stage)") from None
    files: dict[str, bytes] = {}
    missing: list[str] = []
    withheld: list[str] = []

    def add(path: str, data: bytes) -> bool:
        masked = _masked(data, scrub)
        if masked is None:
            withheld.append(path)
            return False
        files[path] = masked
        return True

    for path, source in outputs.items():
        target = gitpush.repo_path(path)
        try:
            data = source.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            missing.append(target)
            continue
        add(target, data)
    links: dict[str, str] = {}
    root = record_dir.resolve()
    for target in report_links(report):
        local = (record_dir / target).resolve()
        if not local.is_relative_to(root) or not local.is_file() or local.name == REPORT_FILE:
            continue
        path = f"{report_dir}/{local.relative_to(root).as_posix()}"
        if add(path, local.read_bytes()):
            links[target] = path
    files[f"{report_dir}/{REPORT_FILE}"] = report.encode("utf-8")
    return _Plan(report=report, files=files, links=links, missing=tuple(missing), withheld=tuple(withheld))


def _combined_scrub(token: str, redact: Callable[[str], str] | None) -> Callable[[str], str]:
    own = Redactor([token])

    def scrub(text: str) -> str:
        if redact is not None:
            text = redact(text)
        return gitpush.scrub_url_credentials(own(text))

    return scrub


def _title(run: RunInfo) -> str:
    title = f"trainboard: {run.name} on {run.branch}"
    if run.verdict:
        title += f" — {run.verdict}"
    return title if len(title) <= TITLE_LIMIT else title[: TITLE_LIMIT - 1] + "…"


def _footer(run: RunInfo, branch: str, commit: str) -> str:
    lines = ["", "---", f"*Published by trainboard from run `{run.run_id}` of `{run.branch}` @ `{run.commit[:10]}`"]
    if branch:
        lines[-1] += f"; outputs on branch `{branch}` (commit `{commit[:10]}`), a new commit there for each run"
    lines[-1] += ".*"
    return "\n".join(lines) + "\n"


def _where(env: Mapping[str, str], inferred: bool) -> _Where:
    event = pull_request_event(env)
    return _Where(actions=env.get("GITHUB_ACTIONS") == "true", fork_pr=bool(event and event.from_fork),
                  api_inferred=inferred)


def _read_repo(client: _Client, repo_name: str) -> Repository:
    """The repository, read before anything is written; a 404 or a page that is not
    GitHub's JSON is told apart from the token's fault by asking the API's ``/rate_limit``."""
    from github.GithubException import GithubException

    try:
        repo = client.call(f"reading repository {repo_name}", lambda: client.gh.get_repo(repo_name))
        if not isinstance(repo.raw_data, dict) or "full_name" not in repo.raw_data:
            raise client.wrong_api_url(f"GET /repos/{repo_name}: an answer that is not GitHub's JSON")
        return repo
    except PublishError as exc:
        if "answered 404" not in str(exc):
            raise
        answered = client.api_answers()
        if answered:
            raise client.wrong_api_url(answered) from None
        raise
    except (GithubException, ValueError, KeyError, TypeError):
        answered = client.api_answers() or f"GET /repos/{repo_name}: an answer that is not GitHub's JSON"
        raise client.wrong_api_url(answered) from None


def _permissions(repo: Repository) -> dict[str, bool] | None:
    perms = repo.raw_data.get("permissions")
    return {k: bool(v) for k, v in perms.items()} if isinstance(perms, dict) else None


def publish_run(
    record_dir: Path,
    *,
    repo_root: Path,
    settings: GithubSettings,
    run: RunInfo,
    outputs: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    redact: Callable[[str], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> PublishResult:
    """Publish the run recorded in ``record_dir`` (its ``report.md`` and the plots it
    links) plus ``outputs`` (repository path → file) to GitHub. Synchronous; raises
    :class:`PublishError` with a message for the user (:class:`ReadOnlyToken` when
    the token may not write here: nothing was written).

    ``env`` is where the token and the GitHub Actions variables are read (default
    ``os.environ``); git runs with this process's environment. ``redact`` masks
    secrets (the session's :class:`~trainboard.backend.redact.Redactor`); the token is masked
    whatever it is given.
    """
    env = os.environ if env is None else env
    token = env.get(settings.token_env, "")
    if not token:
        check(settings, repo_root, env)  # raises the message that says how to set it
    scrub = _combined_scrub(token, redact)
    reason = read_only_reason(env)
    if reason:
        raise ReadOnlyToken(reason)
    try:
        return _publish(record_dir, repo_root, settings, run, dict(outputs or {}), env, token, scrub, sleep, clock)
    except PublishError:
        raise
    except PushError as exc:
        raise PublishError(scrub(f"pushing the run's outputs: {exc}")) from None
    except Exception as exc:  # PyGithub and requests errors can carry request data: never chain them
        raise PublishError(scrub(f"publishing to GitHub failed: {type(exc).__name__}: {exc}")) from None


def _locked(number: int) -> PublishError:
    return PublishError(f"pull request #{number}'s conversation is locked, so its report comment cannot be "
                        f"written: unlock it (its sidebar → Unlock conversation); nothing was pushed or posted")


def _publish(
    record_dir: Path,
    repo_root: Path,
    settings: GithubSettings,
    run: RunInfo,
    outputs: dict[str, Path],
    env: Mapping[str, str],
    token: str,
    scrub: Callable[[str], str],
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> PublishResult:
    event = pull_request_event(env)
    repo_name = resolve_repo(settings, repo_root, env)
    api, note = resolve_api_url(settings, repo_root)
    settings = dataclasses.replace(settings, api_url=api)
    notes = (note,) if note else ()
    web = settings.web
    report_dir = f"{settings.reports_dir.strip('/')}/{gitpush.source_slug(run.branch, run.commit)}"
    plan = _plan(record_dir, report_dir, {} if event else outputs, scrub)
    if event is None and not run.commit:
        raise PublishError(f"run {run.run_id} has no commit to build on: commit your code and run again")
    branch = gitpush.outputs_branch(run.branch, run.commit, settings.branch_prefix) if event is None else ""
    prefix = settings.branch_prefix.strip("/")
    if branch and prefix and (run.branch == prefix or run.branch.startswith(prefix + "/")):
        # Publishing would nest trainboard/trainboard/... and, with a token whose pushes
        # trigger workflows, loop: the outputs branches are not trained themselves.
        raise PublishError(f"run {run.run_id} is on {run.branch!r}, one of trainboard's outputs branches "
                           f"({prefix}/...): run on the source branch instead")
    # From a fork: the branch goes to the fork (github.remote), the pull request to github.repo.
    head_repo = ""
    if event is None:
        pushed_to, _ = _remote_repo(settings, repo_root)
        if pushed_to and pushed_to.lower() != repo_name.lower():
            head_repo = pushed_to
    head_owner = (head_repo or repo_name).split("/", 1)[0]

    def resolve(target: str) -> str | None:
        path = plan.links.get(target) if branch else None
        return blob_url(web, head_repo or repo_name, branch, path) if path else None

    def not_published(alt: str, target: str) -> str:
        if event is not None:
            why = "plots are not published from a pull request's CI"
        elif f"{report_dir}/{target}" in plan.withheld:
            why = "not published: the file holds a secret"
        else:
            why = "not found there"
        return f"*({alt or target}: `{target}` is in the run's folder, `.trainboard/runs/{run.run_id}/`; {why})*"

    rendered = neutralize_markers(rewrite_links(plan.report, resolve, not_published))
    where = f"`{report_dir}/{REPORT_FILE}` on branch `{branch}`" if branch else \
        f"`.trainboard/runs/{run.run_id}/{REPORT_FILE}`"
    title = scrub(_title(run))

    client = _Client(settings, token, scrub, sleep, clock, _where(env, bool(note)))
    try:
        # First the repository and what the token may do there: nothing is pushed before.
        repo = _read_repo(client, repo_name)
        perms = _permissions(repo)
        login = _own_login(client)
        if event is not None:
            if perms is not None and not any(perms.get(k) for k in ("push", "triage", "maintain", "admin")):
                raise ReadOnlyToken(f"the token may only read {repo_name} (a read-only token, as a fork's pull "
                                    f"request gets): nothing was posted; the trainboard-publish workflow posts "
                                    f"the comment and the status")
            pr = client.call(f"reading pull request #{event.number}", lambda: repo.get_pull(event.number))
            if pr.locked:
                raise _locked(pr.number)
            footer = _footer(run, "", "")
            comment_body = scrub(fit_body(f"{marker(run.name)}\n{rendered}\n{footer}", BODY_LIMIT, where))
            comment = client.call(f"writing the report comment on #{pr.number}",
                                  lambda: _upsert_comment(pr, comment_body, run.name, login),
                                  needs="pull-requests: write")
            statuses: tuple[str, ...] = ()
            if settings.statuses:
                sha = event.head_sha or pr.head.sha
                statuses = _post_statuses(client, repo, sha, run, comment.html_url or actions_run_url(env))
            return PublishResult(
                pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url, created_pr=False,
                branch="", commit="", repo=repo_name, pr_ci=True, files=(), missing=plan.missing,
                withheld=plan.withheld, statuses=statuses, notes=notes,
            )

        if not head_repo and perms is not None and not perms.get("push"):
            raise PublishError(scrub(
                f"the token in {settings.token_env} may read {repo_name} but not push to it, so nothing was "
                f"pushed: give it `contents: write` (Actions `permissions:`; fine-grained token: Contents: read "
                f"and write; classic token: the `repo` scope)"
                + ("; a pull request from a fork gets a read-only token" if client.where.actions else "")))
        existing = client.call(f"looking for an open pull request from {head_owner}:{branch}",
                               lambda: _open_pull(repo, head_owner, branch, settings.base))
        if existing is not None and existing.locked:
            raise _locked(existing.number)
        git = Git(repo_root, scrub)
        configured = Identity(settings.author_name, settings.author_email) if settings.author_name else None
        message = scrub(f"trainboard: outputs of run {run.run_id} ({run.name})\n\n"
                        f"Run {run.run_id} of {run.branch} at {run.commit}.\n"
                        + (f"{run.verdict}\n" if run.verdict else ""))
        commit, previous = _push_outputs(git, settings.remote, branch, run.commit, plan.files, message,
                                         gitpush.identity(git, configured))
        footer = _footer(run, branch, commit)
        body = scrub(fit_body(rendered + "\n" + footer, BODY_LIMIT, where))
        comment_body = scrub(fit_body(f"{marker(run.name)}\n{rendered}\n{footer}", BODY_LIMIT, where))
        try:
            pr, created = client.call(
                f"opening the pull request {head_owner}:{branch} → {settings.base}",
                lambda: _open_or_update(repo, head_owner, head_repo, branch, settings.base, title, body, existing),
                needs="pull-requests: write",
            )
        except PublishError as exc:
            if previous:
                raise
            raise PublishError(f"{exc}; {_take_back(git, settings.remote, branch, commit)}") from None
        comment = client.call(f"writing the report comment on #{pr.number}",
                              lambda: _upsert_comment(pr, comment_body, run.name, login),
                              needs="pull-requests: write")
        posted: tuple[str, ...] = ()
        if settings.statuses:
            posted = _post_statuses(client, repo, commit, run, comment.html_url or actions_run_url(env))
        return PublishResult(
            pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url, created_pr=created,
            branch=branch, commit=commit, repo=repo_name, pr_ci=False, files=tuple(sorted(plan.files)),
            missing=plan.missing, withheld=plan.withheld, statuses=posted, notes=notes,
        )
    finally:
        client.close()


def _push_outputs(git: Git, remote: str, branch: str, run_commit: str, files: dict[str, bytes], message: str,
                  author: Identity) -> tuple[str, str]:
    """Commit the outputs on the branch's previous tip (the run's commit the first time)
    and push it as a fast-forward; another publish racing ours is built upon. Returns
    (the commit pushed, the tip it was built on, "" when the branch is new)."""
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        previous = gitpush.fetch_tip(git, remote, branch)
        commit = gitpush.commit_files(git, parent=previous or run_commit, tree_of=run_commit, files=files,
                                      message=message, author=author)
        try:
            gitpush.push_commit(git, remote=remote, commit=commit, branch=branch, create=not previous)
            return commit, previous
        except NotFastForward:
            if attempt == PUSH_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _take_back(git: Git, remote: str, branch: str, commit: str) -> str:
    """Delete the branch this publish created, as nothing will use it; what happened."""
    try:
        gitpush.delete_branch(git, remote=remote, branch=branch, expected=commit)
    except PushError as exc:
        return f"the outputs branch {branch} it pushed could not be deleted again ({exc}): delete it by hand"
    return f"the outputs branch {branch} it pushed was deleted again"


def _open_pull(repo: Repository, owner: str, branch: str, base: str) -> PullRequest | None:
    for pr in repo.get_pulls(state="open", head=f"{owner}:{branch}", base=base):
        if pr.base.ref == base:
            return pr
    return None


def _open_or_update(repo: Repository, head_owner: str, head_repo: str, branch: str, base: str, title: str,
                    body: str, existing: PullRequest | None) -> tuple[PullRequest, bool]:
    """The open pull request from ``head_owner:branch`` to ``base`` with this title and
    body; whether it is new. ``head_repo``: the fork, when the head lives in one."""
    from github.GithubException import GithubException

    pr = existing
    if pr is None:
        head = f"{head_owner}:{branch}" if head_repo else branch
        try:
            if head_repo:
                return repo.create_pull(base=base, head=head, head_repo=head_repo, title=title, body=body), True
            return repo.create_pull(base=base, head=head, title=title, body=body), True
        except GithubException as exc:
            # Opened by someone else since we looked (another run, a person): update that one.
            if exc.status != 422 or "already exists" not in _message(exc).lower():
                raise
            pr = _open_pull(repo, head_owner, branch, base)
            if pr is None:
                raise
    pr.edit(title=title, body=body)
    return pr, False

"""Publish a run to GitHub: its outputs on a branch, a pull request, one report comment.

``publish_run`` does it all, synchronously (a session calls it through
``asyncio.to_thread``):

1. Outside a pull request's CI, the run's outputs (DVC pointer files,
   ``dvc.lock``, the metrics file) and its report with plots are committed on top
   of the run's commit, in a temporary index, and pushed to
   ``trainboard/<source-branch>`` (see ``backend.gitpush``): one branch per
   source branch, so every run of a branch updates the same pull request.
2. The pull request from that branch to the base branch is opened, or, when one
   is already open, its title and body are updated to the latest report.
3. A single report comment (found by a hidden marker) is edited in place, or
   posted when there is none yet.

Inside a pull request's CI (``GITHUB_EVENT_NAME=pull_request`` and a
``GITHUB_EVENT_PATH`` holding the PR), nothing is pushed and no pull request is
opened: the report goes into the single report comment of *that* pull request.

The token comes from ``GITHUB_TOKEN`` (or the variable the settings name) and
never appears in what this module sends, pushes or raises: every body, title,
pushed text file and error message passes the run's redactor plus the token; a
binary file (a plot) holding a secret is not pushed at all.
Rate limits and 5xx answers are retried with backoff, within bounds; then one
:class:`PublishError` says what failed and what to do.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from backend import gitpush
from backend.gitpush import Git, Identity, PushError
from backend.redact import Redactor

if TYPE_CHECKING:
    from github.GithubException import GithubException
    from github.IssueComment import IssueComment
    from github.PullRequest import PullRequest
    from github.Repository import Repository

T = TypeVar("T")

MARKER = "<!-- trainboard-report -->"  # the hidden line that identifies trainboard's comment
BODY_LIMIT = 65536  # GitHub's limit on a pull request's or comment's body, in characters
TITLE_LIMIT = 250
REPORT_FILE = "report.md"
PR_EVENTS = ("pull_request", "pull_request_target")
DEFAULT_API_URL = "https://api.github.com"


class PublishError(Exception):
    """Publishing failed; the message says what and what to do, with secrets masked."""


@dataclass(frozen=True)
class GithubSettings:
    """How to reach GitHub and where to publish. Config section ``github:``."""

    repo: str = ""  # owner/name; "" → parsed from the remote's URL
    remote: str = "origin"  # the git remote the outputs branch is pushed to
    base: str = "main"  # the pull request's base branch (the session passes compare.base)
    api_url: str = DEFAULT_API_URL  # GitHub Enterprise: https://HOST/api/v3
    web_url: str = ""  # where plots are linked; "" → derived from api_url
    token_env: str = "GITHUB_TOKEN"  # the environment variable holding the token
    branch_prefix: str = gitpush.DEFAULT_PREFIX  # outputs branch: <prefix><source-branch>
    reports_dir: str = ".trainboard/reports"  # report and plots in the branch: <dir>/<source-branch>/
    author_name: str = ""  # the outputs commit's author; "" → git's identity, else trainboard's
    author_email: str = ""
    attempts: int = 5  # tries per GitHub operation on 5xx, rate limits and network errors
    backoff: float = 2.0  # seconds before the first retry of a 5xx; doubles each time
    max_wait: float = 300.0  # the longest single wait for a rate limit to reset, in seconds
    timeout: int = 30  # seconds per HTTP request
    seconds_between_requests: float = 0.25  # PyGithub's pacing (GitHub's guidance for integrations)
    seconds_between_writes: float = 1.0

    @property
    def web(self) -> str:
        """The web address that repository pages (and plot links) live under."""
        if self.web_url:
            return self.web_url.rstrip("/")
        api = self.api_url.rstrip("/")
        parts = urllib.parse.urlsplit(api)
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
    commit: str  # the run's commit (the outputs commit's parent)
    name: str = "trainboard"  # the config's name
    verdict: str = ""  # one line: the comparison's verdict


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


@dataclass(frozen=True)
class PullRequestEvent:
    """The pull request whose CI this is (GitHub Actions)."""

    number: int
    repo: str  # owner/name of the repository the pull request lives in
    head_ref: str


def pull_request_event(env: Mapping[str, str]) -> PullRequestEvent | None:
    """The pull request of a ``pull_request`` workflow run, from ``GITHUB_EVENT_PATH``."""
    name = env.get("GITHUB_EVENT_NAME", "")
    path = env.get("GITHUB_EVENT_PATH", "")
    if not path or (name and name not in PR_EVENTS):
        return None
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    pr = event.get("pull_request") if isinstance(event, dict) else None
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int):
        return None
    repo = ""
    for candidate in ((event.get("repository") or {}).get("full_name"),
                      ((pr.get("base") or {}).get("repo") or {}).get("full_name"),
                      env.get("GITHUB_REPOSITORY")):
        if isinstance(candidate, str) and "/" in candidate:
            repo = candidate
            break
    return PullRequestEvent(number=pr["number"], repo=repo, head_ref=str((pr.get("head") or {}).get("ref") or ""))


# ------------------------------------------------------------------ checks without the network


_REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")


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
    url = gitpush.remote_url(Git(repo_root), settings.remote)
    if not url:
        raise PublishError(f"the git remote {settings.remote!r} does not exist in {repo_root}: "
                           f"set github.remote to the remote to push to, or add it (`git remote add`)")
    parsed = gitpush.parse_github_repo(url)
    if parsed is None:
        shown = gitpush.scrub_url_credentials(url)
        raise PublishError(f"cannot tell the GitHub repository from remote {settings.remote!r} ({shown}): "
                           f"set github.repo: owner/name in the config")
    return parsed


def check(settings: GithubSettings, repo_root: Path, env: Mapping[str, str] | None = None) -> str:
    """What publishing needs before a run spends anything: the token is set and the
    repository is known. Returns ``owner/name``; raises :class:`PublishError`."""
    env = os.environ if env is None else env
    if not env.get(settings.token_env):
        raise PublishError(f"{settings.token_env} is not set: export a GitHub token that may push and open pull "
                           f"requests (in Actions: `env: {settings.token_env}: ${{{{ secrets.GITHUB_TOKEN }}}}` "
                           f"with `permissions: contents: write, pull-requests: write`)")
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


class _Client:
    """PyGithub behind bounded retries and masked errors."""

    def __init__(self, settings: GithubSettings, token: str, scrub: Callable[[str], str],
                 sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        from github import Auth, Github

        self.settings = settings
        self.scrub = scrub
        self.sleep = sleep
        self.clock = clock
        # Retries are ours (below): around whole operations, so that a retried POST
        # first looks for what an earlier, failed-looking try may have created.
        self.gh = Github(
            auth=Auth.Token(token),
            base_url=settings.api_url.rstrip("/"),
            timeout=settings.timeout,
            retry=None,
            seconds_between_requests=settings.seconds_between_requests or None,
            seconds_between_writes=settings.seconds_between_writes or None,
            user_agent="trainboard",
        )

    def close(self) -> None:
        self.gh.close()

    def call(self, what: str, operation: Callable[[], T]) -> T:
        """``operation()``, tried again on 5xx answers, rate limits and network errors:
        at most ``attempts`` times, waiting as GitHub asks (up to ``max_wait``) or with
        exponential backoff. Other failures raise :class:`PublishError` at once."""
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
                    raise self.error(what, exc) from None
            except requests.RequestException as exc:
                wait, delay = delay, delay * 2
                reason = f"network error ({type(exc).__name__}: {exc})"
            if attempt >= attempts:
                raise PublishError(self.scrub(
                    f"{what} failed after {attempts} tries: {reason}. GitHub may be down or limiting this "
                    f"token: retry later with `trainboard pr RUN`"
                    + (f" (api_url: {settings.api_url})" if settings.api_url != DEFAULT_API_URL else "")
                )) from None
            self.sleep(wait)

    def error(self, what: str, exc: GithubException) -> PublishError:
        status = exc.status
        message = _message(exc)
        hint = ""
        if status == 401:
            hint = f"GitHub refused the token in {self.settings.token_env} (expired, revoked or mistyped?)"
        elif status == 403:
            hint = ("the token may not do this: it needs `contents: write` and `pull-requests: write` "
                    "(fine-grained or Actions `permissions:`), or the `repo` scope; a fork's pull request "
                    "gets a read-only token")
        elif status == 404:
            hint = "not found, or the token cannot see it: check github.repo and the token's repository access"
        elif status == 422:
            hint = "GitHub rejected the request"
        text = f"{what}: GitHub answered {status}" + (f" ({message})" if message else "")
        text += f": {hint}" if hint else ""
        return PublishError(self.scrub(text))


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
        lines[-1] += f"; outputs on branch `{branch}` (commit `{commit[:10]}`), replaced by each run of `{run.branch}`"
    lines[-1] += ".*"
    return "\n".join(lines) + "\n"


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
    :class:`PublishError` with a message for the user.

    ``env`` is where the token and the GitHub Actions variables are read (default
    ``os.environ``); git runs with this process's environment. ``redact`` masks
    secrets (the session's :class:`~backend.redact.Redactor`); the token is masked
    whatever it is given.
    """
    env = os.environ if env is None else env
    token = env.get(settings.token_env, "")
    if not token:
        check(settings, repo_root, env)  # raises the message that says how to set it
    scrub = _combined_scrub(token, redact)
    try:
        return _publish(record_dir, repo_root, settings, run, dict(outputs or {}), env, token, scrub, sleep, clock)
    except PublishError:
        raise
    except PushError as exc:
        raise PublishError(scrub(f"pushing the run's outputs: {exc}")) from None
    except Exception as exc:  # PyGithub and requests errors can carry request data: never chain them
        raise PublishError(scrub(f"publishing to GitHub failed: {type(exc).__name__}: {exc}")) from None


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

    def resolve(target: str) -> str | None:
        path = plan.links.get(target) if branch else None
        return blob_url(web, repo_name, branch, path) if path else None

    def not_published(alt: str, target: str) -> str:
        if event is not None:
            why = "plots are not published from a pull request's CI"
        elif f"{report_dir}/{target}" in plan.withheld:
            why = "not published: the file holds a secret"
        else:
            why = "not found there"
        return f"*({alt or target}: `{target}` is in the run's folder, `.trainboard/runs/{run.run_id}/`; {why})*"

    rendered = rewrite_links(plan.report, resolve, not_published)
    where = f"`{report_dir}/{REPORT_FILE}` on branch `{branch}`" if branch else \
        f"`.trainboard/runs/{run.run_id}/{REPORT_FILE}`"
    title = scrub(_title(run))

    client = _Client(settings, token, scrub, sleep, clock)
    try:
        # First the repository: a refused token or an unknown repository fails before anything is pushed.
        repo = client.call(f"reading repository {repo_name}", lambda: client.gh.get_repo(repo_name))
        commit = ""
        if event is None:
            git = Git(repo_root, scrub)
            configured = Identity(settings.author_name, settings.author_email) if settings.author_name else None
            message = scrub(f"trainboard: outputs of run {run.run_id} ({run.name})\n\n"
                            f"Run {run.run_id} of {run.branch} at {run.commit}.\n"
                            + (f"{run.verdict}\n" if run.verdict else ""))
            commit = gitpush.commit_files(git, parent=run.commit, files=plan.files, message=message,
                                          author=gitpush.identity(git, configured))
            gitpush.push_commit(git, remote=settings.remote, commit=commit, branch=branch)
        footer = _footer(run, branch, commit)
        body = scrub(fit_body(rendered + "\n" + footer, BODY_LIMIT, where))
        comment_body = scrub(fit_body(f"{MARKER}\n{rendered}\n{footer}", BODY_LIMIT, where))
        if event is not None:
            pr = client.call(f"reading pull request #{event.number}", lambda: repo.get_pull(event.number))
            created = False
        else:
            pr, created = client.call(
                f"opening the pull request {branch} → {settings.base}",
                lambda: _open_or_update(repo, repo_name, branch, settings.base, title, body),
            )
        comment = client.call(f"writing the report comment on #{pr.number}", lambda: _upsert_comment(pr, comment_body))
        return PublishResult(
            pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url, created_pr=created,
            branch=branch, commit=commit, repo=repo_name, pr_ci=event is not None,
            files=tuple(sorted(plan.files)) if event is None else (), missing=plan.missing,
            withheld=plan.withheld,
        )
    finally:
        client.close()


def _open_pull(repo: Repository, owner: str, branch: str, base: str) -> PullRequest | None:
    for pr in repo.get_pulls(state="open", head=f"{owner}:{branch}"):
        if pr.base.ref == base:
            return pr
    return None


def _open_or_update(repo: Repository, repo_name: str, branch: str, base: str, title: str,
                    body: str) -> tuple[PullRequest, bool]:
    """The open pull request from ``branch`` to ``base`` with this title and body; whether it is new."""
    from github.GithubException import GithubException

    owner = repo_name.split("/", 1)[0]
    pr = _open_pull(repo, owner, branch, base)
    if pr is None:
        try:
            return repo.create_pull(base=base, head=branch, title=title, body=body), True
        except GithubException as exc:
            # Opened by someone else since we looked (another run, a person): update that one.
            if exc.status != 422 or "already exists" not in _message(exc).lower():
                raise
            pr = _open_pull(repo, owner, branch, base)
            if pr is None:
                raise
    pr.edit(title=title, body=body)
    return pr, False


def _upsert_comment(pr: PullRequest, body: str) -> IssueComment:
    """Edit the comment that carries the marker, or post it."""
    for comment in pr.get_issue_comments():
        if MARKER in (comment.body or ""):
            if comment.body != body:
                comment.edit(body)
            return comment
    return pr.create_issue_comment(body)

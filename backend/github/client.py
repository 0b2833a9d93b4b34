"""GitHub's REST API through PyGithub: bounded retries on 5xx answers, rate limits and
network errors, one masked :class:`~trainboard.backend.github.common.PublishError` that says
which permission or setting is missing, and the first reads of a publish (the repository,
what the token may do there, who the token is)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from trainboard.backend.github.common import (
    ACTIONS_BOT,
    DEFAULT_API_URL,
    READ_ONLY_FORK,
    GithubSettings,
    PublishError,
)

if TYPE_CHECKING:
    from github.GithubException import GithubException
    from github.Repository import Repository

T = TypeVar("T")


def _header(exc: GithubException, name: str) -> str:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def message_of(exc: GithubException) -> str:
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
    message = message_of(exc).lower()
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
class Where:
    """What the error messages need to know about where this runs."""

    actions: bool = False  # inside GitHub Actions (the token is most likely GITHUB_TOKEN)
    fork_pr: bool = False  # a pull request from a fork: its token is read-only
    api_inferred: bool = False  # api_url was inferred from the remote's host


class Client:
    """PyGithub behind bounded retries and masked errors."""

    def __init__(self, settings: GithubSettings, token: str, scrub: Callable[[str], str],
                 sleep: Callable[[float], None], clock: Callable[[], float], where: Where | None = None) -> None:
        from github import Auth, Github

        self.settings = settings
        self.scrub = scrub
        self.sleep = sleep
        self.clock = clock
        self.where = where or Where()
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
                    reason = f"rate limited ({exc.status}: {message_of(exc)})"
                elif exc.status >= 500:
                    wait, delay = delay, delay * 2
                    reason = f"GitHub answered {exc.status}" + (f" ({message_of(exc)})" if message_of(exc) else "")
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
        message = message_of(exc)
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
            return f"GET /rate_limit: {exc.status}" + (f" ({message_of(exc)})" if message_of(exc) else "")
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


def read_repo(client: Client, repo_name: str) -> Repository:
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


def permissions(repo: Repository) -> dict[str, bool] | None:
    perms = repo.raw_data.get("permissions")
    return {k: bool(v) for k, v in perms.items()} if isinstance(perms, dict) else None



def own_login(client: Client) -> str:
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

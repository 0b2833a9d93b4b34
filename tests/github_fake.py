"""A small local server speaking GitHub's REST API, for the endpoints trainboard uses,
held to GitHub's own OpenAPI description.

It answers as api.github.com does (or a GitHub Enterprise server, under an
``/api/v3`` prefix: then the GHES description is the contract). Every request is
validated against the description (tests/openapi_support.py) before it is handled:
method, path, query and JSON body, with one strictness GitHub lacks (a field the
description does not document is refused). A request that fails is answered 422
(400 for unparsable JSON) as GitHub would, and recorded in ``protocol_errors``.
Every answer is validated before it is sent; one that fails is a bug in the fake,
answered 500 and recorded too. ``stop()`` (the end of ``with FakeGitHub(...)``)
raises if any protocol error was recorded and not taken with
``take_protocol_errors()``: a silently wrong request cannot pass a test. A request
to a path the fake does not serve is a protocol error too (404).

State: pull requests, issue comments (with their authors), commit statuses per
sha, locked conversations, forks, tokens with permissions. With a bare git
repository behind it, opening a pull request checks that both branches exist
there and that the head has commits the base does not, as GitHub does.

Tokens (``add_token``): the constructor's ``token`` is a person's token for
``login`` with write access. Others can be registered:
  - ``actions=True``: a GitHub Actions ``GITHUB_TOKEN``. Its identity is the
    ``github-actions[bot]`` app (``ACTIONS_BOT``): it authors what it creates, and
    ``GET /user`` answers it 403 as GitHub does for an installation token.
    ``POST /pulls`` with it answers 403 "GitHub Actions is not permitted to create
    or approve pull requests." unless ``allow_actions_pull_requests`` is set (the
    repository setting, off by default as on new repositories).
  - ``read_only=True``: every permission ``read`` (a fork pull request's token):
    every write answers 403 "Resource not accessible by integration".
  - ``permissions={"pull_requests": "read", ...}``: per scope (``contents``,
    ``pull_requests``, ``issues``, ``statuses``); a write that needs a scope the
    token lacks answers 403 "Resource not accessible by integration", with
    ``x-accepted-github-permissions`` naming the scopes. Creating or editing a
    pull request needs ``pull_requests``; a comment on one needs ``issues`` or
    ``pull_requests``; a status needs ``statuses``. A repository's
    ``permissions`` are the requesting token's (``push`` with ``contents: write``).

Forks (``add_fork(owner)``): a repository ``owner/<name>`` whose parent is this
one, optionally with its own bare repository for its branches. A pull request
with ``head="owner:branch"`` takes its head from the fork (``head.repo`` is the
fork, ``head.label`` is ``owner:branch``); ``GET /pulls?head=owner:branch``
finds it. A bare ``head`` names a branch of this repository.

Locked conversations (``lock(number)`` or ``PUT …/issues/{n}/lock``): a comment
on one answers 403 "Unable to create comment because issue is locked." to an
Actions token or a token without push access; a person with push access can
still comment, as on GitHub.

Statuses: ``POST /statuses/{sha}`` stores one per sha (``statuses_for(sha)``);
``GET /commits/{ref}/statuses`` lists them newest first and
``GET /commits/{ref}/status`` combines the latest per context; ``ref`` is a sha
or a branch of the bare repository.

Branch rules live on the git side: ``deny_force_push(bare_repo)`` makes the bare
remote refuse non-fast-forward pushes.

Faults for the tests: answer the next N requests with a 5xx; exhaust the rate
limit for a few seconds (403, ``x-ratelimit-remaining: 0``, ``x-ratelimit-reset``);
answer 429 with ``retry-after``. Every request is recorded (``recorded()``).

The API for tests, in short: ``add_token``, ``add_fork``, ``allow_actions_pull_requests``,
``open_pull(head, base, user=)``, ``add_comment(number, body, user=)``, ``lock``,
``pulls``, ``comments_on``, ``statuses_for``, ``recorded``, ``fail_next``,
``exhaust_rate_limit``, ``too_many_requests``, ``on_request``, ``take_protocol_errors``;
``deny_force_push(bare_repo)``.

Endpoints: see ``tests.openapi_support.OPERATIONS``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests import openapi_support
from tests.openapi_support import OPERATIONS, Contract

BODY_LIMIT = 65536
DOCS = "https://docs.github.com/rest"
RATE_LIMIT = 5000
ACTIONS_BOT = "github-actions[bot]"
ACTIONS_BOT_ID = 41898282
NOT_ACCESSIBLE = "Resource not accessible by integration"
ACTIONS_MAY_NOT_OPEN = "GitHub Actions is not permitted to create or approve pull requests."
LOCKED = "Unable to create comment because issue is locked."
SCOPES = ("contents", "pull_requests", "issues", "statuses")
# Answers any endpoint can give whether or not its description lists them.
_ANY_ENDPOINT = {400, 401, 403, 404, 422, 429, 500, 502, 503, 504}
# The pull request fields that only the single-PR shape has (the list gives pull-request-simple).
_FULL_ONLY = ("additions", "changed_files", "comments", "commits", "deletions", "maintainer_can_modify", "mergeable",
              "mergeable_state", "merged", "merged_by", "rebaseable", "review_comments")


def deny_force_push(bare_repo: Path) -> None:
    """The bare remote refuses non-fast-forward pushes (a "no force push" branch rule)."""
    subprocess.run(["git", "config", "receive.denyNonFastForwards", "true"], cwd=bare_repo, check=True)


@dataclass
class Recorded:
    """One request as the fake received it, and its answer's status."""

    method: str
    path: str  # without the API prefix, without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    status: int = 0

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Token:
    """A token the fake accepts: whose it is and what it may do."""

    login: str
    actions: bool = False
    permissions: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SCOPES, "write"))

    def may_write(self, *scopes: str) -> bool:
        return any(self.permissions.get(scope) == "write" for scope in scopes)


@dataclass
class Fork:
    owner: str
    name: str
    bare_repo: Path | None = None


@dataclass
class _Fault:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None


class HttpAnswer(Exception):
    """Raised inside a handler to answer with an error."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _validation(errors: list[dict[str, Any]], doc: str) -> HttpAnswer:
    return HttpAnswer(422, {"message": "Validation Failed", "errors": errors, "documentation_url": f"{DOCS}/{doc}"})


def _forbidden(message: str, doc: str = "") -> HttpAnswer:
    return HttpAnswer(403, {"message": message, "documentation_url": f"{DOCS}/{doc}" if doc else DOCS})


def _not_found() -> HttpAnswer:
    return HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _route_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


_ROUTES = [(method, template, _route_pattern(template)) for method, template in OPERATIONS]


def match_route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The description's path template for a request, and its path parameters."""
    for op_method, template, pattern in _ROUTES:
        found = pattern.match(path)
        if found and op_method == method.lower():
            return template, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
    return None


@dataclass
class FakeGitHub:
    """The server and its state. Use as a context manager, or start()/stop()."""

    token: str
    owner: str = "octo"
    name: str = "models"
    prefix: str = ""  # "/api/v3" to look like GitHub Enterprise
    bare_repo: Path | None = None  # branches for pull requests come from here
    login: str = "trainboard-bot"
    default_branch: str = "main"
    allow_actions_pull_requests: bool = False  # "Allow GitHub Actions to create and approve pull requests"

    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → comment (with "_issue")
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha → statuses, oldest first
    tokens: dict[str, Token] = field(default_factory=dict)
    forks: dict[str, Fork] = field(default_factory=dict)  # full name → fork
    requests: list[Recorded] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    on_request: list[Callable[[Recorded], None]] = field(default_factory=list)  # before each answer is sent

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._limited_until = 0.0
        self._next_number = 1
        self._next_comment = 1000
        self._next_status = 5000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.tokens.setdefault(self.token, Token(self.login))
        self.contract: Contract | None = None
        self._viewer: Token | None = None  # the token of the request being answered

    # ------------------------------------------------------------------ life

    def start(self) -> FakeGitHub:
        variant = openapi_support.ENTERPRISE if self.prefix else openapi_support.CLOUD
        self.contract = openapi_support.contract(variant)  # once per process; a clear error if not installed
        fake = self

        class Handler(_Handler):
            github = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-github",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        errors = self.take_protocol_errors()
        if errors:
            raise AssertionError("the GitHub stand-in recorded requests or answers that GitHub's OpenAPI "
                                 "description refuses:\n" + "\n".join(errors))

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.root + self.prefix

    @property
    def web_url(self) -> str:
        return self.root  # html_url values live here, as on github.com (no /api/v3)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # ------------------------------------------------------------------ faults

    def fail_next(self, count: int, status: int = 502, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next ``count`` requests with ``status``."""
        with self._lock:
            for _ in range(count):
                self._faults.append(_Fault(status, dict(headers or {}), body))

    def exhaust_rate_limit(self, seconds: float) -> float:
        """Every request gets GitHub's primary rate limit answer until ``seconds`` from
        now, rounded up to the whole second ``x-ratelimit-reset`` names. Returns the reset."""
        with self._lock:
            self._limited_until = float(int(time.time() + seconds) + 1)
            return self._limited_until

    def too_many_requests(self, count: int, retry_after: int = 1) -> None:
        """The next ``count`` requests get 429 with ``retry-after`` (a secondary rate limit)."""
        self.fail_next(count, 429, {"message": "You have exceeded a secondary rate limit. "
                                               "Please wait a few minutes before you try again.",
                                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"},
                       {"retry-after": str(retry_after)})

    # ------------------------------------------------------------------ state helpers for tests

    def add_token(self, value: str, login: str | None = None, *, actions: bool = False, read_only: bool = False,
                  permissions: dict[str, str] | None = None) -> Token:
        """Accept ``value`` as a token (see the module's docstring)."""
        scopes = dict.fromkeys(SCOPES, "read" if read_only else "write")
        scopes.update(permissions or {})
        token = Token(ACTIONS_BOT if actions else (login or self.login), actions, scopes)
        with self._lock:
            self.tokens[value] = token
        return token

    def add_fork(self, owner: str, bare_repo: Path | None = None, name: str | None = None) -> str:
        """A fork of this repository owned by ``owner``; returns its full name."""
        fork = Fork(owner, name or self.name, bare_repo)
        with self._lock:
            self.forks[f"{fork.owner}/{fork.name}"] = fork
        return f"{fork.owner}/{fork.name}"

    def lock(self, number: int, reason: str | None = None) -> None:
        with self._lock:
            self.pulls[number]["locked"] = True
            self.pulls[number]["active_lock_reason"] = reason

    def open_pull(self, head: str, base: str, title: str = "A person's pull request", body: str = "",
                  user: str = "a-person") -> dict[str, Any]:
        """A pull request opened by someone else (no checks: the branches need not exist).
        ``head`` may be ``owner:branch`` for a registered fork."""
        with self._lock:
            return self._new_pull(head, base, title, body, user, draft=False)

    def add_comment(self, number: int, body: str, user: str = "a-person") -> dict[str, Any]:
        with self._lock:
            return self._new_comment(number, body, user)

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.comments.values() if c["_issue"] == number]

    def statuses_for(self, sha: str) -> list[dict[str, Any]]:
        """The statuses posted on ``sha``, oldest first."""
        with self._lock:
            return list(self.statuses.get(sha, []))

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def take_protocol_errors(self) -> list[str]:
        """The protocol errors recorded so far, cleared (for tests that provoke them)."""
        with self._lock:
            errors, self.protocol_errors[:] = list(self.protocol_errors), []
            return errors

    # ------------------------------------------------------------------ shapes

    def _user(self, login: str) -> dict[str, Any]:
        """simple-user"""
        if login == ACTIONS_BOT:
            uid, kind = ACTIONS_BOT_ID, "Bot"
        else:
            uid, kind = (1 if login == self.login else 2 + sum(map(ord, login))), "User"
        api = f"{self.api_url}/users/{urllib.parse.quote(login)}"
        return {
            "login": login, "id": uid, "node_id": f"U_{uid}", "type": kind, "site_admin": False,
            "url": api, "html_url": f"{self.web_url}/{login}", "avatar_url": f"{self.web_url}/avatars/{login}",
            "gravatar_id": "", "events_url": api + "/events{/privacy}", "followers_url": api + "/followers",
            "following_url": api + "/following{/other_user}", "gists_url": api + "/gists{/gist_id}",
            "organizations_url": api + "/orgs", "received_events_url": api + "/received_events",
            "repos_url": api + "/repos", "starred_url": api + "/starred{/owner}{/repo}",
            "subscriptions_url": api + "/subscriptions",
        }

    def _private_user(self, login: str) -> dict[str, Any]:
        """GET /user: the token's own profile (private-user)."""
        return {
            **self._user(login), "user_view_type": "private", "name": None, "company": None, "blog": "",
            "location": None, "email": None, "hireable": None, "bio": None, "public_repos": 1, "public_gists": 0,
            "followers": 0, "following": 0, "created_at": "2024-01-01T00:00:00Z", "updated_at": _now(),
            "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0, "disk_usage": 0,
            "collaborators": 0, "two_factor_authentication": True,
        }

    def _repository(self, owner: str, name: str, fork: bool = False) -> dict[str, Any]:
        """repository (a pull request's head.repo and base.repo)"""
        full = f"{owner}/{name}"
        api = f"{self.api_url}/repos/{full}"
        html = f"{self.web_url}/{full}"
        rid = 4242 if full == self.full_name else 5000 + sum(map(ord, full))
        urls = {f"{stem}_url": f"{api}/{path}" for stem, path in (
            ("archive", "{archive_format}{/ref}"), ("assignees", "assignees{/user}"), ("blobs", "git/blobs{/sha}"),
            ("branches", "branches{/branch}"), ("collaborators", "collaborators{/collaborator}"),
            ("comments", "comments{/number}"), ("commits", "commits{/sha}"), ("compare", "compare/{base}...{head}"),
            ("contents", "contents/{+path}"), ("contributors", "contributors"), ("deployments", "deployments"),
            ("downloads", "downloads"), ("events", "events"), ("forks", "forks"),
            ("git_commits", "git/commits{/sha}"), ("git_refs", "git/refs{/sha}"), ("git_tags", "git/tags{/sha}"),
            ("hooks", "hooks"), ("issue_comment", "issues/comments{/number}"),
            ("issue_events", "issues/events{/number}"), ("issues", "issues{/number}"), ("keys", "keys{/key_id}"),
            ("labels", "labels{/name}"), ("languages", "languages"), ("merges", "merges"),
            ("milestones", "milestones{/number}"), ("notifications", "notifications{?since,all,participating}"),
            ("pulls", "pulls{/number}"), ("releases", "releases{/id}"), ("stargazers", "stargazers"),
            ("statuses", "statuses/{sha}"), ("subscribers", "subscribers"), ("subscription", "subscription"),
            ("tags", "tags"), ("teams", "teams"), ("trees", "git/trees{/sha}"))}
        return {
            "id": rid, "node_id": f"R_{rid}", "name": name, "full_name": full, "owner": self._user(owner),
            "private": False, "fork": fork, "html_url": html, "url": api, "description": None, "homepage": None,
            **urls, "clone_url": html + ".git", "git_url": f"git://{html.split('://', 1)[1]}.git",
            "ssh_url": f"git@127.0.0.1:{full}.git", "svn_url": html, "mirror_url": None,
            "default_branch": self.default_branch, "visibility": "public", "language": "Python", "license": None,
            "forks": len(self.forks) if not fork else 0, "forks_count": len(self.forks) if not fork else 0,
            "open_issues": 0, "open_issues_count": 0, "watchers": 0, "watchers_count": 0, "stargazers_count": 0,
            "size": 1, "has_issues": True, "has_projects": False, "has_wiki": False, "has_pages": False,
            "has_downloads": True, "archived": False, "disabled": False,
            "permissions": self._viewer_permissions(),
            "pushed_at": _now(), "created_at": "2024-01-01T00:00:00Z", "updated_at": _now(),
        }

    def _viewer_permissions(self) -> dict[str, bool]:
        """A repository's ``permissions`` as the requesting token sees them: push with
        ``contents: write``, triage with push or a write on issues or pull requests."""
        token = self._viewer or self.tokens[self.token]
        push = token.may_write("contents")
        return {"admin": False, "maintain": False, "push": push,
                "triage": push or token.may_write("issues", "pull_requests"), "pull": True}

    def _full_repository(self, owner: str, name: str) -> dict[str, Any]:
        """GET /repos/{owner}/{repo} (full-repository); a fork names its parent and source."""
        fork = f"{owner}/{name}" != self.full_name
        repo = {**self._repository(owner, name, fork), "has_discussions": False, "network_count": len(self.forks),
                "subscribers_count": 0}
        if fork:
            repo["parent"] = repo["source"] = self._repository(self.owner, self.name)
        return repo

    def _minimal_repository(self) -> dict[str, Any]:
        """combined-commit-status's repository (minimal-repository)"""
        repo = self._repository(self.owner, self.name)
        for key in ("mirror_url", "svn_url", "homepage", "git_url", "ssh_url", "clone_url", "has_downloads"):
            repo.pop(key, None)
        return repo

    def _sha(self, ref: str, bare_repo: Path | None = None) -> str:
        bare = bare_repo or self.bare_repo
        if bare is None:
            return "0" * 40
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}^{{commit}}"],
                             cwd=bare, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    def _split_head(self, head: str) -> tuple[str, str, Fork | None]:
        """``owner:branch`` or ``branch`` → (owner, branch, fork or None). A foreign owner
        that is no registered fork gives the owner with fork None."""
        owner, sep, ref = head.partition(":")
        if not sep:
            return self.owner, head, None
        if owner == self.owner:
            return owner, ref, None
        fork = next((f for f in self.forks.values() if f.owner == owner), None)
        return owner, ref, fork

    def _branch(self, owner: str, ref: str, sha: str, fork: Fork | None = None) -> dict[str, Any]:
        repo = self._repository(fork.owner, fork.name, True) if fork else self._repository(self.owner, self.name)
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": self._user(owner), "repo": repo}

    def _new_pull(self, head: str, base: str, title: str, body: str | None, user: str, draft: bool,
                  maintainer_can_modify: bool = False) -> dict[str, Any]:
        number = self._next_number
        self._next_number += 1
        api = f"{self.api_url}/repos/{self.full_name}"
        html = f"{self.web_url}/{self.full_name}/pull/{number}"
        owner, head_ref, fork = self._split_head(head)
        head_sha = self._sha(head_ref, fork.bare_repo if fork else None) or "0" * 40
        now = _now()
        links = {"self": f"{api}/pulls/{number}", "html": html, "issue": f"{api}/issues/{number}",
                 "comments": f"{api}/issues/{number}/comments", "review_comments": f"{api}/pulls/{number}/comments",
                 "review_comment": f"{api}/pulls/comments{{/number}}", "commits": f"{api}/pulls/{number}/commits",
                 "statuses": f"{api}/statuses/{head_sha}"}
        pr = {
            "url": links["self"], "id": 90000 + number, "node_id": f"PR_{number}",
            "html_url": html, "diff_url": html + ".diff", "patch_url": html + ".patch",
            "issue_url": links["issue"], "commits_url": links["commits"],
            "review_comments_url": links["review_comments"], "review_comment_url": links["review_comment"],
            "comments_url": links["comments"], "statuses_url": links["statuses"],
            "number": number, "state": "open", "locked": False, "title": title, "user": self._user(user),
            "body": body, "labels": [], "milestone": None, "active_lock_reason": None,
            "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merge_commit_sha": None,
            "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": self._branch(owner, head_ref, head_sha, fork),
            "base": self._branch(self.owner, base, self._sha(base) or "0" * 40),
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": "CONTRIBUTOR", "auto_merge": None, "draft": draft,
            "merged": False, "mergeable": None, "rebaseable": None, "mergeable_state": "unknown", "merged_by": None,
            "comments": 0, "review_comments": 0, "maintainer_can_modify": maintainer_can_modify, "commits": 1,
            "additions": 1, "deletions": 0, "changed_files": 1,
        }
        self.pulls[number] = pr
        return pr

    def _new_comment(self, number: int, body: str, user: str) -> dict[str, Any]:
        cid = self._next_comment
        self._next_comment += 1
        api = f"{self.api_url}/repos/{self.full_name}"
        now = _now()
        comment = {
            "id": cid, "node_id": f"IC_{cid}", "url": f"{api}/issues/comments/{cid}",
            "html_url": f"{self.web_url}/{self.full_name}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{api}/issues/{number}", "body": body, "user": self._user(user),
            "created_at": now, "updated_at": now,
            "author_association": "NONE" if user == ACTIONS_BOT else "CONTRIBUTOR",
            "performed_via_github_app": None, "_issue": number,
        }
        self.comments[cid] = comment
        self.pulls[number]["comments"] += 1
        return comment

    def _new_status(self, sha: str, data: dict[str, Any], creator: str) -> dict[str, Any]:
        sid = self._next_status
        self._next_status += 1
        now = _now()
        status = {
            "id": sid, "node_id": f"SC_{sid}", "url": f"{self.api_url}/repos/{self.full_name}/statuses/{sha}",
            "avatar_url": f"{self.web_url}/avatars/{creator}", "state": data["state"],
            "description": data.get("description"), "target_url": data.get("target_url"),
            "context": data.get("context", "default"), "created_at": now, "updated_at": now,
            "creator": self._user(creator),
        }
        self.statuses.setdefault(sha, []).append(status)
        return status

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k != "_issue"}  # the fake's own bookkeeping

    # ------------------------------------------------------------------ routing

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: str) -> tuple[int, Any, dict[str, str]]:
        """One request → (status, JSON, extra headers). Runs under the lock."""
        with self._lock:
            token = self._authorize(headers)
            if self._limited_until and time.time() < self._limited_until:
                raise HttpAnswer(403, {
                    "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for "
                               "help, please include the request ID.",
                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                }, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(self._limited_until))})
            if self._faults:
                fault = self._faults.pop(0)
                raise HttpAnswer(fault.status, fault.body or {"message": "Server Error"}, fault.headers)
            data = self._parse(body) if method in ("POST", "PATCH", "PUT") else None
            self._viewer = token
            try:
                return self._route(method, path, query, data, token)
            finally:
                self._viewer = None

    def _authorize(self, headers: dict[str, str]) -> Token:
        value = headers.get("authorization", "")
        if not value:
            raise HttpAnswer(401, {"message": "Requires authentication", "documentation_url": DOCS})
        scheme, _, given = value.partition(" ")
        token = self.tokens.get(given)
        if scheme.lower() not in ("token", "bearer") or token is None:
            raise HttpAnswer(401, {"message": "Bad credentials", "documentation_url": DOCS})
        return token

    @staticmethod
    def _parse(body: str) -> dict[str, Any]:
        try:
            data = json.loads(body or "{}")
        except ValueError:
            raise HttpAnswer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS}) from None
        if not isinstance(data, dict):
            raise HttpAnswer(400, {"message": "Body should be a JSON object", "documentation_url": DOCS})
        return data

    @staticmethod
    def _require(token: Token, *scopes: str) -> None:
        """403 unless the token may write one of ``scopes``; GitHub names them in
        ``x-accepted-github-permissions`` (alternatives separated by ``;``)."""
        if not token.may_write(*scopes):
            raise HttpAnswer(403, {"message": NOT_ACCESSIBLE, "documentation_url": DOCS},
                             {"x-accepted-github-permissions": "; ".join(f"{s}=write" for s in scopes)})

    def _route(self, method: str, path: str, query: dict[str, str], data: dict[str, Any] | None,
               token: Token) -> tuple[int, Any, dict[str, str]]:
        route = match_route(method, path)
        if route is None:
            raise _not_found()
        template, params = route
        if template == "/user":
            if token.actions:  # an installation token has no user
                raise _forbidden(NOT_ACCESSIBLE, "users/users#get-the-authenticated-user")
            return 200, self._private_user(token.login), {}
        if template == "/rate_limit":
            core = {"limit": RATE_LIMIT, "remaining": RATE_LIMIT - 1, "reset": int(time.time()) + 3600, "used": 1}
            return 200, {"resources": {"core": core, "search": dict(core, limit=30, remaining=30, used=0)},
                         "rate": core}, {}
        full = f"{params['owner']}/{params['repo']}"
        if template == "/repos/{owner}/{repo}" and full in self.forks:
            return 200, self._full_repository(params["owner"], params["repo"]), {}
        if full != self.full_name:
            raise _not_found()
        match method, template.removeprefix("/repos/{owner}/{repo}"):
            case "GET", "":
                repo = self._full_repository(self.owner, self.name)
                # What this token may do here (a read-only token: pull only).
                repo["permissions"] = dict(repo["permissions"], push=token.may_write("contents"),
                                           triage=token.may_write("issues", "pull_requests"))
                return 200, repo, {}
            case "GET", "/pulls":
                return self._page(self._list_pulls(query), query, path)
            case "POST", "/pulls":
                assert data is not None
                self._require(token, "pull_requests")
                if token.actions and not self.allow_actions_pull_requests:
                    raise _forbidden(ACTIONS_MAY_NOT_OPEN, "pulls/pulls#create-a-pull-request")
                pr = self._create_pull(data, token)
                return 201, pr, {"location": pr["url"]}
            case "GET", "/pulls/{pull_number}":
                return 200, self._public(self._pull(params["pull_number"])), {}
            case "PATCH", "/pulls/{pull_number}":
                assert data is not None
                pr = self._pull(params["pull_number"])
                self._require(token, "pull_requests")
                return 200, self._edit_pull(pr, data), {}
            case "GET", "/issues/{issue_number}/comments":
                pr = self._pull(params["issue_number"])
                return self._page([self._public(c) for c in self.comments_on(pr["number"])], query, path)
            case "POST", "/issues/{issue_number}/comments":
                assert data is not None
                pr = self._pull(params["issue_number"])
                self._require(token, "issues", "pull_requests")
                if pr["locked"] and (token.actions or not token.may_write("contents")):
                    raise HttpAnswer(403, {"message": LOCKED,
                                           "documentation_url": "https://docs.github.com/articles/locking-conversations"})
                self._body_limit(data["body"], "IssueComment")
                comment = self._new_comment(pr["number"], data["body"], token.login)
                return 201, self._public(comment), {"location": comment["url"]}
            case "GET", "/issues/comments/{comment_id}":
                return 200, self._public(self._comment(params["comment_id"])), {}
            case "PATCH", "/issues/comments/{comment_id}":
                assert data is not None
                comment = self._comment(params["comment_id"])
                self._require(token, "issues", "pull_requests")
                self._body_limit(data["body"], "IssueComment")
                comment["body"] = data["body"]
                comment["updated_at"] = _now()
                return 200, self._public(comment), {}
            case "PUT", "/issues/{issue_number}/lock":
                assert data is not None
                pr = self._pull(params["issue_number"])
                self._require(token, "issues", "pull_requests")
                pr["locked"], pr["active_lock_reason"] = True, data.get("lock_reason")
                return 204, None, {}
            case "DELETE", "/issues/{issue_number}/lock":
                pr = self._pull(params["issue_number"])
                self._require(token, "issues", "pull_requests")
                pr["locked"], pr["active_lock_reason"] = False, None
                return 204, None, {}
            case "POST", "/statuses/{sha}":
                assert data is not None
                self._require(token, "statuses")
                sha = params["sha"]
                if not re.fullmatch(r"[0-9a-f]{40}", sha) or (self.bare_repo is not None and not self._has_commit(sha)):
                    raise _validation([{"resource": "Status", "field": "sha", "code": "invalid"}],
                                      "commits/statuses#create-a-commit-status")
                return 201, self._new_status(sha, data, token.login), {"location": f"{self.api_url}{path}"}
            case "GET", "/commits/{ref}":
                return 200, self._commit(self._resolve(params["ref"])), {}
            case "GET", "/commits/{ref}/statuses":
                sha = self._resolve(params["ref"])
                return self._page(list(reversed(self.statuses.get(sha, []))), query, path)
            case "GET", "/commits/{ref}/status":
                return 200, self._combined(self._resolve(params["ref"])), {}
        raise _not_found()

    def _pull(self, number: str) -> dict[str, Any]:
        pr = self.pulls.get(int(number)) if number.isdigit() else None
        if pr is None:
            raise _not_found()
        return pr

    def _comment(self, cid: str) -> dict[str, Any]:
        comment = self.comments.get(int(cid)) if cid.isdigit() else None
        if comment is None:
            raise _not_found()
        return comment

    def _has_commit(self, sha: str) -> bool:
        assert self.bare_repo is not None
        return subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=self.bare_repo,
                              capture_output=True).returncode == 0

    def _resolve(self, ref: str) -> str:
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        sha = self._sha(ref) if self.bare_repo is not None else ""
        if not sha:
            raise HttpAnswer(422, {"message": f"No commit found for SHA: {ref}", "documentation_url": DOCS})
        return sha

    def _commit(self, sha: str) -> dict[str, Any]:
        """GET /commits/{ref} (commit), read from the bare repository."""
        fields = ["", "", "", "", "", "", "", ""]
        if self.bare_repo is not None:
            fmt = "%x00".join(("%T", "%P", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"))
            out = subprocess.run(["git", "show", "-s", f"--format={fmt}", sha], cwd=self.bare_repo,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise HttpAnswer(422, {"message": f"No commit found for SHA: {sha}", "documentation_url": DOCS})
            fields = out.stdout.split("\x00")
        tree, parents, an, ae, ad, cn, ce, cd, message = (fields + [""] * 9)[:9]
        api = f"{self.api_url}/repos/{self.full_name}"
        html = f"{self.web_url}/{self.full_name}"
        return {
            "url": f"{api}/commits/{sha}", "sha": sha, "node_id": f"C_{sha[:12]}", "html_url": f"{html}/commit/{sha}",
            "comments_url": f"{api}/commits/{sha}/comments",
            "commit": {"url": f"{api}/git/commits/{sha}", "message": message.rstrip("\n"), "comment_count": 0,
                       "author": {"name": an, "email": ae, "date": ad or _now()},
                       "committer": {"name": cn, "email": ce, "date": cd or _now()},
                       "tree": {"sha": tree or "0" * 40, "url": f"{api}/git/trees/{tree or '0' * 40}"}},
            # no GitHub account for the git identity: GitHub documents null or {} (openapi-core
            # does not take null beside the description's oneOf, so {})
            "author": {}, "committer": {},
            "parents": [{"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
                        for p in parents.split()],
        }

    def _combined(self, sha: str) -> dict[str, Any]:
        latest: dict[str, dict[str, Any]] = {}
        for status in self.statuses.get(sha, []):
            latest[status["context"].lower()] = status
        states = {s["state"] for s in latest.values()}
        state = ("failure" if states & {"error", "failure"} else
                 "pending" if not states or "pending" in states else "success")
        simple = [{k: v for k, v in s.items() if k != "creator"} for s in latest.values()]
        api = f"{self.api_url}/repos/{self.full_name}"
        return {"state": state, "sha": sha, "total_count": len(simple), "statuses": simple,
                "repository": self._minimal_repository(), "commit_url": f"{api}/commits/{sha}",
                "url": f"{api}/commits/{sha}/status"}

    @staticmethod
    def _body_limit(body: str | None, resource: str) -> None:
        if body is not None and len(body) > BODY_LIMIT:
            raise _validation([{"resource": resource, "code": "custom", "field": "body",
                                "message": f"body is too long (maximum is {BODY_LIMIT} characters)"}],
                              "pulls/pulls")

    def _list_pulls(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        found = []
        for pr in self.pulls.values():
            if state != "all" and pr["state"] != state:
                continue
            if "head" in query:
                owner, sep, ref = query["head"].partition(":")
                # GitHub: head is user:ref-name; a bare ref filters nothing useful
                if not sep or pr["head"]["label"] != f"{owner}:{ref}":
                    continue
            if "base" in query and pr["base"]["ref"] != query["base"]:
                continue
            found.append({k: v for k, v in self._public(pr).items() if k not in _FULL_ONLY})
        if query.get("direction", "desc") == "desc":
            found.reverse()  # newest first, GitHub's default order (created, desc)
        return found

    def _create_pull(self, data: dict[str, Any], token: Token) -> dict[str, Any]:
        doc = "pulls/pulls#create-a-pull-request"
        if "title" not in data and "issue" not in data:
            raise _validation([{"resource": "PullRequest", "field": "title", "code": "missing_field"}], doc)
        self._body_limit(data.get("body"), "PullRequest")
        owner, head, fork = self._split_head(data["head"])
        base = data["base"]
        head_bare = fork.bare_repo if fork else self.bare_repo
        if "head_repo" in data and (fork is None or data["head_repo"] not in (fork.name, f"{fork.owner}/{fork.name}")):
            raise _validation([{"resource": "PullRequest", "field": "head_repo", "code": "invalid"}], doc)
        if (owner != self.owner and fork is None) or (head_bare is not None and not self._sha(head, head_bare)):
            raise _validation([{"resource": "PullRequest", "field": "head", "code": "invalid"}], doc)
        if self.bare_repo is not None and not self._sha(base):
            raise _validation([{"resource": "PullRequest", "field": "base", "code": "invalid"}], doc)
        label = f"{owner}:{head}"
        for pr in self.pulls.values():
            if pr["state"] == "open" and pr["head"]["label"] == label and pr["base"]["ref"] == base:
                raise _validation([{"resource": "PullRequest", "code": "custom",
                                    "message": f"A pull request already exists for {label}."}], doc)
        if self.bare_repo is not None and fork is None:
            ahead = subprocess.run(["git", "rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}"],
                                   cwd=self.bare_repo, capture_output=True, text=True, check=True).stdout.strip()
            if ahead == "0":
                raise _validation([{"resource": "PullRequest", "code": "custom",
                                    "message": f"No commits between {base} and {head}"}], doc)
        pr = self._new_pull(data["head"], base, data["title"], data.get("body"), token.login,
                            bool(data.get("draft")), bool(data.get("maintainer_can_modify")))
        return self._public(pr)

    def _edit_pull(self, pr: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        self._body_limit(data.get("body"), "PullRequest")
        for key in ("title", "body", "state"):
            if key in data:
                pr[key] = data[key]
        if "maintainer_can_modify" in data:
            pr["maintainer_can_modify"] = data["maintainer_can_modify"]
        if "base" in data:
            pr["base"] = self._branch(self.owner, data["base"], self._sha(data["base"]) or "0" * 40)
        owner, ref, fork = self._split_head(pr["head"]["label"])
        pr["head"]["sha"] = self._sha(ref, fork.bare_repo if fork else None) or pr["head"]["sha"]
        pr["updated_at"] = _now()
        return self._public(pr)

    def _page(self, items: list[Any], query: dict[str, str], path: str) -> tuple[int, Any, dict[str, str]]:
        """One page of a list, with GitHub's Link header to the next and last pages."""
        per_page = max(1, min(100, int(query.get("per_page", "30"))))
        page = max(1, int(query.get("page", "1")))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(number: int, rel: str) -> str:
            params = dict(query, per_page=str(per_page), page=str(number))
            return f'<{self.api_url}{path}?{urllib.parse.urlencode(params)}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        return 200, chunk, ({"link": ", ".join(links)} if links else {})

    # ------------------------------------------------------------------ the contract

    def check_request(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                      body: str) -> HttpAnswer | None:
        """The answer GitHub would give a request its description refuses (recorded as a
        protocol error), or None."""
        assert self.contract is not None
        if match_route(method, path) is None:
            self.protocol_errors.append(f"{method} {path}: not an operation the fake serves "
                                        f"(tests.openapi_support.OPERATIONS)")
            return _not_found()
        if body and method in ("POST", "PATCH", "PUT"):
            try:
                json.loads(body)
            except ValueError:
                self.protocol_errors.append(f"{method} {path}: the body is not JSON: {body[:200]!r}")
                return HttpAnswer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
        errors = self.contract.request_errors(method, path, query, headers, body.encode(),
                                              headers.get("content-type", "application/json").split(";")[0])
        if not errors:
            return None
        self.protocol_errors.append(f"{method} {path}?{urllib.parse.urlencode(query)} {body[:300]}: "
                                    + "\n".join(errors))
        return HttpAnswer(422, {"message": "Invalid request.\n\n" + "\n".join(errors),
                                "documentation_url": DOCS})

    def check_response(self, method: str, path: str, status: int, headers: dict[str, str],
                       payload: Any) -> str | None:
        """What the description finds wrong in an answer the fake is about to send, or None."""
        assert self.contract is not None
        route = match_route(method, path)
        if route is None:
            return None  # answered 404 as a protocol error already
        template, _ = route
        data = b"" if payload is None else json.dumps(payload).encode()
        if not self.contract.documents(method, template, status):
            if status in _ANY_ENDPOINT and isinstance(payload, dict) and isinstance(payload.get("message"), str):
                return None
            return f"{method} {template}: status {status} is not one GitHub documents for it (body {data[:200]!r})"
        errors = self.contract.response_errors(method, path, status, headers, data)
        return f"{method} {path} → {status}: " + "\n".join(errors) if errors else None


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write, without Nagle: otherwise each answer waits out
    # the client's delayed ACK (about 40 ms a request on Linux).
    wbufsize = -1
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        fake = self.github
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = dict(urllib.parse.parse_qsl(url.query))
        record = Recorded(self.command, path, query, headers, body)
        if fake.prefix:
            if path.startswith(fake.prefix + "/"):
                record.path = path = path[len(fake.prefix):]
            else:
                path = ""  # outside the API: 404 below
        with fake._lock:
            fake.requests.append(record)
        extra: dict[str, str] = {}
        try:
            if not path:
                raise _not_found()
            with fake._lock:
                refused = fake.check_request(self.command, path, query, headers, body)
            if refused is not None:
                raise refused
            status, payload, extra = fake.handle(self.command, path, query, headers, body)
        except HttpAnswer as answer:
            status, payload, extra = answer.status, answer.body, answer.headers
        except Exception as exc:  # a bug in the fake: say so loudly
            status, payload = 500, {"message": f"fake GitHub crashed: {type(exc).__name__}: {exc}"}
            with fake._lock:
                fake.protocol_errors.append(f"{self.command} {path}: the fake crashed: {type(exc).__name__}: {exc}")
        if path:
            wrong = fake.check_response(self.command, path, status, {k.title(): v for k, v in extra.items()},
                                        payload)
            if wrong is not None:  # the fake invented a shape GitHub does not send: a bug here
                with fake._lock:
                    fake.protocol_errors.append("answer refused by GitHub's description (a bug in the fake): "
                                                + wrong)
                status, payload, extra = 500, {"message": f"fake GitHub answered wrongly: {wrong}"}, {}
        record.status = status
        for callback in list(fake.on_request):  # before the answer leaves: the client sees its effects next
            callback(record)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-github-media-type", "github.v3; format=json")
        self.send_header("x-ratelimit-limit", str(RATE_LIMIT))
        self.send_header("x-ratelimit-resource", "core")
        if "x-ratelimit-remaining" not in extra:
            self.send_header("x-ratelimit-remaining", str(RATE_LIMIT - len(fake.requests)))
            self.send_header("x-ratelimit-reset", str(int(time.time()) + 3600))
        for key, value in extra.items():
            if value:
                self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

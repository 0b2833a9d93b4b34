"""A small local server speaking GitHub's REST shapes, for the endpoints trainboard uses.

It answers as api.github.com does (or a GitHub Enterprise server, under an
``/api/v3`` prefix), keeps pull requests and comments, and checks each request:
method and path, the ``Authorization`` header (``token`` or ``Bearer`` with the
expected token), the JSON body's fields and types as GitHub's REST reference
documents them, and the 65536-character body limit. It is stricter than GitHub
in one way: a body field GitHub does not document is refused, so a typo in the
client shows up here. With a bare git repository behind it, opening a pull
request checks that both branches exist there and that the head has commits the
base does not, as GitHub does.

Faults for the tests: answer the next N requests with a 5xx; exhaust the rate
limit for a few seconds (403, ``x-ratelimit-remaining: 0``, ``x-ratelimit-reset``);
answer 429 with ``retry-after``. Every request is recorded.

Endpoints:
    GET   /repos/{o}/{r}
    GET   /repos/{o}/{r}/pulls           (state, head, base, sort, direction, per_page, page)
    POST  /repos/{o}/{r}/pulls
    GET   /repos/{o}/{r}/pulls/{n}
    PATCH /repos/{o}/{r}/pulls/{n}
    GET   /repos/{o}/{r}/issues/{n}/comments   (per_page, page)
    POST  /repos/{o}/{r}/issues/{n}/comments
    PATCH /repos/{o}/{r}/issues/comments/{id}
    GET   /user, GET /rate_limit
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BODY_LIMIT = 65536
DOCS = "https://docs.github.com/rest"
RATE_LIMIT = 5000


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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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

    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → comment (with "_issue")
    requests: list[Recorded] = field(default_factory=list)
    on_request: list[Callable[[Recorded], None]] = field(default_factory=list)  # before each answer is sent

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._limited_until = 0.0
        self._next_number = 1
        self._next_comment = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ life

    def start(self) -> FakeGitHub:
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

    def open_pull(self, head: str, base: str, title: str = "A person's pull request", body: str = "",
                  user: str = "a-person") -> dict[str, Any]:
        """A pull request opened by someone else (no checks: the branches need not exist)."""
        with self._lock:
            return self._new_pull(head, base, title, body, user, draft=False)

    def add_comment(self, number: int, body: str, user: str = "a-person") -> dict[str, Any]:
        with self._lock:
            return self._new_comment(number, body, user)

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.comments.values() if c["_issue"] == number]

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    # ------------------------------------------------------------------ shapes

    def _user(self, login: str) -> dict[str, Any]:
        uid = 1 if login == self.login else 2 + sum(map(ord, login))
        return {"login": login, "id": uid, "node_id": f"U_{uid}", "type": "User", "site_admin": False,
                "url": f"{self.api_url}/users/{login}", "html_url": f"{self.web_url}/{login}",
                "avatar_url": f"{self.web_url}/avatars/{login}"}

    def _repo(self) -> dict[str, Any]:
        api = f"{self.api_url}/repos/{self.full_name}"
        return {
            "id": 4242, "node_id": "R_4242", "name": self.name, "full_name": self.full_name,
            "owner": self._user(self.owner), "private": False, "fork": False,
            "html_url": f"{self.web_url}/{self.full_name}", "url": api,
            "pulls_url": api + "/pulls{/number}", "issue_comment_url": api + "/issues/comments{/number}",
            "default_branch": self.default_branch, "visibility": "public",
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
            "created_at": "2024-01-01T00:00:00Z", "updated_at": _now(),
        }

    def _sha(self, ref: str) -> str:
        if self.bare_repo is None:
            return "0" * 40
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}^{{commit}}"],
                             cwd=self.bare_repo, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    def _branch(self, ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{self.owner}:{ref}", "ref": ref, "sha": sha, "user": self._user(self.owner),
                "repo": self._repo()}

    def _new_pull(self, head: str, base: str, title: str, body: str | None, user: str, draft: bool) -> dict[str, Any]:
        number = self._next_number
        self._next_number += 1
        api = f"{self.api_url}/repos/{self.full_name}"
        html = f"{self.web_url}/{self.full_name}/pull/{number}"
        now = _now()
        pr = {
            "url": f"{api}/pulls/{number}", "id": 90000 + number, "node_id": f"PR_{number}",
            "html_url": html, "diff_url": html + ".diff", "patch_url": html + ".patch",
            "issue_url": f"{api}/issues/{number}", "commits_url": f"{api}/pulls/{number}/commits",
            "review_comments_url": f"{api}/pulls/{number}/comments",
            "comments_url": f"{api}/issues/{number}/comments",
            "statuses_url": f"{api}/statuses/{self._sha(head) or '0' * 40}",
            "number": number, "state": "open", "locked": False, "title": title, "user": self._user(user),
            "body": body, "labels": [], "milestone": None, "active_lock_reason": None,
            "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merge_commit_sha": None,
            "assignee": None, "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": self._branch(head, self._sha(head) or "0" * 40),
            "base": self._branch(base, self._sha(base) or "0" * 40),
            "author_association": "CONTRIBUTOR", "auto_merge": None, "draft": draft,
            "merged": False, "mergeable": None, "comments": 0, "commits": 1,
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
            "created_at": now, "updated_at": now, "author_association": "CONTRIBUTOR", "_issue": number,
        }
        self.comments[cid] = comment
        self.pulls[number]["comments"] += 1
        return comment

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ routing

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: str) -> tuple[int, Any, dict[str, str]]:
        """One request → (status, JSON, extra headers). Runs under the lock."""
        with self._lock:
            self._authorize(headers)
            if self._limited_until and time.time() < self._limited_until:
                raise HttpAnswer(403, {
                    "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for "
                               "help, please include the request ID.",
                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                }, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(self._limited_until))})
            if self._faults:
                fault = self._faults.pop(0)
                raise HttpAnswer(fault.status, fault.body or {"message": "Server Error"}, fault.headers)
            data = self._parse(body) if method in ("POST", "PATCH") else None
            return self._route(method, path, query, data)

    def _authorize(self, headers: dict[str, str]) -> None:
        value = headers.get("authorization", "")
        if not value:
            raise HttpAnswer(401, {"message": "Requires authentication", "documentation_url": DOCS})
        scheme, _, given = value.partition(" ")
        if scheme.lower() not in ("token", "bearer") or given != self.token:
            raise HttpAnswer(401, {"message": "Bad credentials", "documentation_url": DOCS})

    @staticmethod
    def _parse(body: str) -> dict[str, Any]:
        try:
            data = json.loads(body or "{}")
        except ValueError:
            raise HttpAnswer(400, {"message": "Problems parsing JSON", "documentation_url": DOCS}) from None
        if not isinstance(data, dict):
            raise HttpAnswer(400, {"message": "Body should be a JSON object", "documentation_url": DOCS})
        return data

    def _route(self, method: str, path: str, query: dict[str, str],
               data: dict[str, Any] | None) -> tuple[int, Any, dict[str, str]]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if parts == ["user"] and method == "GET":
            return 200, self._user(self.login), {}
        if parts == ["rate_limit"] and method == "GET":
            core = {"limit": RATE_LIMIT, "remaining": RATE_LIMIT - 1, "reset": int(time.time()) + 3600, "used": 1}
            return 200, {"resources": {"core": core}, "rate": core}, {}
        if len(parts) < 3 or parts[0] != "repos" or f"{parts[1]}/{parts[2]}" != self.full_name:
            raise HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})
        rest = parts[3:]
        assert data is not None or method == "GET"
        match (method, rest):
            case ("GET", []):
                return 200, self._repo(), {}
            case ("GET", ["pulls"]):
                return self._page(self._list_pulls(query), query, path)
            case ("POST", ["pulls"]):
                assert data is not None
                pr = self._create_pull(data)
                return 201, pr, {"location": pr["url"]}
            case ("GET", ["pulls", number]):
                return 200, self._public(self._pull(number)), {}
            case ("PATCH", ["pulls", number]):
                assert data is not None
                return 200, self._edit_pull(self._pull(number), data), {}
            case ("GET", ["issues", number, "comments"]):
                pr = self._pull(number)
                return self._page([self._public(c) for c in self.comments_on(pr["number"])], query, path)
            case ("POST", ["issues", number, "comments"]):
                assert data is not None
                pr = self._pull(number)
                self._fields(data, required={"body": str}, optional={}, doc="issues/comments#create-an-issue-comment")
                self._body_limit(data["body"], "IssueComment")
                return 201, self._public(self._new_comment(pr["number"], data["body"], self.login)), {}
            case ("PATCH", ["issues", "comments", cid]):
                assert data is not None
                comment = self.comments.get(int(cid)) if cid.isdigit() else None
                if comment is None:
                    raise HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})
                self._fields(data, required={"body": str}, optional={}, doc="issues/comments#update-an-issue-comment")
                self._body_limit(data["body"], "IssueComment")
                comment["body"] = data["body"]
                comment["updated_at"] = _now()
                return 200, self._public(comment), {}
        raise HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})

    def _pull(self, number: str) -> dict[str, Any]:
        pr = self.pulls.get(int(number)) if number.isdigit() else None
        if pr is None:
            raise HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})
        return pr

    @staticmethod
    def _fields(data: dict[str, Any], required: dict[str, type], optional: dict[str, type], doc: str) -> None:
        errors = []
        for key in required:
            if key not in data:
                errors.append({"resource": "Issue", "field": key, "code": "missing_field"})
        for key, value in data.items():
            kind = required.get(key) or optional.get(key)
            if kind is None:
                errors.append({"resource": "Issue", "field": key, "code": "invalid",
                               "message": f"{key} is not a documented field (the fake is strict)"})
            elif value is not None and not isinstance(value, kind):
                errors.append({"resource": "Issue", "field": key, "code": "invalid",
                               "message": f"{key} must be {kind.__name__}"})
        if errors:
            raise _validation(errors, doc)

    @staticmethod
    def _body_limit(body: str | None, resource: str) -> None:
        if body is not None and len(body) > BODY_LIMIT:
            raise _validation([{"resource": resource, "code": "custom", "field": "body",
                                "message": f"body is too long (maximum is {BODY_LIMIT} characters)"}],
                              "pulls/pulls")

    def _head_ref(self, head: str) -> str:
        owner, sep, ref = head.partition(":")
        if sep and owner != self.owner:
            return ""  # a fork: not modelled
        return ref if sep else head

    def _list_pulls(self, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _validation([{"resource": "PullRequest", "field": "state", "code": "invalid"}], "pulls/pulls")
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
            found.append(self._public(pr))
        if query.get("direction", "desc") == "desc":
            found.reverse()  # newest first, GitHub's default order (created, desc)
        return found

    def _create_pull(self, data: dict[str, Any]) -> dict[str, Any]:
        doc = "pulls/pulls#create-a-pull-request"
        required: dict[str, type] = {"head": str, "base": str}
        if "issue" not in data:
            required["title"] = str
        self._fields(data, required=required, doc=doc, optional={
            "body": str, "draft": bool, "maintainer_can_modify": bool, "head_repo": str, "issue": int})
        self._body_limit(data.get("body"), "PullRequest")
        head = self._head_ref(data["head"])
        base = data["base"]
        if not head or (self.bare_repo is not None and not self._sha(head)):
            raise _validation([{"resource": "PullRequest", "field": "head", "code": "invalid"}], doc)
        if self.bare_repo is not None and not self._sha(base):
            raise _validation([{"resource": "PullRequest", "field": "base", "code": "invalid"}], doc)
        for pr in self.pulls.values():
            if pr["state"] == "open" and pr["head"]["ref"] == head and pr["base"]["ref"] == base:
                raise _validation([{"resource": "PullRequest", "code": "custom",
                                    "message": f"A pull request already exists for {self.owner}:{head}."}], doc)
        if self.bare_repo is not None:
            ahead = subprocess.run(["git", "rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}"],
                                   cwd=self.bare_repo, capture_output=True, text=True, check=True).stdout.strip()
            if ahead == "0":
                raise _validation([{"resource": "PullRequest", "code": "custom",
                                    "message": f"No commits between {base} and {head}"}], doc)
        pr = self._new_pull(head, base, data["title"], data.get("body"), self.login, bool(data.get("draft")))
        return self._public(pr)

    def _edit_pull(self, pr: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        self._fields(data, required={}, doc="pulls/pulls#update-a-pull-request", optional={
            "title": str, "body": str, "state": str, "base": str, "maintainer_can_modify": bool})
        if "state" in data and data["state"] not in ("open", "closed"):
            raise _validation([{"resource": "PullRequest", "field": "state", "code": "invalid"}], "pulls/pulls")
        self._body_limit(data.get("body"), "PullRequest")
        for key in ("title", "body", "state"):
            if key in data:
                pr[key] = data[key]
        if "base" in data:
            pr["base"] = self._branch(data["base"], self._sha(data["base"]) or "0" * 40)
        pr["head"]["sha"] = self._sha(pr["head"]["ref"]) or pr["head"]["sha"]
        pr["updated_at"] = _now()
        return self._public(pr)

    def _page(self, items: list[Any], query: dict[str, str], path: str) -> tuple[int, Any, dict[str, str]]:
        """One page of a list, with GitHub's Link header to the next and last pages."""
        try:
            per_page = max(1, min(100, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            raise HttpAnswer(422, {"message": "Invalid page", "documentation_url": DOCS}) from None
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


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"

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
                raise HttpAnswer(404, {"message": "Not Found", "documentation_url": DOCS})
            status, payload, extra = fake.handle(self.command, path, query, headers, body)
        except HttpAnswer as answer:
            status, payload, extra = answer.status, answer.body, answer.headers
        except Exception as exc:  # a bug in the fake: say so loudly
            status, payload = 500, {"message": f"fake GitHub crashed: {type(exc).__name__}: {exc}"}
        record.status = status
        for callback in list(fake.on_request):  # before the answer leaves: the client sees its effects next
            callback(record)
        data = json.dumps(payload).encode()
        self.send_response(status)
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

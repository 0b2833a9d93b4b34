"""GitHub's own OpenAPI description, as the contract tests/github_fake.py is held to.

The description comes from the ``@octokit/openapi`` npm package, installed by
``.ci/run`` into ``.openapi/`` (git ignores it) at one pinned version. Building an
openapi-core validator over the whole 13 MB description is slow, so the validator
is built over a trimmed copy: the operations the fake serves (``OPERATIONS``) and
the components they reach, taken from the full description when it is loaded,
never written by hand. Two changes are made to that copy, both stricter than
GitHub's text: every object schema that lists its properties and says nothing of
others is closed (``additionalProperties: false``, except the parts of an
``allOf``), so that a request field GitHub does not document, or a response field
the fake invents, is an error; and the servers are replaced by one local base.

One validator per variant per process (an xdist worker builds it once):
``contract()``. The ``github_openapi`` fixture is the session-scoped way to get it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VERSION = "23.0.2"  # @octokit/openapi
ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / ".openapi" / "node_modules" / "@octokit" / "openapi" / "generated"
INSTALL = f"npm install --no-save --no-audit --no-fund --prefix .openapi @octokit/openapi@{VERSION}"
CLOUD = "api.github.com"
ENTERPRISE = "ghes-3.19"  # the newest GitHub Enterprise Server the package describes
BASE = "http://github.local"  # the trimmed copy's one server

# (method, path template) for every operation the fake serves.
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("get", "/user"),
    ("get", "/rate_limit"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/pulls"),
    ("post", "/repos/{owner}/{repo}/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("get", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("patch", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("put", "/repos/{owner}/{repo}/issues/{issue_number}/lock"),
    ("delete", "/repos/{owner}/{repo}/issues/{issue_number}/lock"),
    ("post", "/repos/{owner}/{repo}/statuses/{sha}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/statuses"),
    ("get", "/repos/{owner}/{repo}/commits/{ref}/status"),
)


class DescriptionMissing(RuntimeError):
    pass


def description_path(variant: str = CLOUD) -> Path:
    path = GENERATED / f"{variant}.json"
    if not path.is_file():
        raise DescriptionMissing(
            f"GitHub's OpenAPI description is missing: {path} does not exist. The GitHub stand-in "
            f"(tests/github_fake.py) validates every request and response against it. Install it from "
            f"the repository root with:\n  {INSTALL}\n(.ci/run does this.)")
    return path


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _close(schema: Any, in_all_of: bool = False) -> None:
    """additionalProperties: false on each object schema listing its properties (not allOf parts)."""
    if isinstance(schema, list):
        for item in schema:
            _close(item, in_all_of)
        return
    if not isinstance(schema, dict):
        return
    if "properties" in schema and "additionalProperties" not in schema and not in_all_of and "$ref" not in schema:
        schema["additionalProperties"] = False
    for key, value in schema.items():
        if key == "allOf":
            _close(value, True)
        elif key in ("properties",) and isinstance(value, dict):
            for sub in value.values():
                _close(sub)
        elif key in ("items", "additionalProperties", "oneOf", "anyOf", "not"):
            _close(value)


def trim(full: dict[str, Any], operations: tuple[tuple[str, str], ...] = OPERATIONS) -> dict[str, Any]:
    """The part of ``full`` that ``operations`` reach, with closed object schemas and a local server."""
    paths: dict[str, dict[str, Any]] = {}
    for method, template in operations:
        item = full["paths"].get(template, {})
        if method not in item:
            raise DescriptionMissing(f"{method.upper()} {template} is not in GitHub's description "
                                     f"(@octokit/openapi {VERSION}): the fake serves an operation GitHub lacks")
        target = paths.setdefault(template, {k: v for k, v in item.items() if k == "parameters"})
        operation = copy.deepcopy(item[method])
        for response in operation.get("responses", {}).values():
            for media in response.get("content", {}).values():
                media.pop("examples", None)  # examples are not validated: drop what they reach
        target[method] = operation
    components: dict[str, dict[str, Any]] = {}
    pending: set[str] = set()
    _refs(paths, pending)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        match = re.fullmatch(r"#/components/([^/]+)/(.+)", ref)
        if match is None:
            raise DescriptionMissing(f"unexpected reference {ref!r} in GitHub's description")
        kind, name = match.groups()
        node = copy.deepcopy(full["components"][kind][name])
        if kind in ("responses",):
            for media in node.get("content", {}).values():
                media.pop("examples", None)
        components.setdefault(kind, {})[name] = node
        _refs(node, pending)
    for node in components.get("schemas", {}).values():
        _close(node)
    for item in paths.values():
        for operation in item.values():
            if isinstance(operation, dict):
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    _close(media.get("schema"))
                for response in operation.get("responses", {}).values():
                    for media in response.get("content", {}).values():
                        _close(media.get("schema"))
    return {"openapi": full["openapi"], "info": full["info"], "servers": [{"url": BASE}], "paths": paths,
            "components": components}


@dataclass
class Contract:
    """A validator over the trimmed description of one variant, and what it cost to build."""

    variant: str
    spec: dict[str, Any]
    load_seconds: float
    build_seconds: float
    _openapi: Any = field(repr=False, default=None)
    # One process may run several fakes, each answering from several threads.
    _guard: threading.Lock = field(repr=False, default_factory=threading.Lock)

    def request_errors(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                       body: bytes, content_type: str = "application/json") -> list[str]:
        from openapi_core.testing import MockRequest

        request = MockRequest(BASE, method, path, args=query, headers=headers, data=body,
                              content_type=content_type or "application/json")
        with self._guard:
            return [_describe(e) for e in self._openapi.iter_request_errors(request)]

    def response_errors(self, method: str, path: str, status: int, headers: dict[str, str],
                        body: bytes) -> list[str]:
        from openapi_core.testing import MockRequest, MockResponse

        request = MockRequest(BASE, method, path)
        ctype = "application/json" if body else ""
        response = MockResponse(body, status_code=status, headers=headers, content_type=ctype)
        with self._guard:
            return [_describe(e) for e in self._openapi.iter_response_errors(request, response)]

    def documents(self, method: str, template: str, status: int) -> bool:
        responses = self.spec["paths"].get(template, {}).get(method.lower(), {}).get("responses", {})
        return str(status) in responses or "default" in responses


def _describe(error: BaseException) -> str:
    """What is wrong, and where: one line per schema error when there are some."""
    lines: list[str] = []
    cause: BaseException | None = error
    while cause is not None and not lines:
        for sub in getattr(cause, "schema_errors", None) or ():
            where = "/".join(str(p) for p in getattr(sub, "absolute_path", [])) or "(top)"
            lines.append(f"{type(error).__name__} at {where}: {getattr(sub, 'message', sub)}")
        cause = cause.__cause__ or cause.__context__
    return "\n".join(lines) or f"{type(error).__name__}: {str(error)[:300]}"


_lock = threading.Lock()


@functools.cache
def _build(variant: str) -> Contract:
    from openapi_core import OpenAPI

    started = time.perf_counter()
    full = json.loads(description_path(variant).read_text())
    spec = trim(full)
    del full
    loaded = time.perf_counter()
    openapi = OpenAPI.from_dict(spec)
    built = time.perf_counter()
    return Contract(variant, spec, loaded - started, built - loaded, openapi)


def contract(variant: str = CLOUD) -> Contract:
    """The validator for ``variant``, built on first use in this process."""
    with _lock:
        return _build(variant)


@pytest.fixture(scope="session")
def github_openapi() -> Contract:
    """GitHub's description, loaded and built once per test process; a missing one fails the test."""
    try:
        return contract(CLOUD)
    except DescriptionMissing as exc:
        pytest.fail(str(exc), pytrace=False)

"""A config's report comment and its commit statuses: the marker that finds the comment
again, the statuses a run's verdict gives, and writing both."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from trainboard.backend.github.common import DEFAULT_NAME, PublishError, RunInfo
from trainboard.backend.record import RunStatus
from trainboard.backend.statuswords import what_happened

if TYPE_CHECKING:
    from github.IssueComment import IssueComment
    from github.PullRequest import PullRequest
    from github.Repository import Repository

    from trainboard.backend.github.client import Client

MARKER = "<!-- trainboard-report -->"  # the marker before configs had their own (still adopted, if ours)
MARKER_PREFIX = "<!-- trainboard-report"
STATUS_DESCRIPTION_LIMIT = 140  # GitHub cuts a commit status's description there


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
    has_result = run.status in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED)
    if comparison is None and has_result:
        return []  # nothing was compared: no verdict to post
    if not has_result or comparison is None:
        why = _short(f"no verdict: {what_happened(run.status)}", STATUS_DESCRIPTION_LIMIT)
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


def _is_ours(comment: IssueComment, login: str) -> bool:
    user = comment.user  # from the list's own data: no request
    if user is None:
        return False
    if login:
        return str(user.login or "").lower() == login.lower()
    return user.type == "Bot"


def upsert_comment(pr: PullRequest, body: str, name: str, login: str) -> IssueComment:
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


def post_statuses(client: Client, repo: Repository, sha: str, run: RunInfo, target_url: str) -> tuple[str, ...]:
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


def locked_error(number: int) -> PublishError:
    return PublishError(f"pull request #{number}'s conversation is locked, so its report comment cannot be "
                        f"written: unlock it (its sidebar → Unlock conversation); nothing was pushed or posted")


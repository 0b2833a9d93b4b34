"""The ``workflow_run`` half of fork-safe CI: ``trainboard pr --results DIR``.

A pull request's run (a fork's, with a read-only token, or any pull request's
training job, which gets no token) leaves its run folder as an artifact. The
trusted ``workflow_run`` workflow downloads it into DIR and calls
:func:`publish_results`: the report comment and the commit statuses, for the pull
request and head commit that the *event* names. The artifact was written by the
pull request's code: its record and report are data only — read without
following links, capped, checked field by field, masked, never run — and nothing
is pushed.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainboard.backend.compare import Comparison
from trainboard.backend.github.actions import actions_event, actions_run_url, full_name
from trainboard.backend.github.client import Client, Where, own_login, read_repo
from trainboard.backend.github.comments import (
    config_slug,
    locked_error,
    marker,
    neutralize_markers,
    post_statuses,
    upsert_comment,
)
from trainboard.backend.github.common import (
    BODY_LIMIT,
    DEFAULT_NAME,
    REPORT_FILE,
    GithubSettings,
    PublishError,
    PublishResult,
    RunInfo,
    combined_scrub,
)
from trainboard.backend.github.plan import fit_body, rewrite_links
from trainboard.backend.record import RunStatus

if TYPE_CHECKING:
    from github.Repository import Repository

RECORD_LIMIT = 2_000_000  # bytes read of an artifact's record.json
REPORT_LIMIT = 4_000_000  # bytes read of an artifact's report.md (then cut to GitHub's limit)


@dataclass(frozen=True)
class WorkflowRunEvent:
    """The pull request run a ``workflow_run`` workflow follows, as GitHub describes it
    (never as the artifact, which the pull request's code wrote, says)."""

    repo: str  # the base repository (where the comment and statuses go)
    head_sha: str
    pr_number: int  # 0: GitHub lists no pull request (it does not for a fork's)
    head_owner: str
    head_branch: str


def workflow_run_event(env: Mapping[str, str]) -> WorkflowRunEvent | None:
    event = actions_event(env) or {}
    wr = event.get("workflow_run")
    if not isinstance(wr, dict):
        return None
    sha = wr.get("head_sha")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
        return None
    repo = full_name(event.get("repository")) or full_name(wr.get("repository")) or env.get("GITHUB_REPOSITORY", "")
    number = 0
    for pr in wr.get("pull_requests") or []:
        if isinstance(pr, dict) and isinstance(pr.get("number"), int) and (
                (pr.get("head") or {}).get("sha") in (None, sha)):
            number = pr["number"]
            break
    head_repo = full_name(wr.get("head_repository"))
    branch = wr.get("head_branch")
    return WorkflowRunEvent(repo=repo, head_sha=sha, pr_number=number, head_owner=head_repo.split("/", 1)[0],
                            head_branch=branch if isinstance(branch, str) else "")


def results_folder(results: Path) -> Path:
    """The run folder inside a downloaded artifact: ``results`` itself, or the newest
    folder in it that holds a record.json. Links are never followed."""
    if (results / "record.json").is_file() and not (results / "record.json").is_symlink():
        return results
    found = sorted(p for p in results.iterdir() if p.is_dir() and not p.is_symlink()
                   and (p / "record.json").is_file() and not (p / "record.json").is_symlink()) \
        if results.is_dir() else []
    if not found:
        raise PublishError(f"{results} holds no run folder (record.json and report.md): download the pull "
                           f"request run's artifact (its .trainboard/runs/<id>/ folder) there first")
    return found[-1]


def _read_capped(path: Path, limit: int) -> str:
    if path.is_symlink() or not path.is_file():
        raise FileNotFoundError(path)
    with path.open("rb") as fh:
        return fh.read(limit).decode("utf-8", "replace")


def _untrusted_comparison(data: object) -> Comparison | None:
    """A comparison from an artifact's record, checked field by field (or None)."""
    from trainboard.backend.compare import ComparisonRow

    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return None

    def num(value: object) -> float | None:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    rows = []
    for row in data["rows"][:50]:
        if not isinstance(row, dict) or not isinstance(row.get("key"), str):
            return None
        passed = row.get("passed")
        digits = row.get("digits")
        rows.append(ComparisonRow(
            key=row["key"][:80], display=str(row.get("display") or row["key"])[:80],
            goal="min" if row.get("goal") == "min" else "max",
            digits=digits if isinstance(digits, int) and 0 <= digits <= 8 else 4,
            before=num(row.get("before")), after=num(row.get("after")), gate=str(row.get("gate") or "")[:80],
            passed=passed if isinstance(passed, bool) else None, reason=str(row.get("reason") or "")[:200]))
    return Comparison(base_branch=config_slug(str(data.get("base_branch") or "main")),
                      baseline_run_id=str(data.get("baseline_run_id") or "")[:64],
                      baseline_label=str(data.get("baseline_label") or "")[:200], rows=tuple(rows), final=True)


def publish_results(
    results: Path,
    *,
    env: Mapping[str, str] | None = None,
    settings: GithubSettings | None = None,
    redact: Callable[[str], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> PublishResult:
    """The ``workflow_run`` half of a fork-safe CI: post (or update) the report comment
    and the commit statuses of a pull request run whose artifact was downloaded into
    ``results``. The pull request and the commit come from the event; the artifact's
    record and report are data only (masked, capped, never run); nothing is pushed."""
    env = os.environ if env is None else env
    settings = settings or GithubSettings(api_url=env.get("GITHUB_API_URL", ""))
    token = env.get(settings.token_env, "")
    if not token:
        raise PublishError(f"{settings.token_env} is not set: give the workflow_run workflow "
                           f"`env: {settings.token_env}: ${{{{ secrets.GITHUB_TOKEN }}}}` and `permissions: "
                           f"pull-requests: write, statuses: write`")
    event = workflow_run_event(env)
    if event is None or not event.repo:
        raise PublishError("trainboard pr --results publishes for a `workflow_run` workflow: GITHUB_EVENT_PATH "
                           "must hold its event (workflow_run.head_sha, workflow_run.pull_requests)")
    scrub = combined_scrub(token, redact)
    run, report = _read_results(results_folder(results), event)
    body = _comment_body(run, report, event, scrub)
    client = Client(settings, token, scrub, sleep, clock, Where(actions=env.get("GITHUB_ACTIONS") == "true"))
    try:
        return _post(client, settings, event, run, body, env)
    except PublishError:
        raise
    except Exception as exc:  # never chain: request data
        raise PublishError(scrub(f"publishing to GitHub failed: {type(exc).__name__}: {exc}")) from None
    finally:
        client.close()


def _read_results(folder: Path, event: WorkflowRunEvent) -> tuple[RunInfo, str]:
    """The run an artifact's record describes, checked field by field, and its report (data only)."""
    try:
        record = json.loads(_read_capped(folder / "record.json", RECORD_LIMIT))
    except (OSError, ValueError):
        raise PublishError(f"{folder / 'record.json'} is not a run record (JSON)") from None
    if not isinstance(record, dict):
        raise PublishError(f"{folder / 'record.json'} is not a run record")
    try:
        report = _read_capped(folder / REPORT_FILE, REPORT_LIMIT)
    except OSError:
        report = "*(the run left no report)*"
    config: dict[str, Any] = record["config"] if isinstance(record.get("config"), dict) else {}
    name = config_slug(str(config.get("name") or DEFAULT_NAME))
    status = str(record.get("status") or "")
    status = status if status in (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED) else config_slug(status or "failed")
    run_id = config_slug(str(record.get("run_id") or folder.name))
    comparison = _untrusted_comparison(record.get("comparison"))
    run = RunInfo(run_id=run_id, branch=config_slug(event.head_branch or "pull request"), commit=event.head_sha,
                  name=name, verdict=comparison.verdict if comparison else "", comparison=comparison, status=status)
    return run, report


def _comment_body(run: RunInfo, report: str, event: WorkflowRunEvent, scrub: Callable[[str], str]) -> str:
    """The report comment: the artifact's report, masked, its links never followed."""

    def not_published(alt: str, target: str) -> str:
        return f"*({config_slug(alt or target)}: in the workflow run's artifact; plots are not published from it)*"

    rendered = neutralize_markers(rewrite_links(scrub(report), lambda target: None, not_published))
    footer = (f"\n---\n*Posted by trainboard's workflow_run workflow from the pull request run's artifact "
              f"(run `{run.run_id}`, commit `{event.head_sha[:10]}`).*\n")
    return scrub(fit_body(f"{marker(run.name)}\n{rendered}\n{footer}", BODY_LIMIT, "in the workflow run's artifact"))


def _post(client: Client, settings: GithubSettings, event: WorkflowRunEvent, run: RunInfo, body: str,
          env: Mapping[str, str]) -> PublishResult:
    """The report comment on the event's pull request, the statuses on its head commit."""
    repo = read_repo(client, event.repo)
    login = own_login(client)
    number = event.pr_number
    if not number:
        number = client.call(f"finding the pull request of {event.head_owner}:{event.head_branch}",
                             lambda: _pull_for_head(repo, event))
    pr = client.call(f"reading pull request #{number}", lambda: repo.get_pull(number))
    if pr.locked:
        raise locked_error(pr.number)
    comment = client.call(f"writing the report comment on #{pr.number}",
                          lambda: upsert_comment(pr, body, run.name, login), needs="pull-requests: write")
    statuses = post_statuses(client, repo, event.head_sha, run, comment.html_url or actions_run_url(env)) \
        if settings.statuses else ()
    return PublishResult(pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url,
                         created_pr=False, branch="", repo=event.repo, pr_ci=True, statuses=statuses)


def _pull_for_head(repo: Repository, event: WorkflowRunEvent) -> int:
    if event.head_owner and event.head_branch:
        for pr in repo.get_pulls(state="open", head=f"{event.head_owner}:{event.head_branch}"):
            if pr.head.sha == event.head_sha:
                return pr.number
    raise PublishError(f"no open pull request has {event.head_owner}:{event.head_branch} at "
                       f"{event.head_sha[:10]} as its head: was it closed, or pushed to since?")

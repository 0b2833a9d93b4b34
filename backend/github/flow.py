"""The publish flow: :func:`publish_run` works out what to publish (the repository, the
outputs branch, the rendered report), reads the repository and what the token may do there,
then either comments on the pull request whose CI this is, or pushes the outputs branch,
opens or updates its pull request, and writes the report comment and the commit statuses."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend import gitpush
from trainboard.backend.github.actions import (
    PullRequestEvent,
    actions_run_url,
    pull_request_event,
    read_only_reason,
)
from trainboard.backend.github.client import Client, Where, message_of, own_login, permissions, read_repo
from trainboard.backend.github.comments import locked_error, marker, neutralize_markers, post_statuses, upsert_comment
from trainboard.backend.github.common import (
    BODY_LIMIT,
    REPORT_FILE,
    GithubSettings,
    PublishError,
    PublishResult,
    ReadOnlyToken,
    RunInfo,
    combined_scrub,
)
from trainboard.backend.github.plan import Plan, blob_url, fit_body, plan_files, rewrite_links
from trainboard.backend.github.target import check, remote_repo, resolve_api_url, resolve_repo
from trainboard.backend.gitpush import Git, Identity, NotFastForward, PushError

if TYPE_CHECKING:
    from github.PullRequest import PullRequest
    from github.Repository import Repository

TITLE_LIMIT = 250
PUSH_ATTEMPTS = 3  # fast-forward pushes tried when another publish moved the outputs branch meanwhile


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
    scrub = combined_scrub(token, redact)
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


def _runs_where(env: Mapping[str, str], inferred: bool) -> Where:
    event = pull_request_event(env)
    return Where(actions=env.get("GITHUB_ACTIONS") == "true", fork_pr=bool(event and event.from_fork),
                 api_inferred=inferred)


@dataclass(frozen=True)
class _Job:
    """One publish, worked out before GitHub is asked anything."""

    settings: GithubSettings  # with api_url resolved
    event: PullRequestEvent | None  # the pull request whose CI this is; None: push and open one
    repo_name: str  # owner/name the pull request lives in
    note: str  # what the user should know about the api_url ("" when it was set)
    report_dir: str  # the report's folder on the outputs branch
    plan: Plan
    branch: str  # the outputs branch; "" in a pull request's CI
    head_repo: str  # the fork the branch is pushed to; "" when it is repo_name
    rendered: str  # the report, links rewritten
    where: str  # where the full report is, for a body cut to GitHub's limit
    title: str

    @property
    def head_owner(self) -> str:
        return (self.head_repo or self.repo_name).split("/", 1)[0]

    @property
    def notes(self) -> tuple[str, ...]:
        return (self.note,) if self.note else ()

    def comment_body(self, run: RunInfo, footer: str, scrub: Callable[[str], str]) -> str:
        return scrub(fit_body(f"{marker(run.name)}\n{self.rendered}\n{footer}", BODY_LIMIT, self.where))


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
    job = _prepare(record_dir, repo_root, settings, run, outputs, env, scrub)
    client = Client(job.settings, token, scrub, sleep, clock, _runs_where(env, bool(job.note)))
    try:
        # First the repository and what the token may do there: nothing is pushed before.
        repo = read_repo(client, job.repo_name)
        perms = permissions(repo)
        login = own_login(client)
        if job.event is not None:
            return _comment_in_pr_ci(client, repo, perms, login, job, job.event, run, env)
        return _push_and_open(client, repo, perms, login, job, run, env, repo_root)
    finally:
        client.close()


def _prepare(record_dir: Path, repo_root: Path, settings: GithubSettings, run: RunInfo, outputs: dict[str, Path],
             env: Mapping[str, str], scrub: Callable[[str], str]) -> _Job:
    event = pull_request_event(env)
    repo_name = resolve_repo(settings, repo_root, env)
    api, note = resolve_api_url(settings, repo_root)
    settings = dataclasses.replace(settings, api_url=api)
    report_dir = f"{settings.reports_dir.strip('/')}/{gitpush.source_slug(run.branch, run.commit)}"
    plan = plan_files(record_dir, report_dir, {} if event else outputs, scrub)
    branch = _outputs_branch(settings, run, event)
    # From a fork: the branch goes to the fork (github.remote), the pull request to github.repo.
    head_repo = ""
    if event is None:
        pushed_to, _ = remote_repo(settings, repo_root)
        if pushed_to and pushed_to.lower() != repo_name.lower():
            head_repo = pushed_to
    rendered = _render(plan, run, event, report_dir, branch, settings.web, head_repo or repo_name)
    where = f"`{report_dir}/{REPORT_FILE}` on branch `{branch}`" if branch else \
        f"`.trainboard/runs/{run.run_id}/{REPORT_FILE}`"
    return _Job(settings=settings, event=event, repo_name=repo_name, note=note, report_dir=report_dir, plan=plan,
                branch=branch, head_repo=head_repo, rendered=rendered, where=where, title=scrub(_title(run)))


def _outputs_branch(settings: GithubSettings, run: RunInfo, event: PullRequestEvent | None) -> str:
    """The branch the outputs are pushed to; "" in a pull request's CI (nothing is pushed)."""
    if event is None and not run.commit:
        raise PublishError(f"run {run.run_id} has no commit to build on: commit your code and run again")
    branch = gitpush.outputs_branch(run.branch, run.commit, settings.branch_prefix) if event is None else ""
    prefix = settings.branch_prefix.strip("/")
    if branch and prefix and (run.branch == prefix or run.branch.startswith(prefix + "/")):
        # Publishing would nest trainboard/trainboard/... and, with a token whose pushes
        # trigger workflows, loop: the outputs branches are not trained themselves.
        raise PublishError(f"run {run.run_id} is on {run.branch!r}, one of trainboard's outputs branches "
                           f"({prefix}/...): run on the source branch instead")
    return branch


def _render(plan: Plan, run: RunInfo, event: PullRequestEvent | None, report_dir: str, branch: str, web: str,
            repo: str) -> str:
    """The report with its relative links pointing at the outputs branch, or a note where
    a plot is not published; any marker it quotes broken."""

    def resolve(target: str) -> str | None:
        path = plan.links.get(target) if branch else None
        return blob_url(web, repo, branch, path) if path else None

    def not_published(alt: str, target: str) -> str:
        if event is not None:
            why = "plots are not published from a pull request's CI"
        elif f"{report_dir}/{target}" in plan.withheld:
            why = "not published: the file holds a secret"
        else:
            why = "not found there"
        return f"*({alt or target}: `{target}` is in the run's folder, `.trainboard/runs/{run.run_id}/`; {why})*"

    return neutralize_markers(rewrite_links(plan.report, resolve, not_published))


def _comment_in_pr_ci(client: Client, repo: Repository, perms: dict[str, bool] | None, login: str, job: _Job,
                      event: PullRequestEvent, run: RunInfo, env: Mapping[str, str]) -> PublishResult:
    """In a pull request's CI: the report comment on that pull request, the statuses on its head."""
    if perms is not None and not any(perms.get(k) for k in ("push", "triage", "maintain", "admin")):
        raise ReadOnlyToken(f"the token may only read {job.repo_name} (a read-only token, as a fork's pull "
                            f"request gets): nothing was posted; the trainboard-publish workflow posts "
                            f"the comment and the status")
    pr = client.call(f"reading pull request #{event.number}", lambda: repo.get_pull(event.number))
    if pr.locked:
        raise locked_error(pr.number)
    comment_body = job.comment_body(run, _footer(run, "", ""), client.scrub)
    comment = client.call(f"writing the report comment on #{pr.number}",
                          lambda: upsert_comment(pr, comment_body, run.name, login),
                          needs="pull-requests: write")
    statuses: tuple[str, ...] = ()
    if job.settings.statuses:
        sha = event.head_sha or pr.head.sha
        statuses = post_statuses(client, repo, sha, run, comment.html_url or actions_run_url(env))
    return PublishResult(
        pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url, created_pr=False,
        branch="", commit="", repo=job.repo_name, pr_ci=True, files=(), missing=job.plan.missing,
        withheld=job.plan.withheld, statuses=statuses, notes=job.notes,
    )


def _push_and_open(client: Client, repo: Repository, perms: dict[str, bool] | None, login: str, job: _Job,
                   run: RunInfo, env: Mapping[str, str], repo_root: Path) -> PublishResult:
    """Outside a pull request's CI: push the outputs branch, open or update its pull
    request, then the report comment and the statuses on the outputs commit."""
    settings, branch, scrub = job.settings, job.branch, client.scrub
    if not job.head_repo and perms is not None and not perms.get("push"):
        raise PublishError(scrub(
            f"the token in {settings.token_env} may read {job.repo_name} but not push to it, so nothing was "
            f"pushed: give it `contents: write` (Actions `permissions:`; fine-grained token: Contents: read "
            f"and write; classic token: the `repo` scope)"
            + ("; a pull request from a fork gets a read-only token" if client.where.actions else "")))
    existing = client.call(f"looking for an open pull request from {job.head_owner}:{branch}",
                           lambda: _open_pull(repo, job.head_owner, branch, settings.base))
    if existing is not None and existing.locked:
        raise locked_error(existing.number)
    git = Git(repo_root, scrub)
    commit, previous = _commit_and_push(git, job, run, scrub)
    footer = _footer(run, branch, commit)
    body = scrub(fit_body(job.rendered + "\n" + footer, BODY_LIMIT, job.where))
    comment_body = job.comment_body(run, footer, scrub)
    try:
        pr, created = client.call(
            f"opening the pull request {job.head_owner}:{branch} → {settings.base}",
            lambda: _open_or_update(repo, job.head_owner, job.head_repo, branch, settings.base, job.title, body,
                                    existing),
            needs="pull-requests: write",
        )
    except PublishError as exc:
        if previous:
            raise
        raise PublishError(f"{exc}; {_take_back(git, settings.remote, branch, commit)}") from None
    comment = client.call(f"writing the report comment on #{pr.number}",
                          lambda: upsert_comment(pr, comment_body, run.name, login),
                          needs="pull-requests: write")
    posted: tuple[str, ...] = ()
    if settings.statuses:
        posted = post_statuses(client, repo, commit, run, comment.html_url or actions_run_url(env))
    return PublishResult(
        pr_number=pr.number, pr_url=pr.html_url, comment_url=comment.html_url, created_pr=created,
        branch=branch, commit=commit, repo=job.repo_name, pr_ci=False, files=tuple(sorted(job.plan.files)),
        missing=job.plan.missing, withheld=job.plan.withheld, statuses=posted, notes=job.notes,
    )


def _commit_and_push(git: Git, job: _Job, run: RunInfo, scrub: Callable[[str], str]) -> tuple[str, str]:
    """The outputs commit, pushed: (the commit, the tip it was built on, "" when the branch is new)."""
    settings = job.settings
    configured = Identity(settings.author_name, settings.author_email) if settings.author_name else None
    message = scrub(f"trainboard: outputs of run {run.run_id} ({run.name})\n\n"
                    f"Run {run.run_id} of {run.branch} at {run.commit}.\n"
                    + (f"{run.verdict}\n" if run.verdict else ""))
    return _push_outputs(git, settings.remote, job.branch, run.commit, job.plan.files, message,
                         gitpush.identity(git, configured))


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
            if exc.status != 422 or "already exists" not in message_of(exc).lower():
                raise
            pr = _open_pull(repo, head_owner, branch, base)
            if pr is None:
                raise
    pr.edit(title=title, body=body)
    return pr, False


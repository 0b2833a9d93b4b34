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

The parts: :mod:`.common` (settings, run, result, errors), :mod:`.actions` (what a
GitHub Actions run says about itself), :mod:`.target` (the repository and API, without the
network), :mod:`.client` (the REST client: retries, rate limits, permission messages),
:mod:`.comments` (the report comment's marker, commit statuses), :mod:`.plan` (link
rewriting and the files pushed) and :mod:`.flow` (the publish itself).
"""

from trainboard.backend.github.actions import (
    PR_EVENTS,
    PullRequestEvent,
    actions_event,
    actions_run_url,
    pull_request_event,
    read_only_reason,
)
from trainboard.backend.github.client import ACTIONS_SETTING_OFF
from trainboard.backend.github.comments import (
    MARKER,
    MARKER_PREFIX,
    STATUS_DESCRIPTION_LIMIT,
    commit_statuses,
    config_slug,
    marker,
    neutralize_markers,
    status_context,
)
from trainboard.backend.github.common import (
    ACTIONS_BOT,
    BODY_LIMIT,
    DEFAULT_API_URL,
    DEFAULT_NAME,
    READ_ONLY_FORK,
    REPORT_FILE,
    GithubSettings,
    PublishError,
    PublishResult,
    ReadOnlyToken,
    RunInfo,
)
from trainboard.backend.github.flow import PUSH_ATTEMPTS, TITLE_LIMIT, publish_run
from trainboard.backend.github.plan import blob_url, fit_body, outputs_for_run, report_links, rewrite_links
from trainboard.backend.github.target import check, resolve_api_url, resolve_repo

__all__ = [
    "ACTIONS_BOT",
    "ACTIONS_SETTING_OFF",
    "BODY_LIMIT",
    "DEFAULT_API_URL",
    "DEFAULT_NAME",
    "MARKER",
    "MARKER_PREFIX",
    "PR_EVENTS",
    "PUSH_ATTEMPTS",
    "READ_ONLY_FORK",
    "REPORT_FILE",
    "STATUS_DESCRIPTION_LIMIT",
    "TITLE_LIMIT",
    "GithubSettings",
    "PublishError",
    "PublishResult",
    "PullRequestEvent",
    "ReadOnlyToken",
    "RunInfo",
    "actions_event",
    "actions_run_url",
    "blob_url",
    "check",
    "commit_statuses",
    "config_slug",
    "fit_body",
    "marker",
    "neutralize_markers",
    "outputs_for_run",
    "publish_run",
    "pull_request_event",
    "read_only_reason",
    "report_links",
    "resolve_api_url",
    "resolve_repo",
    "rewrite_links",
    "status_context",
]

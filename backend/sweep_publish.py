"""A sweep's pull request: one report comment for the whole sweep, published once it ends.

The member runs do not publish on their own. :func:`publish_sweep` publishes the sweep's
folder (its ``report.md``: the verdict, the member table, the objective plot and the best
member's full report with its comparison) through the same :func:`~trainboard.backend.github.publish_run`
a single run uses: the best member's outputs (``job.outputs``, the DVC files it brought back)
and the report with its plots pushed to the outputs branch, the pull request opened or
updated, the config's one report comment written, and the best member's gates posted as
commit statuses. The pull request is recorded in the best member's run record.
:func:`publish_sweep_at_end` is what the sweep controller calls when ``github.publish`` says so.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from trainboard.backend import ci
from trainboard.backend.compare import Comparison
from trainboard.backend.config import RunConfig
from trainboard.backend.github import PublishError, PublishResult, ReadOnlyToken, RunInfo, outputs_for_run
from trainboard.backend.github import publish_run as github_publish_run
from trainboard.backend.hooks.pull_request import run_info
from trainboard.backend.publish import base_branch_blocker, blocker, publishes_at_the_end, settings_for
from trainboard.backend.store import RunRecord, RunStore
from trainboard.backend.sweep_record import SweepData
from trainboard.backend.sweep_report import REPORT_FILE, sweep_folder, write_sweep_report


def best_record(data: SweepData, root: Path) -> RunRecord:
    """The best member's run record; PublishError when the sweep has none."""
    best = data.best_member
    if best is None or not best.run_id:
        raise PublishError(f"sweep {data.sweep_id}: no member finished with a result, so there is nothing to "
                           f"publish")
    try:
        return RunStore(root / ".trainboard").load(best.run_id)
    except (OSError, ValueError) as exc:
        raise PublishError(f"sweep {data.sweep_id}: the best member's run {best.run_id} has no readable record "
                           f"({exc})") from None


def sweep_run_info(data: SweepData, record: RunRecord, config: RunConfig) -> RunInfo:
    """What the pull request says: the best member's run and comparison (its commit statuses),
    under the sweep's verdict line."""
    compared = record.comparison
    run = run_info(record, config, Comparison.from_dict(compared) if compared is not None else None)
    return dataclasses.replace(run, verdict=data.verdict or run.verdict)


def sweep_publish_blocker(data: SweepData, root: Path, config: RunConfig, env: Mapping[str, str] | None = None) -> str:
    """Why the sweep's pull request cannot be published from here; "" when it can (no network
    used). Also before the sweep starts (no member yet): then only the settings are checked."""
    branch = data.branch
    if data.members and any(m.status not in ("queued", "running") for m in data.members):
        if data.best is None:
            return "no member finished with a result"
        branch = branch or best_record(data, root).branch
    return (base_branch_blocker(config, branch, env) if branch else "") or blocker(config, root, env)


def publish_sweep(data: SweepData, root: Path, config: RunConfig, redact: Callable[[str], str] | None,
                  env: Mapping[str, str] | None = None) -> PublishResult:
    """Publish the finished sweep: its report (written now when it is not yet) as the config's
    one pull request comment, with the best member's outputs. Blocking: call it in a thread.

    Raises :class:`ReadOnlyToken` (nothing was written) and :class:`PublishError`."""
    record = best_record(data, root)
    folder = sweep_folder(data, root)
    if not (folder / REPORT_FILE).is_file():
        write_sweep_report(data, root, redact)
    outputs = outputs_for_run(record.path, config.job.workdir, config.job.outputs)
    outputs.update({rel: root / rel for rel in record.dvc_files})  # as the best member brought them back
    result = github_publish_run(folder, repo_root=root, settings=settings_for(config),
                                run=sweep_run_info(data, record, config), outputs=outputs,
                                env=os.environ if env is None else env, redact=redact)
    record.update(pull_request={"number": result.pr_number, "url": result.pr_url,
                                "comment_url": result.comment_url, "branch": result.branch})
    return result


def publish_sweep_at_end(data: SweepData, root: Path, config: RunConfig, redact: Callable[[str], str] | None,
                         say: Callable[[str], None], env: Mapping[str, str] | None = None) -> PublishResult | None:
    """At the end of a sweep whose ``github.publish`` asks for it (``always``, or ``ci`` in
    GitHub Actions): publish, and ``say`` what happened, one line at a time. Never raises a
    PublishError: a failure is said. None when nothing was published. Blocking: call it in a thread."""
    if not publishes_at_the_end(config, env):
        return None
    if why := sweep_publish_blocker(data, root, config, env):
        say(f"no pull request for this sweep: {why}")
        return None
    try:
        result = publish_sweep(data, root, config, redact, env)
    except ReadOnlyToken as exc:
        say(f"no comment or commit status from this sweep: {exc}")
        ci.append_read_only_summary(str(exc), env)
        return None
    except PublishError as exc:
        say(f"pull request: {exc}")
        return None
    for line in result.notes:
        say(f"pull request: {line}")
    say(f"pull request #{result.pr_number} {'opened' if result.created_pr else 'updated'}: {result.pr_url}")
    if result.statuses:
        say(f"commit statuses: {', '.join(result.statuses)}")
    for path in result.missing:
        say(f"pull request: output {path} was not found, so not committed")
    for path in result.withheld:
        say(f"pull request: {path} holds a secret, so it was not pushed")
    return result

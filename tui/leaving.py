"""What the terminal says once the dashboard has gone: the run's verdict, its exit code and report.

The dashboard draws on the terminal's alternate screen, which Textual takes away
when it exits; without these lines, leaving a finished run would show only the
prompt. :func:`leaving_lines` reads them from the run's record as the session
left it, so a detached run (the job runs on) says how to come back to it.
"""

from __future__ import annotations

import os

from trainboard.backend.compare import Comparison
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.statuswords import what_happened
from trainboard.backend.store import RunRecord
from trainboard.tui.render import format_seconds
from trainboard.tui.runs_list import primary_metric

# Why a run that ended this way has no comparison.


def short_path(path: str) -> str:
    """The path relative to the working directory when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


def exit_text(code: int) -> str:
    """``exit 1 (GATE_FAILED): gate failed: the job succeeded but a metric gate failed``."""
    try:
        member = ExitCode(code)
    except ValueError:
        return f"exit {code}"
    return f"exit {code} ({member.name}): {member.help}"


def primary_text(record: RunRecord, comp: Comparison) -> str:
    """``F1 0.9150 (+0.0044 vs main)``: the run's primary metric (as the runs list shows it),
    and its change from the baseline when there is one."""
    primary = primary_metric(record)
    if primary is None:
        return ""
    change = f" ({primary.delta} vs {comp.base_branch})" if primary.delta else ""
    return f"{primary.name} {primary.value}{change}"


def verdict_line(record: RunRecord) -> str:
    status = record.status
    comp = Comparison.from_dict(record.comparison) if record.comparison else None
    if comp is not None and status is not None and status.has_result:
        primary = primary_text(record, comp)
        return f"verdict: {comp.verdict}" + (f" · {primary}" if primary else "")
    if status == RunStatus.DETACHED:
        return "verdict: none yet, the job runs on"
    why = what_happened(status, record.job_exit_code)
    why += f" ({record.info.stopped_by})" if record.info.stopped_by else ""
    if status == RunStatus.ERROR and record.info.errors:
        first = record.info.errors[-1].message.splitlines()[:1]
        why += f": {first[0]}" if first else ""
    return f"verdict: no comparison, {why}"


def leaving_lines(record: RunRecord | None, code: int) -> list[str]:
    """What to print when the dashboard has exited with ``code`` on the run of ``record``."""
    if record is None:  # the run never got a record: the config or the repository was refused
        return [exit_text(code)]
    status = record.status or "unknown"
    ended = record.duration is not None and not (record.status and record.status.is_live)
    took = f" in {format_seconds(record.duration or 0.0)}" if ended else ""
    lines = [f"trainboard: run {record.run_id} {status}{took}", verdict_line(record), exit_text(code)]
    report = record.report
    lines.append(f"report: {short_path(report)}" if report else "report: none written")
    if status == RunStatus.DETACHED or code == ExitCode.DETACHED:
        lines.append(f"the job runs on: `trainboard attach {record.run_id}` comes back to it")
    return lines

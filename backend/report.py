"""The run's markdown report: for the terminal, the CI step summary and the PR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend.compare import Comparison
from trainboard.backend.tracking import flatten


@dataclass(frozen=True)
class ReportInput:
    name: str
    run_id: str
    branch: str
    commit: str
    dirty: bool
    runner: str
    status: str
    job_exit_code: int | None
    job_seconds: float | None
    mlflow_run_id: str
    experiment: str
    comparison: Comparison | None
    params: dict[str, object]
    baseline_params: dict[str, str] | None
    plot: str | None  # file name beside the report
    confusion_matrix: str | None
    log_tail: list[str]


def tail_lines(path: Path, count: int, block: int = 65536) -> list[str]:
    """The last ``count`` lines of a file, read from its end."""
    if count <= 0 or not path.exists():
        return []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        data = b""
        while size > 0 and data.count(b"\n") <= count:
            step = min(block, size)
            size -= step
            fh.seek(size)
            data = fh.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-count:]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: ReportInput) -> str:
    out = _summary(report)
    if report.comparison is not None:
        out += _metrics(report.comparison)
    out += _params(report)
    if report.plot:
        out += ["## Training curves", "", f"![metrics per step]({report.plot})", ""]
    if report.confusion_matrix:
        out += ["## Confusion matrix", "", f"![confusion matrix]({report.confusion_matrix})", ""]
    if report.log_tail:
        out += [f"## Last {len(report.log_tail)} lines of the log", "", "```text", *report.log_tail, "```", ""]
    return "\n".join(out)


def _summary(report: ReportInput) -> list[str]:
    """The title, the verdict and the run's table."""
    out: list[str] = []
    out.append(f"# trainboard report: {report.name}")
    out.append("")
    comp = report.comparison
    if comp is not None:
        out.append(f"**{comp.verdict}**")
    else:
        out.append(f"**No comparison: the run {report.status}.**")
    out.append("")
    commit = report.commit[:10] or "(no commit)"
    changes = " + uncommitted changes" if report.dirty else ""
    job = "—"
    if report.job_exit_code is not None:
        secs = f" after {report.job_seconds:.1f} s" if report.job_seconds is not None else ""
        job = f"exit {report.job_exit_code}{secs}"
    out += [
        "| | |",
        "|---|---|",
        f"| Run | `{report.run_id}` ({report.status}) |",
        f"| Branch | `{_cell(report.branch)}` @ `{commit}`{changes} |",
        f"| Runner | {report.runner} |",
        f"| Job | {job} |",
        f"| MLflow | run `{report.mlflow_run_id or '—'}` in experiment `{_cell(report.experiment)}` |",
    ]
    if comp is not None:
        base = comp.baseline_label if comp.has_baseline else f"none yet on `{comp.base_branch}`"
        out.append(f"| Baseline | {_cell(base)} |")
    out.append("")
    return out


def _metrics(comp: Comparison) -> list[str]:
    out = ["## Metrics", "", "| Metric | Before | After | Δ | Gate | Result |", "|---|---:|---:|---:|---|---|"]
    for row in comp.rows:
        if row.passed is None:
            result = "—"
        elif row.passed:
            result = "✅ pass" + (f" ({row.reason})" if row.reason else "")
        else:
            result = f"❌ fail ({row.reason})"
        delta = row.fmt(row.delta, signed=True)
        if row.improved is not None:
            delta += " ▲" if row.improved else " ▼"
        out.append(
            f"| {_cell(row.display)} | {row.fmt(row.before)} | {row.fmt(row.after)} | {delta} "
            f"| {_cell(row.gate) or '—'} | {result} |"
        )
    out.append("")
    return out


def _params(report: ReportInput) -> list[str]:
    out = ["## Params", ""]
    flat = flatten(report.params)
    if report.baseline_params is None:
        out.append("No baseline to compare params with. This run's params:")
        out += ["", "| Param | Value |", "|---|---|"]
        out += [f"| `{_cell(k)}` | `{_cell(v)}` |" for k, v in sorted(flat.items())]
    else:
        changed = sorted(
            k for k in set(flat) | set(report.baseline_params) if flat.get(k) != report.baseline_params.get(k)
        )
        if not changed:
            out.append("No params changed against the baseline.")
        else:
            out += ["Changed against the baseline:", "", "| Param | Before | After |", "|---|---|---|"]
            for key in changed:
                before = report.baseline_params.get(key, "—")
                after = flat.get(key, "—")
                out.append(f"| `{_cell(key)}` | `{_cell(before)}` | `{_cell(after)}` |")
    out.append("")
    return out

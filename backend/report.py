"""The run's markdown report: for the terminal, the CI step summary and the PR."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend.compare import Comparison, ComparisonRow
from trainboard.backend.evaluations import EvaluationTable, experiment_title, fmt_epoch
from trainboard.backend.exitcodes import RunStatus
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
    evaluations: EvaluationTable | None = None  # the run's metric history, a row per evaluation
    baseline_curve: str | None = None  # the baseline on the plot: None none, "" its curve, else why a flat line


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
    if report.evaluations is not None:
        out += evaluations_section(report.evaluations)
    out += _params(report)
    if report.plot:
        out += ["## Training curves", "", f"![metrics per step]({report.plot})", ""]
        if report.baseline_curve is not None:
            why = report.baseline_curve
            out += [f"The baseline (dashed) is drawn at its final value: {why}." if why
                    else "The baseline (dashed) is its run's curve.", ""]
    if report.confusion_matrix:
        out += ["## Confusion matrix", "", f"![confusion matrix]({report.confusion_matrix})", ""]
    if report.log_tail:
        out += [f"## Last {len(report.log_tail)} lines of the log", "", "```text", *report.log_tail, "```", ""]
    return "\n".join(out)


def _summary(report: ReportInput) -> list[str]:
    """The title, the verdict and the run's table."""
    out: list[str] = []
    out.append(f"# trainboard report: {experiment_title(report.name, report.experiment)}")
    out.append("")
    comp = report.comparison
    out.append(f"**{comp.verdict if comp is not None else no_comparison(report.status, report.job_exit_code)}**")
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


def no_comparison(status: str, job_exit_code: int | None = None) -> str:
    """Why a run's report has no verdict, said for each status it may end (or stand) in."""
    code = f" (exit {job_exit_code})" if job_exit_code is not None else ""
    reasons = {
        RunStatus.CANCELLED: "the run was cancelled before its metrics were compared.",
        RunStatus.JOB_FAILED: f"the training job failed{code}, so its metrics were not compared.",
        RunStatus.ERROR: "trainboard stopped on an error before the metrics were compared.",
        RunStatus.CONFIG_ERROR: "the config was refused, so nothing ran.",
        RunStatus.RUNNING: "the run is still running; its metrics are compared when the job ends.",
        RunStatus.DETACHED: "the job is still running, detached; its metrics are compared when it ends.",
        RunStatus.SUCCEEDED: "the run succeeded, but no comparison was recorded.",
        RunStatus.GATE_FAILED: "the run failed a gate, but no comparison was recorded.",
    }
    try:
        return f"No comparison: {reasons[RunStatus(status)]}"
    except (ValueError, KeyError):
        return f"No comparison: the run ended as {status}."


def change_marks(row: ComparisonRow) -> tuple[str, str]:
    """The delta's direction (▲ up, ▼ down) and whether that is better or worse for the
    metric's goal: a loss that falls reads "▼" and "better"."""
    delta = row.delta
    if delta is None:
        return "", "—"
    if delta == 0:
        return "", "same"
    return ("▲" if delta > 0 else "▼"), ("better" if row.improved else "worse")


def _metrics(comp: Comparison) -> list[str]:
    out = ["## Metrics", "", "| Metric | Before | After | Δ | Change | Gate | Result |",
           "|---|---:|---:|---:|---|---|---|"]
    for row in comp.rows:
        if row.passed is None:
            result = "—"
        elif row.passed:
            result = "✅ pass" + (f" ({row.reason})" if row.reason else "")
        else:
            result = f"❌ fail ({row.reason})"
        arrow, change = change_marks(row)
        delta = row.fmt(row.delta, signed=True) + (f" {arrow}" if arrow else "")
        out.append(
            f"| {_cell(row.display)} | {row.fmt(row.before)} | {row.fmt(row.after)} | {delta} | {change} "
            f"| {_cell(row.gate) or '—'} | {result} |"
        )
    goals = "; ".join(f"{r.display}: {'higher' if r.goal == 'max' else 'lower'} is better" for r in comp.rows)
    out += ["", f"Δ is After − Before; ▲ it rose, ▼ it fell; Change says whether that is better ({_cell(goals)}).", ""]
    return out


def evaluations_section(table: EvaluationTable) -> list[str]:
    """A row per evaluation (step, epoch), a column per followed metric; the baseline's finals."""
    axis = table.axis
    heads = ["Epoch"] if axis.steps_are_epochs else (["Step", "Epoch"] if axis.knows_epochs else ["Step"])
    heads += [_cell(c.display) for c in table.columns]
    out = ["## Evaluations", ""]
    said = f"{table.total} evaluation{'s' if table.total != 1 else ''} of the followed metrics"
    if table.omitted:
        said += f"; the first {len(table.rows) // 2} and the last {len(table.rows) - len(table.rows) // 2} shown"
    names = [c.display for c in table.columns if c.key in table.between]
    if names:
        said += f". {', '.join(names)}: the latest value logged at each evaluation's step"
    out += [said + ".", "", "| " + " | ".join(heads) + " |", "|" + "---:|" * len(heads)]
    for index, row in enumerate(table.rows):
        if table.omitted and index == len(table.rows) // 2:
            out.append(f"| … {table.omitted} more |" + " |" * (len(heads) - 1))
        where = [str(row.step)] if not axis.steps_are_epochs else []
        if axis.knows_epochs:
            where.append(fmt_epoch(row.epoch if row.epoch is not None else row.step))
        values = [c.fmt(v) for c, v in zip(table.columns, row.values, strict=True)]
        out.append("| " + " | ".join(where + values) + " |")
    if table.baseline is not None:
        first = ["Baseline (final)"] + [""] * (len(heads) - len(table.columns) - 1)
        values = [c.fmt(v) for c, v in zip(table.columns, table.baseline, strict=True)]
        out.append("| " + " | ".join(first + values) + " |")
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

"""The sweep's Markdown report (``.trainboard/sweeps/<id>/report.md``) and its CI step summary.

The report: a heading with the verdict line, the sweep's facts, the member table (the
varied values as columns, status, objective, Δ against the base branch, cost, run id; a
member that did not finish says why), the plot of the objective against each varied
setting (``objective.png``, :mod:`trainboard.backend.sweep_plot`), and the best member's
own report, its headings one level down and its images copied under ``best/`` so that
the sweep folder holds everything its report links (a pull request publishes that folder).
Every text passes the sweep's redactor; members' records are already masked.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.github.plan import report_links, rewrite_links
from trainboard.backend.statuswords import what_happened
from trainboard.backend.store import RunRecord, RunStore
from trainboard.backend.sweep_plot import SweepPoint, objective_plot
from trainboard.backend.sweep_record import RUNNING, SweepData, SweepStore
from trainboard.backend.sweep_verdict import RESULT_STATUSES, verdict_line

REPORT_FILE = "report.md"
PLOT_FILE = "objective.png"
BEST_DIR = "best"  # the best member's images, copied beside the sweep's report
REASON_CHARS = 120  # a member's reason or last error, as much as its table cell shows
_IMAGE = re.compile(r"!\[[^\]]*\]\((?!https?:)[^)]*\)")


@dataclass(frozen=True)
class Members:
    """What the report reads of the members' run records."""

    records: Mapping[int, RunRecord]  # member index -> its run record, for those that have one
    base: str  # the base branch the deltas are against
    display: str  # the objective as the config names it


def sweep_folder(data: SweepData, root: Path) -> Path:
    """``<root>/.trainboard/sweeps/<sweep-id>`` (root: the repository)."""
    return SweepStore(root / ".trainboard").path(data.sweep_id)


def read_members(data: SweepData, root: Path) -> Members:
    store = RunStore(root / ".trainboard")
    records: dict[int, RunRecord] = {}
    for member in data.members:
        if member.run_id:
            try:
                records[member.index] = store.load(member.run_id)
            except (OSError, ValueError):
                continue
    base, display = "", data.objective
    for record in records.values():
        config = record.config if isinstance(record.config, dict) else {}
        compared = record.comparison or {}
        base = base or str(compared.get("base_branch") or (config.get("compare") or {}).get("base") or "")
        metric = (config.get("metrics") or {}).get(data.objective)
        if isinstance(metric, dict) and metric.get("display"):
            display = str(metric["display"])
    return Members(records=records, base=base or "base", display=display)


def write_sweep_report(data: SweepData, root: Path, redact: Callable[[str], str] | None = None) -> Path:
    """Write the sweep's report (and its plot, and the best member's images) into the sweep
    folder; the report's path. Blocking (matplotlib draws): call it in a thread."""
    from trainboard.backend.redact import Redactor

    scrub = redact or Redactor.from_env()
    folder = sweep_folder(data, root)
    folder.mkdir(parents=True, exist_ok=True)
    members = read_members(data, root)
    points = result_points(data)
    plot = objective_plot(points, data.params, members.display, data.goal, data.best, folder / PLOT_FILE,
                          title=data.name)
    best_report = _best_report(data, members, folder, copy_images=True)
    text = render_sweep_report(data, members, PLOT_FILE if plot else None, best_report)
    path = folder / REPORT_FILE
    path.write_text(scrub(text), encoding="utf-8")
    return path


def sweep_step_summary(data: SweepData, root: Path, redact: Callable[[str], str] | None = None) -> str:
    """The step summary of a sweep in GitHub Actions: its verdict, the member table and the
    best member's report, without images (files beside the report, unreachable from there)."""
    from trainboard.backend.redact import Redactor

    scrub = redact or Redactor.from_env()
    members = read_members(data, root)
    best_report = _best_report(data, members, sweep_folder(data, root), copy_images=False)
    text = _IMAGE.sub("", render_sweep_report(data, members, None, best_report))
    code = data.exit_code
    name = f", {ExitCode(code).name}" if code in tuple(ExitCode) else ""
    head = f"**trainboard sweep: {data.status}**" + (f" (exit {code}{name})" if code is not None else "")
    return scrub(f"{head}\n\n{text}")


def append_sweep_step_summary(data: SweepData, root: Path, redact: Callable[[str], str] | None = None,
                              env: Mapping[str, str] | None = None) -> bool:
    """Append :func:`sweep_step_summary` to ``$GITHUB_STEP_SUMMARY``; False when it is not set."""
    import os

    from trainboard.backend import ci

    if not (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY"):
        return False  # not in GitHub Actions: nothing rendered
    return ci.append_step_summary(sweep_step_summary(data, root, redact), env)


def result_points(data: SweepData) -> list[SweepPoint]:
    """The members the plot draws: those with a result and an objective value."""
    return [SweepPoint(m.index, m.values, m.objective, m.passed) for m in data.members
            if m.status in RESULT_STATUSES and m.objective is not None]


# ------------------------------------------------------------------ rendering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_sweep_report(data: SweepData, members: Members, plot: str | None, best_report: str | None) -> str:
    """The report's Markdown; ``plot``: the plot's file name beside it; ``best_report``: the
    best member's report as embedded (see :func:`embed_report`), None when it has none."""
    verdict = data.verdict or verdict_line(data.members, data.best, members.display, members.base)
    title = data.name if not data.experiment or data.experiment == data.name else \
        f"{data.name} (experiment {data.experiment})"
    out = [f"# trainboard sweep: {title}", "", f"**{verdict}**", ""]
    out += _facts(data, members)
    out += ["## Members", ""] + member_table(data, members) + [""]
    if plot:
        out += ["## Objective against each varied setting", "", f"![{members.display} against each setting]({plot})",
                ""]
        left_out = sum(1 for m in data.members if m.status not in RESULT_STATUSES or m.objective is None)
        if left_out:
            out += [f"{left_out} member{'s' if left_out != 1 else ''} without a result "
                    f"{'are' if left_out != 1 else 'is'} not drawn.", ""]
    out += _best_section(data, best_report)
    return "\n".join(out)


def _facts(data: SweepData, members: Members) -> list[str]:
    counts: dict[str, int] = {}
    for member in data.members:
        counts[member.status] = counts.get(member.status, 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in counts.items())
    code = f", exit {data.exit_code}" if data.exit_code is not None else ""
    better = "higher" if data.goal == "max" else "lower"
    out = ["| | |", "|---|---|", f"| Sweep | `{data.sweep_id}` ({data.status}{code}) |"]
    if data.branch:
        out.append(f"| Branch | `{_cell(data.branch)}` @ `{data.commit[:10] or '(no commit)'}` |")
    out.append(f"| Members | {len(data.members)}: {said} ({data.mode}, {data.max_parallel} at a time) |")
    out.append(f"| Objective | `{_cell(data.objective)}` ({better} is better), Δ against `{_cell(members.base)}` |")
    if data.cost or data.max_cost_usd is not None:
        cap = f" of the ${data.max_cost_usd:.2f} cap" if data.max_cost_usd is not None else ""
        out.append(f"| Cost | ${data.cost:.2f}{cap} |")
    if data.parent_run_id or data.experiment:
        out.append(f"| MLflow | parent run `{data.parent_run_id or '—'}` in experiment `{_cell(data.experiment)}` |")
    if data.reason:
        out.append(f"| Stopped | {_cell(data.reason)} |")
    return out + [""]


def member_table(data: SweepData, members: Members) -> list[str]:
    """A row a member: ★ on the best, the varied values, status (and why it did not finish),
    objective, Δ against the base branch, cost, run id."""
    heads = ["#", *(f"`{_cell(p)}`" for p in data.params), "Status", _cell(members.display),
             f"Δ vs {_cell(members.base)}", "Cost", "Run"]
    out = ["| " + " | ".join(heads) + " |", "|---:|" + "---|" * len(data.params) + "---|---:|---:|---:|---|"]
    for m in data.members:
        mark = "★ " if m.index == data.best else ""
        values = [f"`{_cell(m.values.get(p, '—'))}`" for p in data.params]
        objective = f"{m.objective:.4f}" if m.objective is not None else "—"
        delta = f"{m.delta:+.4f}" if m.delta is not None else "—"
        cost = f"${m.cost:.2f}" if m.cost is not None else "—"
        run = f"`{m.run_id}`" if m.run_id else "—"
        status = _cell(member_status(m.index, data, members))
        out.append(f"| {mark}{m.index} | " + " | ".join([*values, status, objective, delta, cost, run]) + " |")
    return out


def member_status(index: int, data: SweepData, members: Members) -> str:
    """The member's status, with its stage while it runs and why when it did not finish
    (a failed job's own exit code, as its run recorded it)."""
    m = data.members[index]
    if m.status == RUNNING:
        return f"running ({m.stage})" if m.stage else RUNNING
    record = members.records.get(index)
    text, why = m.status, " ".join(m.reason.split())
    if not why and m.status not in RESULT_STATUSES and record is not None and record.errors:
        why = " ".join(record.errors[-1].message.split())
    code = record.job_exit_code if record is not None else None
    if m.status == RunStatus.JOB_FAILED and code is not None:
        text += f" (exit {code})"
        if why in (f"the job exited with code {code}", f"exit {code}"):
            why = ""  # said already
    if why:
        text += ": " + (why if len(why) <= REASON_CHARS else why[: REASON_CHARS - 1] + "…")
    return text


def _best_section(data: SweepData, best_report: str | None) -> list[str]:
    best = data.best_member
    if best is None:
        return ["## No best member", "", "No member finished with a result, so none was compared with the base "
                "branch.", ""]
    values = " ".join(f"{k}={v}" for k, v in best.values.items()) or f"member {best.index}"
    out = [f"## Best member: {_cell(values)}", "", f"Member {best.index}, run `{best.run_id}`.", ""]
    if best_report is None:
        return out + [f"Its report was not written ({what_happened(best.status)}).", ""]
    return out + [best_report, ""]


# ------------------------------------------------------------------ the best member's own report


def _best_report(data: SweepData, members: Members, folder: Path, copy_images: bool) -> str | None:
    best = data.best_member
    record = members.records.get(best.index) if best is not None else None
    if record is None:
        return None
    path = Path(record.report) if record.report else record.path / REPORT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return embed_report(text, path.parent, folder, copy_images)


def embed_report(text: str, run_dir: Path, folder: Path, copy_images: bool = True) -> str:
    """A run's report as a section of the sweep's: its title dropped, its headings one level
    down, its relative links to files of its run folder pointed at copies under ``best/``
    (copied when ``copy_images``; the previous best's copies removed first)."""
    best_dir = folder / BEST_DIR
    if copy_images:
        shutil.rmtree(best_dir, ignore_errors=True)
    source = run_dir.resolve()

    def resolve(target: str) -> str | None:
        local = (run_dir / target).resolve()
        if not local.is_relative_to(source) or not local.is_file():
            return None
        rel = local.relative_to(source).as_posix()
        if copy_images:
            (best_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, best_dir / rel)
        return f"{BEST_DIR}/{rel}"

    def missing(alt: str, target: str) -> str:
        return f"*({alt or target}: `{target}` was not found in the run's folder)*"

    if report_links(text):
        text = rewrite_links(text, resolve, missing)
    return "\n".join(demote_headings(text.splitlines()))


def demote_headings(lines: list[str]) -> list[str]:
    """Headings one level down (outside code fences); the first line's title dropped."""
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    out, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return out

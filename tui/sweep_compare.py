"""`trainboard compare SWEEP`: a sweep's members in one table, the best member compared again.

The members come from the sweep's record (``.trainboard/sweeps/<id>/sweep.json``) and
each member's run record (its saved comparison: objective, Δ against the base branch,
gates). The best member is picked by the sweep's rule
(:mod:`trainboard.backend.sweep_verdict`) and compared again with its base branch's
latest finished run, as `trainboard compare RUN` does; the command exits with that
comparison's gates (0 passed, 1 failed). With no member to compare, it exits as the
sweep does (4 when every member's job failed, 130 when stopped, else 3).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from trainboard.backend.compare import Comparison
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.store import RunRecord, RunStore
from trainboard.backend.sweep_record import RUNNING, MemberInfo, SweepData, SweepStore
from trainboard.backend.sweep_verdict import best_member, sweep_exit, verdict_line
from trainboard.tui import run_files, sweep_rows
from trainboard.tui.runs_list import status_style


def names_sweep(store: RunStore, ref: str | None) -> bool:
    """Whether `compare REF` means a sweep: an id or prefix starting ``sweep-``, or one that
    names no run but names a sweep."""
    if ref is None:
        return False
    if ref.startswith("sweep-"):
        return True
    try:
        store.resolve(ref)
    except LookupError:
        try:
            SweepStore(store.root).resolve(ref)
        except LookupError:
            return False
        return True
    return False


@dataclass
class MemberRow:
    """A member as compared: the sweep's facts, refreshed from its run record's saved comparison."""

    info: MemberInfo
    record: RunRecord | None
    comparison: Comparison | None


def member_rows(data: SweepData, store: RunStore) -> list[MemberRow]:
    found = sweep_rows.SweepGroup(data, [r for r in store.all() if sweep_rows.sweep_link(r) == data.sweep_id])
    rows = []
    for member in data.members:
        record = found.run_of(member)
        comparison = run_files.saved_comparison(record).comparison if record is not None else None
        rows.append(MemberRow(_refreshed(member, record, comparison, data.objective), record, comparison))
    return rows


def _refreshed(member: MemberInfo, record: RunRecord | None, comparison: Comparison | None,
               objective: str) -> MemberInfo:
    """The member's facts with its run record's word on status, objective, Δ and gates."""
    info = member.model_copy()
    if record is None:
        return info
    if record.status is not None and member.status != RUNNING:
        info.status = str(record.status)
    info.run_id = info.run_id or record.run_id
    if comparison is not None:
        row = next((r for r in comparison.rows if r.key == objective), None)
        if row is not None and row.after is not None:
            info.objective, info.delta = row.after, row.delta
        info.passed = comparison.passed
    return info


def _gates(row: MemberRow) -> Text:
    passed = row.info.passed
    if passed is None:
        return Text("—", style="dim")
    if passed:
        return Text("pass", style="green")
    failed = ", ".join(r.display for r in row.comparison.failed_rows) if row.comparison else ""
    return Text(f"FAIL ({failed})" if failed else "FAIL", style="bold red")


def compare_table(data: SweepData, rows: list[MemberRow], objective: sweep_rows.Objective, base: str) -> Table:
    """One row a member: its varied values, status, objective, Δ against the base, gates, run."""
    table = Table(title=f"sweep {data.sweep_id} · {sweep_rows.members_text(data)}", title_justify="left")
    table.add_column("#", justify="right")
    for setting in data.params:
        table.add_column(setting)
    table.add_column("Status")
    table.add_column(objective.name, justify="right")
    table.add_column(f"Δ vs {base}", justify="right")
    table.add_column("Gates")
    table.add_column("Run")
    for row in rows:
        info = row.info
        best = data.best == info.index
        delta = Text(objective.delta(info) or "—")
        if (tone := sweep_rows.delta_tone(data, info)):
            delta.stylize("green" if tone == "good" else "red")
        status = Text(info.status + (" ★" if best else ""), style=status_style(info.status))
        table.add_row(str(info.index), *(info.values.get(s, "") for s in data.params), status,
                      objective.value(info), delta, _gates(row), info.run_id or "—",
                      style="bold" if best else None)
    return table


def compare_sweep(store: RunStore, ref: str | None) -> int:
    """`trainboard compare SWEEP`: the member table, the best member's comparison made again, the
    verdict line naming it; exit 0/1 by the best member's gates."""
    try:
        data = SweepStore(store.root).resolve(ref)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    rows = member_rows(data, store)
    data.members = [row.info for row in rows]
    data.best = best_member(data.members, data.goal)
    best = next((row for row in rows if row.info.index == data.best), None)
    comparison = None
    if best is not None:
        comparison = _compare_best(data, best)
        if comparison is None:
            return ExitCode.INFRA_ERROR
        best.info = data.members[rows.index(best)] = _refreshed(best.info, best.record, comparison, data.objective)
        best.comparison = comparison
    _print(data, rows, best, comparison)
    if comparison is None:
        return sweep_exit(data.members, None, cancelled=False)
    return ExitCode.OK if comparison.passed else ExitCode.GATE_FAILED


def _compare_best(data: SweepData, best: MemberRow) -> Comparison | None:
    """The best member compared again with its base branch (as `compare RUN`); None, said, when it cannot be."""
    from trainboard.backend.recompare import RecompareError, recompare

    if best.record is None:
        print(f"error: sweep {data.sweep_id}: the best member (#{best.info.index}) has no run record "
              f"{best.info.run_id or ''} under .trainboard/runs (pruned?)", file=sys.stderr)
        return None
    try:
        return recompare(best.record)
    except (RecompareError, ValueError) as exc:  # NothingToCompare included; ValueError: its config no longer validates
        print(f"error: the best member, run {best.record.run_id}: {exc}", file=sys.stderr)
        return None


def _print(data: SweepData, rows: list[MemberRow], best: MemberRow | None, comparison: Comparison | None) -> None:
    from trainboard.tui.console import output_console
    from trainboard.tui.render import comparison_table

    found = sweep_rows.SweepGroup(data, [r.record for r in rows if r.record is not None])
    objective = sweep_rows.objective_of(found)
    base = comparison.base_branch if comparison else _base(rows)
    console = output_console()  # as wide as `run --no-tui` on a pipe
    console.print(f"sweep {data.sweep_id} · {data.branch or '?'} @ {data.commit[:7] or '?'} · objective "
                  f"{objective.name} ({data.goal}) · {data.status}", markup=False)
    if data.status == RUNNING:
        console.print("still running: the best member so far", style="yellow", markup=False)
    console.print(compare_table(data, rows, objective, base))
    if best is not None and comparison is not None:
        console.print(f"best member: run {best.info.run_id}", markup=False)
        console.print(comparison_table(comparison))
    passed = comparison is not None and comparison.passed
    console.print(verdict_line(data.members, data.best, objective.name, base),
                  style="bold green" if passed else "bold red", markup=False)


def _base(rows: list[MemberRow]) -> str:
    return next((r.comparison.base_branch for r in rows if r.comparison is not None), "base")

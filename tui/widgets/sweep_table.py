"""What the sweep dashboard shows of each member: the header line and one table row per member.

Pure functions of the sweep's live state (:class:`~trainboard.backend.sweep_events.MemberState`,
:class:`~trainboard.backend.sweep_record.SweepData`): the screen
(``trainboard.tui.screens.sweep``) decides when to call them, the tests call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text

from trainboard.backend.sweep_events import MemberState
from trainboard.backend.sweep_record import QUEUED, RUNNING, SKIPPED, SweepData
from trainboard.tui.render import format_seconds
from trainboard.tui.widgets.marks import STATUS_MARKS, styled

SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 12  # the objective's latest values a row draws
SORTS = ("index", "objective", "status")  # what ``o`` cycles through
_STATUS_ORDER = {RUNNING: 0, QUEUED: 1, SKIPPED: 3}  # then every finished status (2)
_MARKS = {**STATUS_MARKS, QUEUED: ("…", "$text-muted"), SKIPPED: ("–", "$text-muted")}


def sparkline(values: Sequence[float], points: int = SPARK_POINTS) -> str:
    """The last ``points`` values as block characters, lowest ▁, highest █ (all ▄ when flat)."""
    shown = list(values)[-points:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    if high == low:
        return SPARK[len(SPARK) // 2 - 1] * len(shown)
    top = len(SPARK) - 1
    return "".join(SPARK[round((v - low) / (high - low) * top)] for v in shown)


def best_so_far(data: SweepData) -> int | None:
    """The sweep's best member: its verdict's once it has one, else the best objective value
    seen so far (goal max or min; ties: the lower index); None before any value."""
    if data.best is not None:
        return data.best
    scored = [(m.objective, m.index) for m in data.members if m.objective is not None]
    if not scored:
        return None
    if data.goal == "min":
        return min(scored)[1]
    return min(scored, key=lambda pair: (-pair[0], pair[1]))[1]


def counts(data: SweepData) -> tuple[int, int, int]:
    """Members running, queued, and done (finished or skipped)."""
    running = sum(m.status == RUNNING for m in data.members)
    queued = sum(m.status == QUEUED for m in data.members)
    return running, queued, len(data.members) - running - queued


def money(usd: float) -> str:
    return f"${usd:,.2f}"


def header_text(data: SweepData) -> str:
    """``sweep 2611-ab12 · main · $0.12 of $5.00 cap · 8 members: 2 running, 5 queued, 1 done``
    (the cost first: a narrow terminal cuts the end)."""
    running, queued, done = counts(data)
    spent = money(data.cost)
    cap = f"{spent} of {money(data.max_cost_usd)} cap" if data.max_cost_usd else f"{spent} (no cap)"
    parts = [f"sweep {data.sweep_id}", data.branch or "…", cap,
             f"{len(data.members)} members: {running} running, {queued} queued, {done} done"]
    if data.status != RUNNING:
        parts.append(data.status)
    return " · ".join(parts)


def columns(data: SweepData) -> list[tuple[str, str]]:
    """(key, label) of each column: the index, one per varied setting, then the member's state."""
    varied = [(f"param:{p}", p.removeprefix("params.")) for p in data.params]
    return [("index", "#"), *varied, ("status", "status"), ("progress", "progress"),
            ("objective", data.objective or "objective"), ("delta", "Δ vs base"), ("cost", "cost")]


def status_cell(state: MemberState) -> Text:
    info = state.info
    mark, style = _MARKS.get(info.status, ("?", "$text-muted"))
    stage = f" · {info.stage}" if info.status == RUNNING and info.stage else ""
    return styled(f"{mark} {info.status}{stage}", style)


def progress_text(state: MemberState) -> str:
    """``40/128 · ETA 36s`` (as of the member's latest progress line); "" without one."""
    progress = state.progress
    if progress is None:
        return ""
    steps = f"{progress.step}/{progress.total}" if progress.total else f"step {progress.step}"
    if state.info.status == RUNNING and progress.eta is not None:
        steps += f" · ETA {format_seconds(progress.eta)}"
    return steps


def objective_cell(state: MemberState, best: bool) -> Text:
    value = state.info.objective
    if value is None:
        return styled("—", "$text-muted")
    text = f"{value:.4f} {sparkline(state.history)}".rstrip()
    return styled(text, "bold $success") if best else Text(text)


def delta_cell(state: MemberState, goal: str) -> Text:
    delta = state.info.delta
    if delta is None:
        return styled("—", "$text-muted")
    better = delta > 0 if goal != "min" else delta < 0
    return styled(f"{delta:+.4f}", "$success" if better else "$error" if delta else "")


def row_cells(state: MemberState, data: SweepData, best: bool) -> dict[str, Text | str]:
    """Each column's cell for one member (keys as :func:`columns`)."""
    info = state.info
    index = styled(f"★ {info.index}", "bold $success") if best else Text(f"  {info.index}")
    cells: dict[str, Text | str] = {"index": index}
    for param in data.params:
        cells[f"param:{param}"] = info.values.get(param, "")
    cells["status"] = status_cell(state)
    cells["progress"] = progress_text(state)
    cells["objective"] = objective_cell(state, best)
    cells["delta"] = delta_cell(state, data.goal)
    cells["cost"] = money(info.cost) if info.cost is not None else "—"
    return cells


def row_text(state: MemberState) -> str:
    """What ``/`` matches a row against: its index, values, status and stage."""
    info = state.info
    return f"{info.index} {state.label} {info.status} {info.stage}".lower()


def sort_key(sort: str, goal: str) -> Callable[[MemberState], tuple[Any, ...]]:
    """The key function that orders members for ``sort`` (one of :data:`SORTS`)."""
    if sort == "objective":
        sign = 1 if goal == "min" else -1

        def by_objective(state: MemberState) -> tuple[int, float, int]:
            value = state.info.objective
            return (value is None, sign * (value or 0.0), state.info.index)

        return by_objective
    if sort == "status":
        return lambda state: (_STATUS_ORDER.get(state.info.status, 2), state.info.index)
    return lambda state: (state.info.index,)

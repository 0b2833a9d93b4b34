"""The runs screen: every run recorded under ``.trainboard/runs``, newest first.

Opened by `trainboard runs` on a terminal, and with ``r`` from the run
dashboard. Enter opens a run (:class:`~trainboard.tui.screens.run_detail.RunDetailScreen`).
A sweep (``.trainboard/sweeps/<id>/sweep.json``) is one row in place of its members:
Enter or space expands it into its members' rows, indented under it, and collapses it.
The list is read again every few seconds, so running runs tick and new ones appear.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from trainboard.backend.store import RunRecord, RunStore
from trainboard.backend.sweep_record import MemberInfo, SweepStore
from trainboard.tui import run_files, runs_list, sweep_rows
from trainboard.tui.render import plural
from trainboard.tui.sweep_rows import SweepGroup
from trainboard.tui.widgets.marks import STATUS_MARKS, styled

RELOAD_SECONDS = 3.0
COLUMNS = (
    ("run", "Run"),
    ("status", "Status"),
    ("branch", "Branch"),
    ("commit", "Commit"),
    ("took", "Time"),
    ("cost", "Cost"),
    ("metric", "Metric"),
    ("verdict", "Verdict"),
)
RIGHT = {"took", "cost"}  # numbers: right-aligned, their header too
TONES = {"good": "$success", "bad": "$error", "live": "$warning", "muted": "$text-muted", "": ""}


def status_cell(record: RunRecord) -> Text:
    status = run_files.status(record)
    mark, style = STATUS_MARKS.get(status, ("?", "$text-muted"))
    return styled(f"{mark} {status}", style)


def row_cells(record: RunRecord, now: float) -> dict[str, Text]:
    commit = record.commit[:7] + ("*" if record.dirty else "")
    verdict, tone = runs_list.verdict(record)
    primary = runs_list.primary_metric(record)
    return {
        "run": Text(record.run_id),
        "status": status_cell(record),
        "branch": Text(record.branch or "—"),
        "commit": Text(commit or "—"),
        "took": Text(run_files.duration_text(record, now), justify="right"),
        "cost": Text(run_files.cost_text(record, now), justify="right"),
        "metric": Text("—") if primary is None else styled(primary.text, TONES[primary.tone]),
        "verdict": styled(verdict, TONES[tone]),
    }


MEMBER_MARKS = {sweep_rows.QUEUED: ("○", "$text-muted"), sweep_rows.SKIPPED: ("–", "$text-muted")}
Target = RunRecord | SweepGroup | MemberInfo  # what a row shows: a run, a sweep, a member not started


def sweep_cells(found: SweepGroup, now: float, expanded: bool) -> dict[str, Text]:
    """The sweep's row: its members counted, the best member's objective and values, its total cost."""
    data = found.data
    mark, style = STATUS_MARKS.get(data.status, MEMBER_MARKS.get(data.status, ("?", "$text-muted")))
    best, best_tone = sweep_rows.best_text(found)
    said, tone = sweep_rows.verdict_text(data)
    return {
        "run": Text(("▾ " if expanded else "▸ ") + data.sweep_id),
        "status": styled(f"{mark} {data.status}", style),
        "branch": Text(data.branch or "—"),
        "commit": Text(data.commit[:7] or "—"),
        "took": Text(sweep_rows.duration_text(data, now), justify="right"),
        "cost": Text(sweep_rows.cost_text(data), justify="right"),
        "metric": styled(best, TONES[best_tone]),
        "verdict": styled(f"{sweep_rows.members_text(data)} · {said}", TONES[tone]),
    }


def member_cells(found: SweepGroup, member: MemberInfo, now: float) -> dict[str, Text]:
    """A member's row under its sweep: its run's cells (indented), its values before the verdict;
    a member with no run yet (queued, skipped) says so."""
    last = member is found.data.members[-1]
    indent = (" └ " if last else " ├ ")
    values = sweep_rows.values_label(member.values)
    record = found.run_of(member)
    if record is not None:
        cells = row_cells(record, now)
        cells["run"] = Text(indent + record.run_id)
        cells["verdict"] = Text(f"{values}: ").append_text(cells["verdict"])
        return cells
    mark, style = MEMBER_MARKS.get(member.status, STATUS_MARKS.get(member.status, ("?", "$text-muted")))
    objective = sweep_rows.objective_of(found)
    return {
        "run": Text(f"{indent}#{member.index}"),
        "status": styled(f"{mark} {member.status}", style),
        "branch": Text("—"), "commit": Text("—"),
        "took": Text("—", justify="right"), "cost": Text("—", justify="right"),
        "metric": Text(objective.text(member) if member.objective is not None else "—"),
        "verdict": styled(f"{values}: {member.reason or 'not started'}", TONES["muted"]),
    }


def column_label(key: str, label: str) -> Text:
    return Text(label, justify="right" if key in RIGHT else "left")


class RunsTable(DataTable[Text]):
    DEFAULT_CSS = """
    RunsTable {
        height: 1fr;
        border: round $primary 60%;
        border-title-color: $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
        &:focus { border: round $accent; }
    }
    """


class RunsScreen(Screen[None]):
    """Runs: past and running, newest first; a sweep is one row that expands into its members."""

    HELP_ORDER = 10  # its place in the help screen
    HELP_TITLE = "Runs screen"
    DEFAULT_CSS = """
    RunsScreen #runs-hint {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    RunsScreen #runs-hint.-live { color: $warning; }
    RunsScreen #runs-empty {
        height: 1fr;
        content-align: center middle;
        color: $text-muted;
        display: none;
    }
    RunsScreen.-empty #runs-empty { display: block; }
    RunsScreen.-empty RunsTable { display: none; }
    """
    BINDINGS = [
        Binding("enter", "open_run", "Open run"),
        Binding("space", "toggle_sweep", "Expand/collapse sweep"),
        Binding("escape", "back", "Back"),
        Binding("g", "reload", "Reload", show=False),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.sweep_store = SweepStore(store.root)
        self.records: dict[str, RunRecord] = {}  # every run, sweep members included
        self.sweeps: dict[str, SweepGroup] = {}
        self.entries: list[RunRecord | SweepGroup] = []  # the list's order: runs and sweeps
        self.expanded: set[str] = set()  # the sweeps whose members are listed
        # The rows' keys: a run's id, a sweep's id, "<sweep-id>#<index>" for a member under its sweep.
        self.keys: list[str] = []

    def compose(self) -> ComposeResult:
        table = RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        table.border_title = "Runs"
        yield table
        yield Static(
            "no runs yet: start one with `trainboard run sample_params.yaml`", id="runs-empty", markup=False
        )
        yield Static("", id="runs-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(RunsTable)
        for key, label in COLUMNS:
            table.add_column(column_label(key, label), key=key)
        self.reload()
        self.set_interval(RELOAD_SECONDS, self.reload)
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The sweep key is in the footer only when a sweep is listed."""
        return bool(self.sweeps) if action == "toggle_sweep" else True

    def reload(self) -> None:
        """Read the records again; update rows by key; when runs or sweeps came or went, list them
        again, newest first (the order `trainboard runs --no-tui` prints).

        Once the list is known, only the runs and sweeps that are still live are read again (and
        their rows drawn again), unless runs or sweeps were added or removed.
        """
        table = self.query_one(RunsTable)
        now = time.time()
        if self._names() == (set(self.records), set(self.sweeps)) and table.row_count == len(self.keys):
            for entry in list(self.entries):
                fresh = self._refresh(entry)
                for key, cells in self._rows(fresh, now) if fresh is not None else ():
                    self._update_row(table, key, cells)
        else:
            had_sweeps = bool(self.sweeps)
            self.entries = sweep_rows.load_groups(self.store)
            self._index()
            with self.app.batch_update():
                self._list_again(table, now)
            if had_sweeps != bool(self.sweeps):
                self.refresh_bindings()
        running = sum(run_files.is_running(r) for r in self.records.values())
        sweeps = f" · {plural(len(self.sweeps), 'sweep')}" if self.sweeps else ""
        table.border_subtitle = plural(len(self.records), "run") + sweeps + (f" · {running} running" if running else "")
        self.set_class(not self.entries, "-empty")
        self._show_hint()

    def _names(self) -> tuple[set[str], set[str]]:
        runs, sweeps = self.store.runs, self.sweep_store.sweeps
        return ({p.name for p in runs.iterdir()} if runs.is_dir() else set(),
                {p.name for p in sweeps.iterdir()} if sweeps.is_dir() else set())

    def _index(self) -> None:
        self.records, self.sweeps = {}, {}
        for entry in self.entries:
            if isinstance(entry, SweepGroup):
                self.sweeps[entry.sweep_id] = entry
                self.records.update((r.run_id, r) for r in entry.runs)
            else:
                self.records[entry.run_id] = entry

    def _refresh(self, entry: RunRecord | SweepGroup) -> RunRecord | SweepGroup | None:
        """A live run or sweep (and its live members) read again; None when it is not live."""
        if isinstance(entry, RunRecord):
            if run_files.is_live(entry):
                with contextlib.suppress(OSError, ValueError):
                    return self._replace(entry, self.store.load(entry.run_id))
                return entry
            return None
        live = entry.is_live or any(run_files.is_live(r) for r in entry.runs)
        if entry.is_live:
            with contextlib.suppress(OSError, ValueError):
                entry.data = self.sweep_store.load(entry.sweep_id)
        for n, record in enumerate(entry.runs):
            if run_files.is_live(record):
                with contextlib.suppress(OSError, ValueError):
                    entry.runs[n] = self._replace(record, self.store.load(record.run_id))
        return entry if live else None

    def _replace(self, old: RunRecord, new: RunRecord) -> RunRecord:
        self.records[new.run_id] = new
        self.entries = [new if e is old else e for e in self.entries]
        return new

    def _rows(self, entry: RunRecord | SweepGroup, now: float) -> Iterator[tuple[str, dict[str, Text]]]:
        """The entry's rows, by key: a run's one; a sweep's, and its members' when it is expanded."""
        if isinstance(entry, RunRecord):
            yield entry.run_id, row_cells(entry, now)
            return
        expanded = entry.sweep_id in self.expanded
        yield entry.sweep_id, sweep_cells(entry, now, expanded)
        if expanded:
            for member in entry.data.members:
                yield f"{entry.sweep_id}#{member.index}", member_cells(entry, member, now)

    @staticmethod
    def _update_row(table: RunsTable, key: str, cells: dict[str, Text]) -> None:
        for column, cell in cells.items():
            if table.get_cell(key, column) != cell:
                table.update_cell(key, column, cell, update_width=True)

    def _list_again(self, table: RunsTable, now: float, current: str | None = None) -> None:
        """Every row again, in the entries' order; the cursor stays on its row (or on ``current``)."""
        if current is None and table.row_count:
            current = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        table.clear()
        self.keys = []
        for entry in self.entries:
            for key, cells in self._rows(entry, now):
                table.add_row(*(cells[column] for column, _ in COLUMNS), key=key)
                self.keys.append(key)
        if current in self.keys:
            table.move_cursor(row=table.get_row_index(current))

    def selected_key(self) -> str | None:
        table = self.query_one(RunsTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def selected_target(self) -> Target | None:
        """What the row under the cursor shows, as last read: a run, a sweep, a member not started."""
        key = self.selected_key()
        if key is None or key in self.sweeps:
            return None if key is None else self.sweeps[key]
        sweep_id, mark, index = key.rpartition("#")
        if mark and sweep_id in self.sweeps:
            found = self.sweeps[sweep_id]
            member = next(m for m in found.data.members if str(m.index) == index)
            return found.run_of(member) or member
        return self.records.get(key)

    def selected(self) -> RunRecord | None:
        target = self.selected_target()
        return target if isinstance(target, RunRecord) else None

    def _selected_sweep(self) -> SweepGroup | None:
        """The sweep of the row under the cursor: its own row's, or a member's."""
        key = self.selected_key() or ""
        return self.sweeps.get(key) or self.sweeps.get(key.rpartition("#")[0])

    def _show_hint(self) -> None:
        hint = self.query_one("#runs-hint", Static)
        target = self.selected_target()
        live = False
        if isinstance(target, SweepGroup):
            live = target.is_live
            fold = "collapses it" if target.sweep_id in self.expanded else "lists its members"
            text = f"{target.sweep_id}: {sweep_rows.members_text(target.data)}  ·  enter: {fold}"
        elif isinstance(target, MemberInfo):
            text = f"#{target.index} {sweep_rows.values_label(target.values)}: {target.status}, no run yet"
        elif target is None:
            text = ""
        else:
            text, live = self._run_hint(target)
        hint.update(text)
        hint.set_class(live, "-live")

    @staticmethod
    def _run_hint(record: RunRecord) -> tuple[str, bool]:
        if run_files.watched_here(record):
            return f"● {record.run_id} is running in this dashboard: escape goes back to it", True
        if run_files.is_live(record):
            return f"● {record.run_id}: {run_files.live_text(record)}", True
        return f"{record.path}  ·  enter: its log, metrics and comparison", False

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_hint()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def action_open_run(self) -> None:
        """Open the run under the cursor; on a sweep's row, expand or collapse it."""
        from trainboard.tui.screens.run_detail import RunDetailScreen

        target = self.selected_target()
        if isinstance(target, SweepGroup):
            self.action_toggle_sweep()
        elif isinstance(target, RunRecord):
            self.app.push_screen(RunDetailScreen(target))

    def action_toggle_sweep(self) -> None:
        """Expand the sweep under the cursor (on a member's row: collapse its sweep, onto its row)."""
        found = self._selected_sweep()
        if found is None:
            return
        self.expanded ^= {found.sweep_id}
        table = self.query_one(RunsTable)
        with self.app.batch_update():
            self._list_again(table, time.time(), found.sweep_id)
        self._show_hint()

    def action_reload(self) -> None:
        self.reload()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1 and self.app.screen_stack[0] is not self:
            self.app.pop_screen()
        else:
            self.app.exit(0)

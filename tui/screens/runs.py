"""The runs screen: every run recorded under ``.trainboard/runs``, newest first.

Opened by `trainboard runs` on a terminal, and with ``r`` from the run
dashboard. Enter opens a run (:class:`~trainboard.tui.screens.run_detail.RunDetailScreen`).
The list is read again every few seconds, so running runs tick and new ones appear.
"""

from __future__ import annotations

import contextlib
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from trainboard.backend.store import RunRecord, RunStore
from trainboard.tui import run_files, runs_list
from trainboard.tui.render import plural
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
    """Runs: past and running, newest first."""

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
        Binding("escape", "back", "Back"),
        Binding("g", "reload", "Reload", show=False),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.records: dict[str, RunRecord] = {}

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

    def reload(self) -> None:
        """Read the records again; update rows by key; when runs came or went, list them
        again, newest first (the order `trainboard runs --no-tui` prints).

        Once the list is known, only the runs that are still live are read again (and
        their rows drawn again), unless runs were added or removed.
        """
        names = {path.name for path in self.store.runs.iterdir()} if self.store.runs.is_dir() else set()
        table = self.query_one(RunsTable)
        now = time.time()
        if names == set(self.records) and table.row_count == len(names):
            records = dict(self.records)
            for run_id, record in self.records.items():
                if run_files.is_live(record):
                    with contextlib.suppress(OSError, ValueError):
                        records[run_id] = self.store.load(run_id)
                    self._update_row(table, records[run_id], now)
        else:
            records = {record.run_id: record for record in runs_list.newest_first(self.store.all())}
            with self.app.batch_update():
                self._list_again(table, records, now)
        self.records = records
        running = sum(run_files.is_running(r) for r in records.values())
        table.border_subtitle = plural(len(records), "run") + (f" · {running} running" if running else "")
        self.set_class(not records, "-empty")
        self._show_hint()

    @staticmethod
    def _update_row(table: RunsTable, record: RunRecord, now: float) -> None:
        for column, cell in row_cells(record, now).items():
            if table.get_cell(record.run_id, column) != cell:
                table.update_cell(record.run_id, column, cell, update_width=True)

    @staticmethod
    def _list_again(table: RunsTable, records: dict[str, RunRecord], now: float) -> None:
        """Every row again, in the records' order; the cursor stays on its run."""
        current = None
        if table.row_count:
            current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for run_id, record in records.items():
            cells = row_cells(record, now)
            table.add_row(*(cells[key] for key, _ in COLUMNS), key=run_id)
        if current in records:
            table.move_cursor(row=table.get_row_index(current))

    def selected(self) -> RunRecord | None:
        table = self.query_one(RunsTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.records.get(str(key))

    def _show_hint(self) -> None:
        hint = self.query_one("#runs-hint", Static)
        record = self.selected()
        live = record is not None and run_files.is_live(record)
        if record is None:
            text = ""
        elif run_files.watched_here(record):
            text = f"● {record.run_id} is running in this dashboard: escape goes back to it"
        elif live:
            text = f"● {record.run_id}: {run_files.live_text(record)}"
        else:
            text = f"{record.path}  ·  enter: its log, metrics and comparison"
        hint.update(text)
        hint.set_class(live, "-live")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_hint()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def action_open_run(self) -> None:
        from trainboard.tui.screens.run_detail import RunDetailScreen

        record = self.selected()
        if record is not None:
            self.app.push_screen(RunDetailScreen(record))

    def action_reload(self) -> None:
        self.reload()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1 and self.app.screen_stack[0] is not self:
            self.app.pop_screen()
        else:
            self.app.exit(0)

"""The sweep dashboard's main screen: a header line and one table row per member.

The screen never follows a member's log: a timer (8 Hz) reads the sweep's live
state and re-renders only the rows whose ``MemberState.version`` moved (plus the
old and new best), by key, inside one ``batch_update``. Filtering (``/``) and
sorting (``o``) rebuild the table once. Enter opens the selected member's run
dashboard (:class:`~trainboard.tui.screens.sweep_member.MemberScreen`); escape
comes back, the member still running.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.backend import sweep_events as sev
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_record import QUEUED, RUNNING
from trainboard.tui.widgets import ConfirmScreen
from trainboard.tui.widgets.footer import SteadyFooter
from trainboard.tui.widgets.kept_background import KeptBackgroundConfirm
from trainboard.tui.widgets.members_view import MembersView
from trainboard.tui.widgets.sweep_table import (
    SORTS,
    best_so_far,
    columns,
    header_text,
    row_cells,
    row_text,
    sort_key,
)

TICK_SECONDS = 1 / 8
KEPT_SCREENS = 3  # members' run dashboards kept for enter again


class SweepScreen(Screen[None]):
    """Every member of ``sweep`` at a glance."""

    HELP_APPS = ("SweepApp",)  # the run dashboard's help does not list it
    HELP_ORDER = 40
    HELP_TITLE = "Sweep dashboard"
    DEFAULT_CSS = """
    SweepScreen #sweep-header {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    SweepScreen #members {
        height: 1fr;
        padding: 0 1;
        border: round $primary 60%;
        border-title-color: $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    SweepScreen #members:focus {
        border: round $accent;
    }
    SweepScreen #sweep-status {
        height: 1;
        padding: 0 1;
        background: $surface;
        color: $text-muted;
    }
    """
    BINDINGS = [
        Binding("s", "stop_member", "Stop member"),
        Binding("c", "cancel_sweep", "Cancel sweep"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "cycle_sort", "Sort"),
    ]

    def __init__(self, sweep: Sweep) -> None:
        super().__init__()
        self.sweep = sweep
        self.filter = ""
        self.sort = SORTS[0]
        self.best: int | None = None
        self.shown: list[int] = []  # the member indexes in the table, in order
        self._seen: dict[int, int] = {}  # member index -> the version its row shows
        self._header = Static(id="sweep-header", markup=False)
        self._table = MembersView(columns(sweep.data), id="members")
        self._status = Static("", id="sweep-status", markup=False)
        self._header_text = ""
        self._inbox: list[ev.Event] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._kept: dict[int, Screen[None]] = {}  # member index -> its run dashboard, oldest first

    def compose(self) -> ComposeResult:
        yield self._header
        yield self._table
        yield self._status
        yield SteadyFooter()

    def on_mount(self) -> None:
        self._unsubscribe = self.sweep.subscribe(self._inbox.append)
        self.refresh_rows(rebuild=True)
        self.set_interval(TICK_SECONDS, self.refresh_rows)
        self._table.focus()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    # ------------------------------------------------------------------ rendering

    def _order(self) -> list[int]:
        members = self.sweep.members
        picked = [m for m in members if not self.filter or self.filter.lower() in row_text(m)]
        return [m.info.index for m in sorted(picked, key=sort_key(self.sort, self.sweep.data.goal))]

    def refresh_rows(self, rebuild: bool = False) -> None:
        """Render what moved since the last call (everything when ``rebuild``); nothing while
        another screen is over this one (a question, a member's dashboard): it catches up after."""
        events, self._inbox[:] = list(self._inbox), []
        if not rebuild and self.app.screen is not self:
            for event in events:
                self._announce(event)  # the sweep's end is told over any screen
            return
        members = self.sweep.members
        changed = {m.info.index for m in members if self._seen.get(m.info.index) != m.version}
        best = best_so_far(self.sweep.data)
        if best != self.best:
            changed |= {i for i in (best, self.best) if i is not None}
            self.best = best
        if not (changed or events or rebuild):
            return
        resort = rebuild or (self.sort != "index" or bool(self.filter))  # the index order never moves
        order = self._order() if resort else self.shown
        with self.app.batch_update():
            if rebuild or order != self.shown:
                self._fill(order)
            else:
                self._update(changed)
            header = header_text(self.sweep.data)
            if header != self._header_text:  # a Static's update costs a layout: only when it reads otherwise
                self._header_text = header
                self._header.update(header)
            for event in events:
                self._announce(event)

    def _fill(self, order: list[int]) -> None:
        data, cells = self.sweep.data, {}
        for index in order:
            state = self.sweep.members[index]
            cells[index] = row_cells(state, data, index == self.best)
            self._seen[index] = state.version
        self._table.show(order, cells)
        self.shown = order
        # A border's title repaints the whole widget: set here, where the sort or the filter moved.
        self._table.border_title = f"members · sorted by {self.sort}"
        self._table.border_subtitle = f"filter: {self.filter}" if self.filter else ""

    def _update(self, changed: set[int]) -> None:
        data = self.sweep.data
        for index in changed:
            state = self.sweep.members[index]
            self._seen[index] = state.version
            if index in self.shown:
                self._table.update(index, row_cells(state, data, index == self.best))

    def _announce(self, event: ev.Event) -> None:
        match event:
            case sev.SweepFinished(exit_code=code, status=status):
                data = self.sweep.data
                lines = [data.verdict or f"exit {code}"] + ([f"report: {data.report}"] if data.report else [])
                self._status.update(f"sweep {status} · exit {code} · {data.verdict}")
                self.notify("\n".join(lines), title=f"sweep {status}", timeout=12, markup=False,
                            severity="information" if code == 0 else "warning")
                self.app.refresh_bindings()
            case sev.MemberChanged(index=index, status=status, detail=detail) if detail:
                self._status.update(f"member {index} {status}: {detail}")

    # ------------------------------------------------------------------ keys

    @property
    def selected(self) -> int | None:
        """The member under the table's cursor."""
        return self._table.selected

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_sweep":
            return None if self.sweep.stop_reason or self.sweep.data.status != RUNNING else True
        return True

    def on_members_view_selected(self, event: MembersView.Selected) -> None:
        event.stop()
        self.action_open_member()

    def action_open_member(self) -> None:
        """enter: the selected member's run dashboard (escape comes back)."""
        index = self.selected
        if index is None:
            return
        state = self.sweep.members[index]
        if state.session is None:
            why = "queued: it has not started yet" if state.info.status == QUEUED else \
                f"{state.info.status}: it never started ({state.info.reason or 'no reason given'})"
            self.notify(f"member {index} is {why}", title=state.label, markup=False)
            return
        self.app.push_screen(self._member_screen(index))

    def _member_screen(self, index: int) -> Screen[None]:
        """Member ``index``'s run dashboard: the one opened before when it is among the last
        KEPT_SCREENS (kept installed, paused while hidden: enter again shows it at once)."""
        from trainboard.tui.screens.sweep_member import MemberScreen

        name = f"sweep-member-{index}"
        kept = self._kept.pop(index, None)
        if kept is None:
            kept = MemberScreen(self.sweep, self.sweep.members[index])
            self.app.install_screen(kept, name)
        self._kept[index] = kept  # the newest last
        while len(self._kept) > KEPT_SCREENS:
            oldest, screen = next(iter(self._kept.items()))
            del self._kept[oldest]
            self.app.uninstall_screen(screen)
            screen.remove()
        return kept

    def action_stop_member(self) -> None:
        """s: stop the selected member (it tears down), after a question."""
        index = self.selected
        if index is None:
            return
        state = self.sweep.members[index]
        if state.info.status not in (QUEUED, RUNNING):
            self.notify(f"member {index} has ended ({state.info.status})", title="Nothing to stop")
            return
        what = "it never starts" if state.info.status == QUEUED else "its job is stopped and its runner torn down"
        self.app.push_screen(
            KeptBackgroundConfirm[bool]("stop", f"Stop member {index}?", f"{state.label}: {what}; the others go on.",
                                yes="Stop member"),
            lambda yes: self._stop_answered(index, yes),
        )

    def _stop_answered(self, index: int, yes: bool | None) -> None:
        if yes and self.sweep.stop_member(index, "stopped from the dashboard"):
            self.notify(f"member {index}: stopping", title="Sweep")

    def action_cancel_sweep(self) -> None:
        """c: stop every member and start no more, after a question; the dashboard stays open."""
        if self.sweep.stop_reason or isinstance(self.app.screen, ConfirmScreen):
            return
        self.app.push_screen(
            KeptBackgroundConfirm[bool](
                "cancel",
                "Cancel the sweep?",
                "Every running member is stopped and torn down, the queued ones never start; "
                "the dashboard stays open.",
                yes="Cancel sweep",
            ),
            self._cancel_answered,
        )

    def _cancel_answered(self, yes: bool | None) -> None:
        if yes and self.sweep.cancel("cancelled from the dashboard"):
            self._status.update("cancelled from the dashboard: stopping every member and tearing down …")
            self.refresh_bindings()

    def action_filter(self) -> None:
        """/: show only the rows whose index, values or status contain the text (as you type)."""
        from trainboard.tui.widgets.log_search import SearchPrompt

        before = self.filter

        def answered(query: str | None) -> None:
            self.set_filter(before if query is None else query)

        self.app.push_screen(SearchPrompt(self.filter, on_change=self.set_filter), answered)

    def set_filter(self, text: str) -> None:
        if text != self.filter:
            self.filter = text
            self.refresh_rows(rebuild=True)

    def action_cycle_sort(self) -> None:
        """o: order the rows by index, by objective (best first), or by status."""
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.refresh_rows(rebuild=True)


__all__ = ["SweepScreen"]

"""Reading a log as it grows: follow or pause, search, jump to errors.

:class:`LogNavigator` is the behaviour the live pane and the full-log view
share. A subclass says where its lines are (``found``: the rows that match,
and how far its scan has got) and what its subtitle shows; the navigator owns
the keys, the follow/pause state, the marked row and the highlighting.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.scroll_view import ScrollView

from trainboard.tui.widgets.log_index import NOT_YET, find_row
from trainboard.tui.widgets.log_search import ERROR_PATTERN, SearchPrompt, search_pattern

MATCH = "match"
ERROR = "error"


class Found(NamedTuple):
    """The rows that match, in order, as far as the scan has got."""

    rows: Sequence[int]
    scanned_to: int  # rows below this have been scanned
    complete: bool  # the scan has reached the last row


class LogNavigator(ScrollView):
    COMPONENT_CLASSES = {"log--match", "log--mark", "log--error"}
    DEFAULT_CSS = """
    LogNavigator > .log--match {
        background: $warning;
        color: $background;
        text-style: bold;
    }
    LogNavigator > .log--mark {
        background: $primary 50%;
    }
    LogNavigator > .log--error {
        color: $error;
    }
    """
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next match"),
        Binding("N", "previous_match", "Prev match"),
        Binding("e", "next_error", "Next error"),
        Binding("E", "previous_error", "Prev error", show=False),
        Binding("f", "toggle_follow", "Pause/follow"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.following = True
        self.unseen = 0  # lines that arrived since the view paused
        self.search_query = ""
        self.mark: tuple[str, int] | None = None  # where the last jump went: (MATCH or ERROR, row)
        self.miss = ""  # why the last jump went nowhere
        self._pattern = search_pattern("")
        self._pending: tuple[str, int, int] | None = None  # a jump waiting for the scan: kind, direction, start
        self._steering = 0  # >0 while the view scrolls itself (not the user)

    # ------------------------------------------------------------------ what subclasses provide

    def found(self, kind: str) -> Found:
        """The rows that match the search (MATCH) or look like errors (ERROR)."""
        raise NotImplementedError

    def nav_changed(self) -> None:
        """Something the subtitle shows has changed."""

    def search_changed(self, submitted: bool) -> None:
        """The search changed: as it is typed, or (``submitted``) for good."""

    def restyle(self) -> None:
        """The highlighting changed: render the visible lines again."""
        self.refresh()

    # ------------------------------------------------------------------ follow and pause

    def set_following(self, following: bool, scroll: bool = True) -> None:
        """Follow (scrolling to the end, unless ``scroll`` is False) or pause."""
        if following == self.following:
            return
        self.following = following
        self.unseen = 0
        if following and scroll:
            self.scroll_to_end()
        self._keys_changed()
        self.nav_changed()

    def scroll_to_end(self) -> None:
        with self.steering():
            # force: the scrollbar this scroll needs may not be laid out yet
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    @contextmanager
    def steering(self) -> Iterator[None]:
        """Scrolls made inside are the view's own: they neither pause nor resume it."""
        self._steering += 1
        try:
            yield
        finally:
            self._steering -= 1

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._steering:
            return
        if self.following and new_value < old_value and new_value < self.max_scroll_y:
            self.set_following(False)  # the user scrolled up
        elif not self.following and new_value > old_value and new_value >= self.max_scroll_y:
            # The user came back to the end. No scroll from here: this may be a
            # step of a scroll animation, which a new scroll would cut short.
            self.set_following(True, scroll=False)

    def action_scroll_end(self) -> None:
        self.set_following(True)
        self.scroll_to_end()

    def action_scroll_home(self) -> None:
        self.set_following(False)
        with self.steering():
            self.scroll_to(0, 0, animate=False, immediate=True, force=True)

    def action_pause(self) -> None:
        self.set_following(False)

    def action_follow(self) -> None:
        self.set_following(True)

    def action_toggle_follow(self) -> None:
        self.set_following(not self.following)

    def _keys_changed(self) -> None:
        """The footer's keys are the same in every state: rebuilding the footer on each
        change costs ~100 ms under load, so the state shows in the pane's subtitle."""

    # ------------------------------------------------------------------ search and jumps

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape clears a search, or else falls through (to close a screen); it is
        # not in the footer, so its changing state rebuilds nothing.
        if action == "clear_search":
            return bool(self.search_query or self.mark)
        return True

    def action_search(self) -> None:
        before = self.search_query

        def answered(query: str | None) -> None:
            if query is None:  # Escape: the search as it was
                self.set_search(before, submitted=True)
                return
            self.set_search(query, submitted=True)
            if query:  # the nearest match at or above the bottom of the view
                self.jump(MATCH, -1, self.visible_rows[1] + 1)

        self.app.push_screen(SearchPrompt(before, on_change=self.set_search), answered)

    def action_next_match(self) -> None:
        self.jump(MATCH, 1)

    def action_previous_match(self) -> None:
        self.jump(MATCH, -1)

    def action_next_error(self) -> None:
        self.jump(ERROR, 1)

    def action_previous_error(self) -> None:
        self.jump(ERROR, -1)

    def action_clear_search(self) -> None:
        self.set_search("", submitted=True)
        self.mark = None
        self.miss = ""
        self._pending = None
        self._keys_changed()
        self.restyle()
        self.nav_changed()

    def set_search(self, query: str, submitted: bool = False) -> None:
        if query == self.search_query and not submitted:
            return
        self.search_query = query
        self._pattern = search_pattern(query)
        if self.mark is not None and self.mark[0] == MATCH:
            self.mark = None
        if self._pending is not None and self._pending[0] == MATCH:
            self._pending = None
        self.miss = ""
        self.search_changed(submitted)
        self._keys_changed()
        self.restyle()
        self.nav_changed()

    @property
    def visible_rows(self) -> tuple[int, int]:
        """The first and last row in view."""
        top = round(self.scroll_y)
        return top, top + max(1, self.scrollable_content_region.height) - 1

    def jump(self, kind: str, direction: int, start: int | None = None) -> None:
        """Go to the next (1) or previous (-1) row of ``kind`` after ``start``, wrapping.

        Without ``start``, from the marked row if it is in view, else from the
        edge of the view. If the scan has not got that far yet, the jump waits
        (``retry_jump`` is called as the scan goes on).
        """
        if start is None:
            top, bottom = self.visible_rows
            if self.mark is not None and top <= self.mark[1] <= bottom:
                start = self.mark[1]
            else:
                start = top - 1 if direction > 0 else bottom + 1
        found = self.found(kind)
        row = find_row(found.rows, found.scanned_to, found.complete, direction, start)
        if row == NOT_YET:
            self._pending = (kind, direction, start)
            self.nav_changed()
            return
        self._pending = None
        if row is None:
            self.miss = f"no match for {self.search_query!r}" if kind == MATCH else "no errors"
            self.nav_changed()
            return
        self.miss = ""
        self.mark = (kind, row)
        self.set_following(False)
        self.show_row(row)
        self._keys_changed()
        self.restyle()
        self.nav_changed()

    def retry_jump(self) -> None:
        if self._pending is not None:
            kind, direction, start = self._pending
            self.jump(kind, direction, start)

    def show_row(self, row: int) -> None:
        """Scroll so that ``row`` is in view, a third of the way down if it was not."""
        top, bottom = self.visible_rows
        if top <= row <= bottom:
            return
        height = bottom - top + 1
        with self.steering():
            self.scroll_to(y=max(0, row - height // 3), animate=False, immediate=True, force=True)

    def shift_rows(self, removed: int) -> None:
        """``removed`` rows went from the top: the marked row moved up."""
        if self.mark is not None:
            kind, row = self.mark
            self.mark = (kind, row - removed) if row >= removed else None
        self._pending = None

    # ------------------------------------------------------------------ what is shown

    def nav_status(self) -> list[str]:
        """The subtitle's parts about following and the last jump."""
        parts = ["following" if self.following else "paused"]
        if not self.following and self.unseen:
            parts.append(f"{self.unseen:,} new lines")
        if self._pending is not None:
            parts.append("searching …")
        elif self.miss:
            parts.append(self.miss)
        elif self.mark is not None:
            kind, row = self.mark
            found = self.found(kind)
            more = "" if found.complete else "+"
            parts.append(f"{kind} {bisect_left(found.rows, row) + 1:,}/{len(found.rows):,}{more}")
        elif self.search_query:
            found = self.found(MATCH)
            count = len(found.rows)
            if found.complete or count:
                parts.append(f"{count:,}{'' if found.complete else '+'} match{'' if count == 1 else 'es'}")
        return parts

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(name, partial=True)

    def mark_line(self, text: Text, row: int) -> None:
        """Highlight a line being rendered: errors, the marked row, search matches."""
        plain = text.plain
        if ERROR_PATTERN.search(plain):
            text.stylize(self._style("log--error"))
        if self.mark is not None and self.mark[1] == row:
            text.stylize(self._style("log--mark"))
        if self._pattern is not None:
            style = self._style("log--match")
            for match in self._pattern.finditer(plain):
                text.stylize(style, match.start(), match.end())

"""The live log pane: lines are buffered as they arrive and written once per tick."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from rich.cells import cell_len
from rich.highlighter import Highlighter
from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip
from textual.widgets import Log

from trainboard.tui.compat_textual import clear_log_render_cache
from trainboard.tui.widgets.log_nav import MATCH, Found, LogNavigator
from trainboard.tui.widgets.log_search import ERROR_PATTERN

MAX_LINES = 5000  # what the pane keeps; the whole log stays on disk in the run's folder
# Under a flood (more lines a tick than a person can read), the pane writes only
# the newest FLOOD_LINES of a batch and redraws every FLOOD_EVERY-th tick: the
# rest is counted as skipped and stays in the full log. Key presses stay fast.
FLOOD_LINES = 1000
FLOOD_EVERY = 3
CUT = "…"  # ends a line cut at the pane's right edge


class _Marks(Highlighter):
    """Log's highlighter hook, pointed at the pane's ``mark_line`` for the row being rendered."""

    def __init__(self, pane: LogPane) -> None:
        self.pane = pane

    def highlight(self, text: Text) -> None:
        self.pane.mark_line(text, self.pane.rendering_row)


class LogPane(LogNavigator, Log):
    """A ``Log`` fed in batches: ``feed`` only buffers, ``flush`` writes.

    ``feed`` is called from the session's event callback and does no UI work;
    the app's timer calls ``flush``, so a burst of ten thousand lines costs one
    ``write_lines`` call. The buffers are bounded like the pane: lines that
    would scroll out of it before they were shown are dropped, and counted.

    Following (the default), the pane shows the newest lines. Paused (``f``,
    or scrolling up), what is in view stays put: new lines fill the pane's
    free room below, then wait in ``held`` (bounded too) until it follows again.
    """

    # No horizontal scrollbar: on a line wider than the pane its thumb is a few dim cells ending in
    # a partial block (▊) that reads as a stray glyph over the log. A cut line ends in "…" instead;
    # left/right still scroll, and the full log (l) has the bar.
    DEFAULT_CSS = """
    LogPane {
        scrollbar-size-horizontal: 0;
    }
    """

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=False, id="log")
        self.border_title = "Log"
        self.pending: deque[str] = deque(maxlen=max_lines)  # drained by every flush
        self.held: deque[str] = deque(maxlen=max_lines)  # kept back while paused
        self.received: dict[str, int] = {}  # lines seen per source ("setup", "job")
        self.dropped = 0  # lines never shown here: only in the full log
        self.source = ""
        self.rendering_row = 0
        self.highlight = True
        self.highlighter = _Marks(self)
        self._subtitle = ""
        self._version = 0  # bumped by every write: the rows found are then stale
        self._found: dict[str, tuple[int, str, Found]] = {}
        self._rest = 0  # ticks left to wait before the next write, while flooded

    @property
    def capacity(self) -> int:
        return self.max_lines or MAX_LINES

    # ------------------------------------------------------------------ in: no UI work

    def feed(self, source: str, lines: Sequence[str]) -> None:
        count = len(lines)
        overflow = len(self.pending) + count - self.capacity
        if overflow > 0:
            self.dropped += overflow
        self.pending.extend(lines[-self.capacity :])
        self.received[source] = self.received.get(source, 0) + count
        self.source = source
        if not self.following:
            self.unseen += count

    # ------------------------------------------------------------------ out: once per tick

    def flush(self) -> None:
        if self._rest > 0:
            self._rest -= 1
            return
        if self.pending or (self.following and self.held):
            batch = list(self.pending)
            self.pending.clear()
            if self.following:
                if self.held:
                    batch = [*self.held, *batch]
                    self.held.clear()
                if len(batch) > FLOOD_LINES:
                    self.dropped += len(batch) - FLOOD_LINES
                    batch = batch[-FLOOD_LINES:]
                    self._rest = FLOOD_EVERY - 1
                self._write(batch)
                self.scroll_to_end()
            else:
                self._hold(batch)
        elif self.following and self.scroll_y < self.max_scroll_y:
            self.scroll_to_end()  # the pane grew taller, or a scrollbar came
        self._show_subtitle()

    def _write(self, batch: list[str]) -> None:
        lines = self._split(batch)
        if len(lines) > self.capacity:
            self.dropped += len(lines) - self.capacity
            lines = lines[-self.capacity :]
        if not lines:
            return
        before = len(self.lines)
        self.write_lines(lines, scroll_end=False)
        self._version += 1
        removed = before + len(lines) - len(self.lines)
        if removed > 0:
            self.shift_rows(removed)

    def _hold(self, batch: list[str]) -> None:
        """Paused: fill the free room below what is in view, keep the rest back."""
        lines = self._split(batch)
        room = 0 if self.held else max(0, self.capacity - len(self.lines))
        if room:
            self._write(lines[:room])
        rest = lines[room:]
        if rest:
            overflow = len(self.held) + len(rest) - self.capacity
            if overflow > 0:
                self.dropped += overflow
            self.held.extend(rest[-self.capacity :])

    @staticmethod
    def _split(batch: list[str]) -> list[str]:
        """The lines as ``Log`` stores them (it splits on every line break and skips empty lines)."""
        return [line for line in "\n".join(batch).splitlines() if line]

    def _show_subtitle(self) -> None:
        parts = []
        if self.source:
            parts.append(f"{self.source}.log · {self.received.get(self.source, 0):,} lines")
        parts.extend(self.nav_status())
        if self.dropped:
            parts.append(f"{self.dropped:,} skipped")  # they are in the full log (l)
        subtitle = " · ".join(parts)
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            self.border_subtitle = subtitle

    # ------------------------------------------------------------------ LogNavigator

    def found(self, kind: str) -> Found:
        query = self.search_query if kind == MATCH else ""
        cached = self._found.get(kind)
        if cached is not None and cached[0] == self._version and cached[1] == query:
            return cached[2]
        pattern = self._pattern if kind == MATCH else ERROR_PATTERN
        rows = [] if pattern is None else [i for i, line in enumerate(self.lines) if pattern.search(line)]
        result = Found(rows, len(self.lines), True)
        self._found[kind] = (self._version, query, result)
        return result

    def nav_changed(self) -> None:
        self._show_subtitle()

    def restyle(self) -> None:
        clear_log_render_cache(self)  # Log's cache of rendered lines
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, top = self.scroll_offset
        self.rendering_row = row = top + y
        strip = super().render_line(y)
        width = self.size.width
        if width > 1 and row < len(self.lines) and cell_len(self.lines[row]) > scroll_x + width:
            # The line goes on past the right edge: say so in its last cell.
            tail = strip.crop(width - 1, width)
            style = next((segment.style for segment in tail if segment.style), None)
            strip = Strip.join([strip.crop(0, width - 1), Strip([Segment(CUT, style)], 1)])
        return strip

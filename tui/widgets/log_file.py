"""The whole of a log file, scrolled from disk: only the lines in view are read.

A thread worker indexes the file as it grows (:class:`LineIndex`) and scans
it for errors and for the search (:class:`LineScan`); a timer on the UI
thread picks up what they found a few times a second. Rendering reads the
lines in view by seeking to their offsets, masks secrets, and keeps the last
:data:`CACHE_LINES` of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.segment import Segment
from rich.text import Text
from textual import work
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.worker import get_current_worker

from trainboard.tui.widgets.log_index import LineIndex, LineScan, LogFiles
from trainboard.tui.widgets.log_nav import MATCH, Found, LogNavigator

CACHE_LINES = 1024  # lines kept as text: a few screens' worth, whatever the file's size
SYNC_SECONDS = 0.1  # how often the view picks up what the worker found
IDLE_SECONDS = 0.25  # how often the worker looks at a file that has stopped growing
_NOTHING = Found((), 0, False)


class LogFileView(LogNavigator):
    COMPONENT_CLASSES = LogNavigator.COMPONENT_CLASSES | {"log--gutter"}
    DEFAULT_CSS = """
    LogFileView {
        height: 1fr;
        background: $surface;
        border: round $accent;
        border-title-color: $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
    }
    LogFileView > .log--gutter {
        color: $text-muted;
    }
    """

    def __init__(self, files: LogFiles, source: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.files = files
        self.cache: LRUCache[int, str] = LRUCache(CACHE_LINES)
        self._wake = threading.Event()
        self._scan: LineScan | None = None  # the search's, for ``_scan_query``
        self._scan_query = ""
        self._known = 0  # line count the view has taken from the index
        self._seen = (-1, 0, 0, 0, 0)  # what _sync last saw: redraw only on change
        self._widest = 0  # widest line read so far: the horizontal scroll's extent
        self.source = ""
        self.index: LineIndex
        self.errors: LineScan
        self.show_source(source)

    def show_source(self, source: str) -> None:
        """Show ``setup`` or ``job``'s log, from its end."""
        self.source = source
        self.index = self.files.index(source)
        self.errors = self.files.errors(source)
        self.cache.clear()
        self._known = 0
        self._seen = (-1, 0, 0, 0, 0)
        self._widest = 0
        self._scan = None
        self.mark = None
        self.miss = ""
        self._pending = None
        self.border_title = f"Full log · {source}.log"
        self.search_changed(True)
        self.following = True
        self.unseen = 0
        if self.is_mounted:
            self._sync()
            self.scroll_to_end()
            self.refresh()
            self._keys_changed()

    def on_mount(self) -> None:
        self._sync()
        self.set_interval(SYNC_SECONDS, self._sync)
        self._index_files()

    # ------------------------------------------------------------------ the worker

    @work(thread=True, exclusive=True, group="log-index", exit_on_error=False)
    def _index_files(self) -> None:
        """Index the file as it grows, then scan it for errors and the search; repeat."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            busy, caught_up = self._index_round(lambda: worker.is_cancelled)
            if caught_up or not busy:
                self._wake.wait(IDLE_SECONDS if caught_up else 0.01)
                self._wake.clear()

    def _index_round(self, cancelled: Callable[[], bool]) -> tuple[bool, bool]:
        """One round of the worker (in its thread); whether it found anything, and
        whether everything is done. Each part stops early when the view moves on."""
        index, errors, scan = self.index, self.errors, self._scan
        busy = index.update(lambda: cancelled() or self.index is not index) > 0
        busy |= errors.advance(lambda: cancelled() or self.errors is not errors) > 0
        if scan is not None:
            busy |= scan.advance(lambda: cancelled() or self._scan is not scan) > 0
        caught_up = index.behind == 0 and errors.complete and (scan is None or scan.complete)
        return busy, caught_up

    # ------------------------------------------------------------------ the UI side

    def _sync(self) -> None:
        """Take what the worker found: new lines, matches, progress."""
        index = self.index
        count = index.line_count
        scan = self._scan
        seen = (
            count,
            index.scanned,
            len(self.errors.rows),
            len(scan.rows) if scan else 0,
            scan.scanned_to if scan else 0,
        )
        if seen == self._seen and not self._pending:
            if self.following and self.scroll_y < self.max_scroll_y:
                self.scroll_to_end()
            return
        self._seen = seen
        if count != self._known:
            if not self.following:
                self.unseen += max(0, count - self._known)
            if count < self._known:
                self.cache.clear()
            self._known = count
        self.virtual_size = Size(self.number_width + self._widest, self._known)
        if self.following:
            self.scroll_to_end()
        self.refresh()
        self.retry_jump()
        self.nav_changed()

    @property
    def number_width(self) -> int:
        """Columns of the line numbers, and a space."""
        return max(4, len(str(self._known))) + 1

    def line_text(self, row: int) -> str:
        text = self.cache.get(row)
        if text is None:
            lines = self.index.read(row, 1, self.files.redact)
            text = lines[0] if lines else ""
            if row < self.index.complete_lines:  # the last line may still be growing
                self.cache.set(row, text)
        return text

    def _fetch(self, first: int, count: int) -> None:
        """Read the lines in view that are not cached, with one read."""
        last = min(first + count, self.index.complete_lines)
        missing = [row for row in range(max(0, first), last) if row not in self.cache]
        if not missing:
            return
        lines = self.index.read(missing[0], missing[-1] - missing[0] + 1, self.files.redact)
        for offset, text in enumerate(lines):
            self.cache.set(missing[0] + offset, text)
        widest = max((len(text) for text in lines), default=0)
        if widest > self._widest:
            self._widest = widest
            self.call_after_refresh(self._grow_width)

    def _grow_width(self) -> None:
        self.virtual_size = Size(self.number_width + self._widest, self._known)

    def render_lines(self, crop: Region) -> list[Strip]:
        self._fetch(self.scroll_offset.y, self.scrollable_content_region.height + 1)
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        style = self.rich_style
        width = self.size.width
        if row >= self._known:
            return Strip.blank(width, style)
        gutter = self.number_width
        number = Strip([Segment(f"{row + 1:>{gutter - 1}} ", style + self._style("log--gutter"))], gutter)
        text = Text(self.line_text(row), no_wrap=True, end="")
        text.stylize(style)
        self.mark_line(text, row)
        content = Strip(text.render(self.app.console), text.cell_len)
        return Strip.join([number, content.crop_extend(scroll_x, scroll_x + max(0, width - gutter), style)])

    # ------------------------------------------------------------------ LogNavigator

    def found(self, kind: str) -> Found:
        if kind == MATCH:
            scan = self._scan
            if scan is None or self._scan_query != self.search_query:
                return _NOTHING
        else:
            scan = self.errors
        return Found(scan.rows, scan.scanned_to, scan.complete)

    def search_changed(self, submitted: bool) -> None:
        """A submitted search scans the whole file; as it is typed, only the view is highlighted."""
        query = self.search_query
        if not query or self._pattern is None:
            self._scan, self._scan_query = None, ""
        elif not submitted:
            return
        elif self._scan is None or self._scan_query != query or self._scan.index is not self.index:
            self._scan, self._scan_query = LineScan(self.index, self._pattern, self.files.redact), query
        self._wake.set()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.nav_changed()  # the subtitle says where the view is

    def nav_changed(self) -> None:
        top, bottom = self.visible_rows
        bottom = min(bottom, self._known - 1)
        parts = [f"{top + 1:,}–{bottom + 1:,} of {self._known:,}" if bottom > top else f"{self._known:,} lines"]
        if self.index.behind:
            parts.append(f"indexing {100 * self.index.scanned // max(1, self.index.file_size)}%")
        parts.extend(self.nav_status())
        self.border_subtitle = " · ".join(parts)

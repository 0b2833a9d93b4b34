"""The live log pane: lines are buffered as they arrive and written once per tick."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from textual.widgets import Log

MAX_LINES = 5000  # what the pane keeps; the whole log stays on disk in the run's folder


class LogPane(Log):
    """A ``Log`` fed in batches: ``feed`` only buffers, ``flush`` writes.

    ``feed`` is called from the session's event callback and does no UI work;
    the app's timer calls ``flush``, so a burst of ten thousand lines costs one
    ``write_lines`` call. The buffer is bounded like the pane: lines that would
    scroll out of it before they were shown are never rendered.
    """

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id="log")
        self.border_title = "Log"
        self.pending: deque[str] = deque(maxlen=max_lines)
        self.received: dict[str, int] = {}  # lines seen per source ("setup", "job")
        self.source = ""
        self._subtitle = ""

    def feed(self, source: str, lines: Sequence[str]) -> None:
        self.pending.extend(lines)
        self.received[source] = self.received.get(source, 0) + len(lines)
        self.source = source

    def flush(self) -> None:
        if not self.pending:
            return
        lines = list(self.pending)
        self.pending.clear()
        self.write_lines(lines)
        subtitle = f"{self.source}.log · {self.received.get(self.source, 0)} lines"
        if subtitle != self._subtitle:
            self._subtitle = subtitle
            self.border_subtitle = subtitle

"""A log file on disk, read by line number without holding its text.

Toolong's approach: a :class:`LineIndex` keeps one 8-byte offset per line (the
byte just after the line's newline) in an ``array('Q')``, built in chunks as
the file grows; a view reads only the lines it shows by seeking to them. A
:class:`LineScan` finds the lines that match a pattern the same way, chunk by
chunk, and keeps only their numbers. Nothing here imports Textual: the scans
run in thread workers, and the tests drive them directly.
"""

from __future__ import annotations

import os
import re
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path

CHUNK_BYTES = 1024 * 1024  # per read while indexing or scanning: a few ms of work each
MAX_LINE_BYTES = 8 * 1024  # what is read of one line to show it
MAX_LINE_CHARS = 2000  # what is shown of one line (redacted first, then cut)
CUT_MARK = " …"
_NEWLINE = re.compile(b"\n")
# A line worth jumping to: a traceback's first line, or an error's name.
ERROR_PATTERN = re.compile(r"Traceback \(most recent call last\)|Error|ERROR|Exception|FAILED")
_CONTROL = re.compile("[\u0000-\u0008\u000b-\u001f\u007f]")

Redact = Callable[[str], str]
Stop = Callable[[], bool]


def _never() -> bool:
    return False


def terminal_line(line: str) -> str:
    """What a terminal shows of a line that redraws itself with carriage returns."""
    if "\r" in line:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
    return line


def shown_line(line: str, redact: Redact) -> str:
    """A line as a view shows it: the terminal's last redraw, secrets masked,
    control characters replaced, cut at :data:`MAX_LINE_CHARS`."""
    text = redact(terminal_line(line))
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + CUT_MARK
    return _CONTROL.sub("\ufffd", text.expandtabs())


class LineIndex:
    """Where each line of a (growing) file ends, found in chunks of :data:`CHUNK_BYTES`.

    ``update`` is called from a worker thread; the UI thread reads ``line_count``
    and ``read`` at any time. Offsets are only ever appended, each chunk's in one
    ``array.extend``, so a reader sees a consistent prefix.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.ends = array("Q")  # byte offset just after each complete line's newline
        self.scanned = 0  # bytes indexed: every newline before this is in ``ends``
        self.file_size = 0  # the file's size when last looked at
        self._lock = threading.Lock()

    @property
    def complete_lines(self) -> int:
        return len(self.ends)

    @property
    def line_count(self) -> int:
        """Complete lines, plus the unterminated last one if there is one."""
        ends = self.ends
        count = len(ends)
        last = ends[count - 1] if count else 0
        return count + (1 if self.scanned > last else 0)

    @property
    def behind(self) -> int:
        """Bytes of the file not indexed yet."""
        return max(0, self.file_size - self.scanned)

    def span(self, line: int) -> tuple[int, int]:
        """Byte range of a line, its newline included."""
        ends = self.ends
        start = ends[line - 1] if line > 0 else 0
        end = ends[line] if line < len(ends) else self.scanned
        return start, end

    def update(self, stop: Stop = _never) -> int:
        """Index what the file gained since the last call; the number of new lines."""
        with self._lock:
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                size = 0
            if size < self.scanned:  # truncated or replaced: start again
                self.ends = array("Q")
                self.scanned = 0
            self.file_size = size
            if size == self.scanned:
                return 0
            before = len(self.ends)
            with open(self.path, "rb") as fh:
                fh.seek(self.scanned)
                while self.scanned < size and not stop():
                    chunk = fh.read(min(CHUNK_BYTES, size - self.scanned))
                    if not chunk:
                        break
                    base = self.scanned
                    self.ends.extend(array("Q", [m.end() + base for m in _NEWLINE.finditer(chunk)]))
                    self.scanned = base + len(chunk)
            return len(self.ends) - before

    def read(self, first: int, count: int, redact: Redact) -> list[str]:
        """Lines ``first`` .. ``first + count - 1`` as shown (see :func:`shown_line`)."""
        last = min(first + count, self.line_count)
        if first >= last:
            return []
        spans = [self.span(i) for i in range(first, last)]
        out: list[str] = []
        with open(self.path, "rb") as fh:
            start, end = spans[0][0], spans[-1][1]
            if all(e - s <= MAX_LINE_BYTES for s, e in spans):
                fh.seek(start)
                blob = fh.read(end - start)
                raws = [blob[s - start : e - start] for s, e in spans]
            else:  # some line is huge: read the head of each
                raws = []
                for s, e in spans:
                    fh.seek(s)
                    raws.append(fh.read(min(e - s, MAX_LINE_BYTES)))
        for raw in raws:
            text = raw.decode("utf-8", "replace")
            out.append(shown_line(text[:-1] if text.endswith("\n") else text, redact))
        return out


class LineScan:
    """The numbers of the lines of a :class:`LineIndex` that match ``pattern``.

    ``advance`` reads the complete lines not scanned yet, a chunk at a time,
    masks secrets exactly as a view shows the lines (a search must not find
    what it cannot show), and appends the matching line numbers to ``rows``.
    """

    def __init__(self, index: LineIndex, pattern: re.Pattern[str], redact: Redact) -> None:
        self.index = index
        self.pattern = pattern
        self.redact = redact
        self.rows = array("Q")
        self.scanned_to = 0  # lines below this are scanned
        self._lock = threading.Lock()

    @property
    def complete(self) -> bool:
        return self.scanned_to >= self.index.complete_lines

    def advance(self, stop: Stop = _never) -> int:
        """Scan the lines indexed since the last call; the number of new matches."""
        with self._lock:
            index = self.index
            total = index.complete_lines
            found = 0
            if self.scanned_to > total:  # the file was replaced: start again
                self.rows = array("Q")
                self.scanned_to = 0
            if self.scanned_to >= total:
                return 0
            with open(index.path, "rb") as fh:
                while self.scanned_to < total and not stop():
                    first = self.scanned_to
                    start = index.span(first)[0]
                    last = min(total, max(first + 1, bisect_right(index.ends, start + CHUNK_BYTES)))
                    end = index.span(last - 1)[1]
                    fh.seek(start)
                    text = fh.read(min(end - start, 4 * CHUNK_BYTES)).decode("utf-8", "replace")
                    rows = array("Q", (first + row for row in self._matching(text)))
                    self.rows.extend(rows)
                    found += len(rows)
                    self.scanned_to = last
            return found

    def _matching(self, text: str) -> list[int]:
        """Numbers (from 0) of the lines of ``text`` that match, as they are shown."""
        if "\r" in text:
            text = "\n".join(terminal_line(line) for line in text.split("\n"))
        masked = self.redact(text)
        if masked.count("\n") != text.count("\n"):  # a secret spanned lines: mask line by line
            masked = "\n".join(self.redact(line) for line in text.split("\n"))
        text = masked
        rows: list[int] = []
        search = self.pattern.search
        row = pos = 0
        match = search(text)
        while match is not None:
            row += text.count("\n", pos, match.start())
            rows.append(row)
            pos = text.find("\n", match.end())
            if pos < 0:
                break
            row += 1
            pos += 1
            match = search(text, pos)
        return rows


NOT_YET = -1  # find_row: the scan has not got far enough to say


def find_row(rows: Sequence[int], scanned_to: int, complete: bool, direction: int, start: int) -> int | None:
    """The next (``direction`` 1) or previous (-1) row of ``rows`` after ``start``, wrapping.

    Returns the row, None when there is none, or :data:`NOT_YET` when the scan
    has not got far enough to say.
    """
    if direction > 0:
        i = bisect_right(rows, start)
        if i < len(rows):
            return int(rows[i])
        if not complete:
            return NOT_YET
        return int(rows[0]) if len(rows) else None
    if not complete and scanned_to < start:
        return NOT_YET
    i = bisect_left(rows, start) - 1
    if i >= 0:
        return int(rows[i])
    if not complete:
        return NOT_YET
    return int(rows[-1]) if len(rows) else None


class LogFiles:
    """The run's log files (``setup.log``, ``job.log``), indexed while the app runs.

    An index survives closing the full-log screen: opening it again carries on
    where indexing stopped. The error scan of each file is kept the same way.
    """

    SOURCES = ("setup", "job")

    def __init__(self, run_dir: Path, redact: Redact, error_pattern: re.Pattern[str] = ERROR_PATTERN) -> None:
        self.run_dir = run_dir
        self.redact = redact
        self.error_pattern = error_pattern
        self._indexes: dict[str, LineIndex] = {}
        self._errors: dict[str, LineScan] = {}

    def path(self, source: str) -> Path:
        return self.run_dir / f"{source}.log"

    def index(self, source: str) -> LineIndex:
        if source not in self._indexes:
            self._indexes[source] = LineIndex(self.path(source))
        return self._indexes[source]

    def errors(self, source: str) -> LineScan:
        if source not in self._errors:
            self._errors[source] = LineScan(self.index(source), self.error_pattern, self.redact)
        return self._errors[source]

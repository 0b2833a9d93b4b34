"""Turn byte chunks of a growing log into complete lines, remembering the offset.

The offset is the number of bytes consumed up to the end of the last complete
line, so a reader that resumes there (after a reconnect, or on attach) sees no
line twice and loses none.
"""

from __future__ import annotations

CHUNK_SIZE = 1024 * 1024  # bytes per read: chunked reads, never line by line; small enough
# that one chunk (~17k lines) keeps the event loop busy for milliseconds, not tens
MAX_PARTIAL = 1024 * 1024  # a "line" longer than this is cut and emitted as is


class LineSplitter:
    __slots__ = ("offset", "_partial")

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset
        self._partial = b""

    @property
    def read_pos(self) -> int:
        """Where the next read starts: consumed bytes plus the held partial line."""
        return self.offset + len(self._partial)

    def feed(self, chunk: bytes) -> list[str]:
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) <= MAX_PARTIAL:
                self._partial = data
                return []
            # A runaway line: emit it rather than grow without bound.
            self._partial = b""
            self.offset += len(data)
            return _decode(data)
        self._partial = data[cut + 1 :]
        self.offset += cut + 1
        return _decode(data[:cut])

    def flush(self) -> list[str]:
        """The unterminated last line, once the writer has finished."""
        if not self._partial:
            return []
        data, self._partial = self._partial, b""
        self.offset += len(data)
        return _decode(data)


def _decode(body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    lines = text.split("\n")
    if "\r" in text:  # progress bars redraw with \r: keep what the terminal would show
        lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines]
    return lines

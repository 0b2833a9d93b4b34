"""The failure panel: after a failed run, the last lines of its log, read from
disk (the job's, or the setup's when the job never started) and redacted.
Hidden until then."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.tui.widgets.marks import FAILED_STATUSES

TAIL_LINES = 10


def failure_log(run_dir: Path) -> Path | None:
    """The log that tells why a run failed: the job's, else the setup's."""
    for name in ("job.log", "setup.log"):
        path = run_dir / name
        if path.exists() and path.stat().st_size:
            return path
    return None


class FailurePanel(Static):
    DEFAULT_CSS = """
    FailurePanel {
        display: none;
        height: auto;
        max-height: 14;
        padding: 0 1;
        border: round $error;
        border-title-color: $error;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        &.-shown { display: block; }
    }
    """

    def __init__(self, run_dir: Path, redact: Callable[[list[str]], list[str]]) -> None:
        super().__init__(id="failure")
        self.run_dir = run_dir
        self.redact = redact
        self.status = ""  # the run's status, once it has failed
        self.lines: list[str] = []
        self._shown = ""

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.RunFinished(status=status) if status in FAILED_STATUSES:
                self.status = status

    def refresh_view(self, now: float) -> None:
        if self.status == self._shown:
            return
        self._shown = self.status
        from trainboard.backend.report import tail_lines

        path = failure_log(self.run_dir)
        self.lines = self.redact(tail_lines(path, TAIL_LINES)) if path else []
        source = f"the last {len(self.lines)} lines of {path.name}" if self.lines and path else "its log"
        self.border_title = escape(f"✗ run {self.status} · {source}")
        self.border_subtitle = escape(str(path)) if path else ""
        body = Content("\n").join(Content(line) for line in self.lines) if self.lines else Content.styled(
            "the log is empty: the job printed nothing", "$text-muted"
        )
        self.update(body)
        self.add_class("-shown")

    def invalidate(self) -> None:
        self._shown = ""

"""The full log (``l``): the whole of ``job.log`` or ``setup.log``, read from disk.

The live pane keeps the last few thousand lines; this screen scrolls the
whole file, however long, holding only its line offsets and the lines in view
(see :mod:`trainboard.tui.widgets.log_file`). Search, error jumps and follow/pause work
as in the pane.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from trainboard.tui.widgets.log_file import LogFileView
from trainboard.tui.widgets.log_index import LogFiles


class FullLogScreen(Screen[None]):
    HELP_TITLE = "Full log"
    HELP_ORDER = 40
    BINDINGS = [
        Binding("l", "close", "Dashboard"),
        Binding("escape", "close", "Dashboard", show=False),
        Binding("s", "switch_source", "setup/job log"),
    ]

    def __init__(self, files: LogFiles, source: str = "job") -> None:
        super().__init__()
        self.files = files
        self.source = source if source in LogFiles.SOURCES else "job"

    @property
    def view(self) -> LogFileView:
        return self.query_one(LogFileView)

    def compose(self) -> ComposeResult:
        yield LogFileView(self.files, self.source, id="full-log")
        yield Footer()

    def on_mount(self) -> None:
        self.view.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_switch_source(self) -> None:
        """s: the other of setup.log and job.log."""
        view = self.view
        view.show_source("setup" if view.source == "job" else "job")

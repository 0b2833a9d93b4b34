"""What the log views look for (a search, errors) and the ``/`` prompt that asks for a search."""

from __future__ import annotations

import re
from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from trainboard.tui.widgets.log_index import ERROR_PATTERN

__all__ = ["ERROR_PATTERN", "SearchPrompt", "search_pattern"]


def search_pattern(query: str) -> re.Pattern[str] | None:
    """A case-insensitive substring search; None for an empty query."""
    return re.compile(re.escape(query), re.IGNORECASE) if query else None


class SearchPrompt(ModalScreen[str | None]):
    """A one-line search box at the bottom of the screen.

    Every change is passed to ``on_change`` (the view highlights as you type);
    Enter dismisses with the query, Escape with None (the view restores the
    search it had).
    """

    DEFAULT_CSS = """
    SearchPrompt {
        align: left bottom;
        background: $background 0%;
    }
    SearchPrompt > Horizontal {
        height: 1;
        width: 100%;
        margin-bottom: 1;
        background: $panel;
    }
    SearchPrompt Label {
        width: auto;
        padding: 0 1;
        color: $accent;
        text-style: bold;
    }
    SearchPrompt Input {
        border: none;
        height: 1;
        width: 1fr;
        padding: 0;
        background: $panel;
    }
    SearchPrompt Input:focus {
        border: none;
    }
    """

    BINDINGS = [Binding("escape", "close", "Close search")]

    def __init__(self, query: str = "", on_change: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.initial = query
        self.on_change = on_change

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label("Search /")
            yield Input(self.initial, placeholder="text to find (any case); Enter: go, Esc: close", id="search")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.on_change is not None:
            self.on_change(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_close(self) -> None:
        self.dismiss(None)

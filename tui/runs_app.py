"""`trainboard runs` on a terminal: the runs screen as an app of its own."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from trainboard.backend.store import RunStore


class RunsApp(App[int]):
    TITLE = "trainboard runs"
    HELP_TITLE = "Runs browser (trainboard runs)"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help"),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store

    def get_default_screen(self) -> Screen[Any]:
        from trainboard.tui.screens.runs import RunsScreen

        return RunsScreen(self.store)

    def action_help(self) -> None:
        from trainboard.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.exit(0)


def make_runs_app(store: RunStore) -> RunsApp:
    """The factory the CLI and the tests share."""
    return RunsApp(store)

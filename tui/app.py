"""`trainboard run`: the Textual dashboard.

The app is a view of one :class:`~trainboard.backend.session.Session`. It runs
``session.run()`` in a worker on its own event loop and sends back two
commands, cancel and detach. It holds no run logic. Its main screen, a
:class:`~trainboard.tui.run_screen.RunScreen`, holds the panels and follows the
session's events (the sweep dashboard shows a member's run with the same screen).

Every action has a key, an entry in the command palette (``palette_commands``,
listed by :class:`trainboard.tui.commands.TrainboardCommands`) and, for the pull request,
a button; all three run the same ``action_*`` method.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from trainboard.backend import events as ev
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.tui.commands import PaletteCommand, TrainboardCommands
from trainboard.tui.firstframe import record_first_frame
from trainboard.tui.interruptions import Interruptions
from trainboard.tui.log_keys import LogKeys
from trainboard.tui.pull_request_keys import PullRequestKeys
from trainboard.tui.quit_keys import QuitKeys
from trainboard.tui.run_screen import TICK_SECONDS

__all__ = ["TICK_SECONDS", "TrainboardApp", "make_app"]


class TrainboardApp(LogKeys, PullRequestKeys, QuitKeys, Interruptions):
    """The dashboard: its layout and the events it shows; the keys that act on the run
    live in its bases (pull_request_keys, quit_keys, interruptions, dashboard_base), and
    the log pane's keys, which work wherever the focus is, in log_keys (first in the footer)."""

    CSS_PATH = "app.tcss"
    TITLE = "trainboard"
    HELP_TITLE = "Run dashboard"
    COMMANDS = App.COMMANDS | {TrainboardCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help"),  # early: the footer is cut on narrow terminals
        Binding("c", "cancel_run", "Cancel run"),
        Binding("p", "open_pr", "Open PR", show=False),  # the button beside the status line shows it
        Binding("r", "show_runs", "Runs"),
        Binding("m", "toggle_plot", "Plot"),
        Binding("l", "toggle_log", "Full log"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall"), (44, "-roomy")]
    # The app's keys that act on the dashboard itself: all but quit and help.
    _dashboard_actions = frozenset(b.action for b in Binding.make_bindings(BINDINGS)) - {"quit", "help"}

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._run: Worker[ExitCode] | None = None  # the worker that runs session.run()
        self.main.on_pull_request = self._show_pr_state

    def get_default_screen(self) -> Screen[None]:
        return self.main

    def on_mount(self) -> None:
        self._install_signal_handlers()
        self._show_pr_state()
        # The session starts once the first frame is on screen: its first step
        # imports mlflow in a thread, which would compete with that frame.
        self.call_after_refresh(self._start_session)

    def _start_session(self) -> None:
        record_first_frame()
        self._run = self.run_worker(self.session.run(), name="session", group="session", exit_on_error=False)

    async def on_unmount(self) -> None:
        self._remove_signal_handlers()
        if self.outcome is None:
            # The app is going away mid-run (it crashed, or was told to exit): cancel, and
            # wait here for the session's teardown, which the closing event loop would cut short.
            self.session.cancel("the dashboard closed")
        await self.session.wait_finished()

    def _on_event(self, event: ev.Event) -> None:
        """What the main screen does with one of the session's events (tests feed it)."""
        self.main._on_event(event)

    # ------------------------------------------------------------------ the run's end

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = self._run
        if event.worker is not worker or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            return
        if event.state is WorkerState.SUCCESS and worker.result is not None:
            self.outcome = ExitCode(worker.result)
        elif event.state is WorkerState.ERROR:
            self.outcome = ExitCode.INFRA_ERROR
            self.notify(
                f"{type(worker.error).__name__}: {worker.error}",
                title="trainboard failed",
                severity="error",
                timeout=30,
                markup=False,
            )
        else:
            self.outcome = ExitCode.INTERRUPTED
        self.main.outcome = self.outcome
        self._status.show_stopping("")
        self.refresh_bindings()
        self._show_pr_state()
        if self._exit_when_done:
            self._exit_with_outcome()

    @property
    def caught_up(self) -> bool:
        """Whether every event received so far has been shown."""
        return self.main.caught_up

    # ------------------------------------------------------------------ commands out

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "log":
            return self.log_key_state(str(parameters[0]) if parameters else "")
        if action in self._dashboard_actions and self.screen is not self.screen_stack[0]:
            return False  # the dashboard's own keys do nothing over the runs or help screens
        if action == "cancel_run":
            if not self.running:
                return False  # hidden once the run has ended
            return None if self._stop_requested else True  # greyed while stopping
        if action == "open_pr":
            return None if self.pull_request_blocker() else True  # greyed, with its reason on p (key_p)
        return True

    # Screens and views ---------------------------------------------------------

    def action_toggle_log(self) -> None:
        """l: the whole log, scrolled from disk (l again comes back)."""
        self.main.show_full_log()

    def action_show_runs(self) -> None:
        """r: every recorded run, this one included."""
        self.main.show_runs()

    def action_help(self) -> None:
        from trainboard.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_plot(self) -> None:
        """m: the metrics plot, in the side column or maximised (see RunScreen.toggle_plot)."""
        self.main.toggle_plot()

    def palette_commands(self) -> list[PaletteCommand]:
        """The command palette's entries (see trainboard.tui.commands)."""
        pr = self.pull_request_blocker()
        detach = self.detach_blocker()
        return [
            PaletteCommand(
                "Cancel run",
                "stop the job and tear down; the dashboard stays open"
                if self.running
                else "the run has finished: nothing to cancel",
                self.action_cancel_run,
            ),
            PaletteCommand(
                "Open pull request", f"unavailable: {pr}" if pr else "open or update it", self.action_open_pr
            ),
            PaletteCommand(
                "Detach",
                f"unavailable: {detach}" if detach else "quit and leave the job running; trainboard attach returns",
                self.action_detach,
            ),
            PaletteCommand("Stop and quit", "stop the job, tear down, then exit", self.action_stop_and_quit),
            PaletteCommand("Show runs", "every recorded run: log, metrics, comparison", self.action_show_runs),
            PaletteCommand(
                "Toggle metrics plot", "each metric to maximise per step, with the baseline", self.action_toggle_plot
            ),
            PaletteCommand("Help", "every key, grouped", self.action_help),
        ]


def make_app(session: Session) -> TrainboardApp:
    """The one factory: the CLI and the tests build the dashboard here."""
    return TrainboardApp(session)

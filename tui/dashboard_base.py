"""What the dashboard's parts share: the session, its screen, the run's outcome, and how the app stops and exits.

:class:`DashboardBase` is the base of :class:`trainboard.tui.app.TrainboardApp`
and of its key handlers (``pull_request_keys``, ``quit_keys``,
``interruptions``, ``log_keys``): it holds the state they all read (the
session, and ``main``, the :class:`~trainboard.tui.run_screen.RunScreen` that
shows it) and the two moves they all make, asking the session to stop and
exiting with the run's ExitCode.
"""

from __future__ import annotations

import signal

from textual.app import App
from textual.widgets import Button

from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.tui.compat_textual import UnhandledErrorHook
from trainboard.tui.run_screen import RunScreen
from trainboard.tui.widgets import LogPane, StatusLine


class DashboardBase(UnhandledErrorHook, App[int]):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.main = RunScreen(session, owned=True)  # the app's first screen (see get_default_screen)
        self.outcome: ExitCode | None = None  # set when session.run() has returned
        self.exited_with: int | None = None  # the return code this app asked for; another one is a crash
        self._exit_when_done = False
        self._stop_requested = ""
        self._signals: list[signal.Signals] = []
        self._quiet_input: int | None = None  # see Interruptions._leave_terminal

    @property
    def _status(self) -> StatusLine:
        return self.main.status

    @property
    def _pr_button(self) -> Button:
        return self.main.pr_button

    @property
    def _log_pane(self) -> LogPane:
        return self.main.log_pane

    @property
    def running(self) -> bool:
        return self.outcome is None

    def _exit_with_outcome(self) -> None:
        """Exit with the session's ExitCode as the app's return code."""
        if self._quiet_input is not None:
            from trainboard.tui.interruptions import release_terminal

            release_terminal(self, self._quiet_input)
            self._quiet_input = None
        self.exited_with = int(self.outcome if self.outcome is not None else ExitCode.INTERRUPTED)
        self.exit(return_code=self.exited_with)

    def _stop(self, reason: str) -> None:
        """Ask the session to stop; the worker's end decides when (and whether) to exit."""
        if not self.running:
            if self._exit_when_done:
                self._exit_with_outcome()
            return
        if not self._stop_requested:
            self._stop_requested = reason
            self.session.cancel(reason)
            self._status.show_stopping(f"{reason}: stopping the job and tearing down …")
            self.refresh_bindings()

"""Leaving the dashboard: quit (q, Ctrl+C), detach, stop and quit, and cancel the run (c)."""

from __future__ import annotations

from trainboard.tui.dashboard_base import DashboardBase
from trainboard.tui.screens.quit import DETACH, STOP, QuitScreen
from trainboard.tui.widgets import ConfirmScreen


class QuitKeys(DashboardBase):
    def action_quit(self) -> None:  # type: ignore[override]
        """q, Ctrl+C, Ctrl+Q: exit; while the run goes on, ask: detach, stop, or back."""
        if not self.running:
            self._exit_with_outcome()
            return
        top = self.screen
        if isinstance(top, ConfirmScreen):
            if top.purpose == "quit":
                top.action_answer(STOP)  # Ctrl+C twice: stop and quit
                return
            top.action_answer_safe()
        if self._stop_requested:
            self._exit_when_done = True
            self.notify("Teardown in progress: trainboard exits when it has finished.", title="Quitting")
            return
        self.push_screen(QuitScreen(self.session.run_id, self.detach_blocker()), self._quit_answered)

    def _quit_answered(self, answer: str | None) -> None:
        if answer == DETACH:
            self.action_detach()
        elif answer == STOP:
            self.action_stop_and_quit()

    def detach_blocker(self) -> str:
        """Why the dashboard cannot detach now; "" when it can."""
        if not self.running:
            return "the run has finished"
        return str(getattr(self.session, "detach_blocker", ""))

    def action_detach(self) -> None:
        """Leave: the job keeps running and `trainboard attach RUN` comes back to it."""
        if not self.running:
            self._exit_with_outcome()
            return
        blocker = self.detach_blocker()
        if blocker or self._stop_requested or not self.session.detach():
            self.notify(blocker or "the run is already stopping", title="Cannot detach", severity="warning")
            return
        self._exit_when_done = True
        self._stop_requested = "detach"
        self._status.show_stopping(f"detaching: the job runs on; trainboard attach {self.session.run_id}")
        self.refresh_bindings()

    def action_stop_and_quit(self) -> None:
        """Stop the job, tear down, then exit (at once when the run is over)."""
        self._exit_when_done = True
        self._stop("quit from the dashboard")

    def action_cancel_run(self) -> None:
        if not self.running:
            self.notify("The run has finished: nothing to cancel.")
            return
        if self._stop_requested or isinstance(self.screen, ConfirmScreen):
            return
        self.push_screen(
            ConfirmScreen[bool](
                "cancel",
                "Cancel the run?",
                "The job is stopped and the runner torn down; the dashboard stays open.",
                yes="Cancel run",
            ),
            self._cancel_answered,
        )

    def _cancel_answered(self, yes: bool | None) -> None:
        if yes:
            self._stop("cancelled from the dashboard")

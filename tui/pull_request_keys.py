"""The dashboard's pull request: p, the button beside the status line and the palette's entry."""

from __future__ import annotations

from textual.widgets import Button

from trainboard.backend.exitcodes import ExitCode
from trainboard.tui.dashboard_base import DashboardBase


class PullRequestKeys(DashboardBase):
    def pull_request_blocker(self) -> str:
        """Why the pull request cannot be opened now; "" when it can."""
        if self.running:
            return "the pull request opens once the run has finished"
        if self.outcome not in (ExitCode.OK, ExitCode.GATE_FAILED):
            return f"the run {self._status.finished.status if self._status.finished else 'ended'}: no result to propose"
        return self.session.pull_request_blocker

    def _show_pr_state(self) -> None:
        blocker = self.pull_request_blocker()
        self._pr_button.set_class(bool(blocker), "-blocked")
        self._pr_button.tooltip = blocker or "open the pull request, or update the one already open"

    def action_open_pr(self) -> None:
        """p, the button and the palette: open or update the pull request, or say why not."""
        blocker = self.pull_request_blocker()
        if blocker:
            self.notify(blocker, title="Pull request", severity="warning", markup=False)
            return
        self.run_worker(self._open_pull_request(), name="pull-request", exit_on_error=False)

    async def _open_pull_request(self) -> None:
        self._pr_button.set_class(True, "-blocked")  # while it publishes
        try:
            await self.session.open_pull_request()  # its outcome arrives as events
        finally:
            self._show_pr_state()

    def key_p(self) -> None:
        """p while the action is disabled: its binding is greyed out, so say why here."""
        if self.screen is self.screen_stack[0]:
            self.action_open_pr()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button is self._pr_button:
            event.stop()
            self.action_open_pr()

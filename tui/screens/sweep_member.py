"""One member of a sweep, in the run dashboard: enter on the sweep screen opens it, escape comes back.

:class:`MemberScreen` is the :class:`~trainboard.tui.run_screen.RunScreen` of a
session the sweep runs: it replays the member's events kept so far, follows the
rest, and starts its log pane with the end of the member's log files. Leaving
it leaves the member running; ``s`` stops this member (after a question), never
the sweep.
"""

from __future__ import annotations

from textual.binding import Binding

from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_events import MemberState
from trainboard.backend.sweep_record import QUEUED, RUNNING
from trainboard.tui.log_keys import delegated_bindings
from trainboard.tui.run_screen import RunScreen
from trainboard.tui.widgets import ConfirmScreen


class MemberScreen(RunScreen):
    HELP_APPS = ("SweepApp",)  # the run dashboard's help does not list it
    HELP_ORDER = 41
    HELP_TITLE = "Sweep member (enter on the sweep)"
    BINDINGS = [
        *delegated_bindings(),
        Binding("escape", "back", "Back to sweep"),
        Binding("s", "stop_member", "Stop member"),
        Binding("r", "show_runs", "Runs"),
        Binding("m", "toggle_plot", "Plot"),
        Binding("l", "toggle_log", "Full log"),
    ]

    def __init__(self, sweep: Sweep, state: MemberState) -> None:
        assert state.session is not None, "a member opens once it has started"
        super().__init__(state.session, owned=False, replay=list(state.events))
        self.sweep = sweep
        self.member = state

    def on_mount(self) -> None:  # after RunScreen.on_mount (Textual calls each class's handler)
        self.sub_title = f"member {self.member.info.index}: {self.member.label}"
        self.header.config_name = f"{self.session.config.name} [{self.member.info.index}: {self.member.label}]"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "log":
            return self.log_pane.check_action(str(parameters[0]) if parameters else "", ())
        if action == "stop_member":
            return True if self.member.info.status in (QUEUED, RUNNING) else False
        return True

    def action_log(self, action: str) -> None:
        getattr(self.log_pane, f"action_{action}")()

    def action_back(self) -> None:
        """escape: back to the sweep; the member runs on."""
        self.dismiss(None)

    def action_show_runs(self) -> None:
        self.show_runs()

    def action_toggle_plot(self) -> None:
        self.toggle_plot()

    def action_toggle_log(self) -> None:
        self.show_full_log()

    def action_stop_member(self) -> None:
        """s: stop this member (its job stops, its runner is torn down), after a question."""
        index = self.member.info.index
        if isinstance(self.app.screen, ConfirmScreen):
            return
        self.app.push_screen(
            ConfirmScreen[bool]("stop", f"Stop member {index}?",
                                f"{self.member.label}: its job is stopped and its runner torn down; "
                                "the other members go on.", yes="Stop member"),
            self._stop_answered,
        )

    def _stop_answered(self, yes: bool | None) -> None:
        if yes and self.sweep.stop_member(self.member.info.index, "stopped from the dashboard"):
            self.status.show_stopping("stopped from the dashboard: stopping the job and tearing down …")
            self.refresh_bindings()

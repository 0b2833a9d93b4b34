"""The log pane's keys on the whole dashboard: ``f``, ``/``, ``n``, ``N``, ``e``, ``E`` and escape.

The pane has these keys itself, but a widget's keys only work while it has the
focus, and the focus moves: the maximised plot (``m``) hides the pane and hands
it to another panel, Tab moves it, and a screen that closes gives it back to
whatever had it. :class:`LogKeys` binds the same keys at the app's level, each
to ``log('<the pane's action>')``, so they reach the pane from any state of the
main screen, and show in its footer; the bindings are made from the pane's own,
so a key added there is added here. Over another screen (runs, full log, help)
they are off: that screen's keys are its own.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from trainboard.tui.dashboard_base import DashboardBase
from trainboard.tui.widgets.log_nav import LogNavigator


def delegated_bindings() -> list[Binding]:
    """The log navigator's bindings, each running its action on the live pane."""
    return [
        Binding(b.key, f"log({b.action!r})", b.description, show=b.show, key_display=b.key_display)
        for b in Binding.make_bindings(LogNavigator.BINDINGS)
    ]


class LogKeys(DashboardBase):
    BINDINGS: ClassVar[list[BindingType]] = [*delegated_bindings()]

    def action_log(self, action: str) -> None:
        """Run the pane's ``action_<action>`` (only on the main screen: see ``log_key_state``)."""
        getattr(self._log_pane, f"action_{action}")()

    def log_key_state(self, action: str) -> bool | None:
        """check_action's answer for ``log(action)``: off over another screen, else the pane's answer."""
        if self.screen is not self.screen_stack[0]:
            return False
        return self._log_pane.check_action(action, ())

"""The contract between the app's event pump and each panel."""

from __future__ import annotations

from typing import Protocol

from trainboard.backend import events as ev


class EventPanel(Protocol):
    def apply(self, event: ev.Event) -> None:
        """Fold one session event into the panel's state. No UI work here."""

    def refresh_view(self, now: float) -> None:
        """Render the state if what is shown changed since the last call."""

    def invalidate(self) -> None:
        """Forget what was rendered (the theme changed): the next refresh renders."""

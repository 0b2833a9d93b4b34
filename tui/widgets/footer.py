"""The key bar at the bottom of the sweep and run dashboards: Textual's ``Footer``, rebuilt only when
what it shows changed.

Textual's footer rebuilds its keys (removes and mounts a widget per key) each time
its screen's bindings may have changed: a question opening over the screen, the
screen coming back, the focus moving. Each rebuild also leaves the removed keys
alive: every key registers with the footer's ``compact`` reactive (``data_bind``),
and Textual drops a removed key from that list only when ``compact`` changes,
which it never does here. A dashboard that opened a question 60 times held some
900 dead keys and their rendered lines, and each of the garbage collector's full
passes went through them all. :class:`SteadyFooter` rebuilds only when the keys it
would show differ from those it shows, and before a rebuild lets go of the keys
that have left.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from textual.widgets import Footer

from trainboard.tui.compat_textual import forget_detached_watchers


class SteadyFooter(Footer):
    """A ``Footer`` (same look, same CSS) that skips rebuilds showing the same keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: Hashable | None = None  # what the last rebuild showed
        self.rebuilds = 0  # how many times it rebuilt its keys (the tests read it)

    def _showing(self) -> Hashable:
        """What a rebuild would show: each binding, whether it is enabled, its tooltip and key."""
        app = self.app
        return (self.show_command_palette, app.ENABLE_COMMAND_PALETTE, tuple(
            (binding, enabled, tooltip, app.get_key_display(binding))
            for _node, binding, enabled, tooltip in self.screen.active_bindings.values()))

    async def recompose(self) -> None:
        if not self.is_attached:
            return
        showing = self._showing()
        if showing == self._shown and self.children:
            return
        self._forget_removed_keys()
        self._shown = showing
        self.rebuilds += 1
        await super().recompose()

    def _forget_removed_keys(self) -> None:
        """Drop the keys no longer in the DOM from the footer's watchers (see compat_textual)."""
        forget_detached_watchers(self)

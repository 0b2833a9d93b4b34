"""The command palette's trainboard entries (ctrl+p).

The provider holds no actions of its own: it lists what the app's
``palette_commands()`` returns (name, help, callback), so the palette, the keys
and the buttons all run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteCommand(NamedTuple):
    name: str
    help: str
    callback: Callable[[], object]


class HasPaletteCommands(Protocol):
    def palette_commands(self) -> Iterable[PaletteCommand]: ...


class TrainboardCommands(Provider):
    """The app's actions: cancel, open PR, detach, stop and quit, runs, plot, help."""

    def _commands(self) -> list[PaletteCommand]:
        source = getattr(self.app, "palette_commands", None)
        return list(source()) if callable(source) else []

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.name, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                highlighted = matcher.highlight(command.name)
                yield Hit(score, highlighted, command.callback, text=command.name, help=command.help)

"""The help screen (``?`` / F1): every key binding, grouped by where it works.

Generated from the ``BINDINGS`` of the running app, of the trainboard widgets on
its main screen and of every screen in ``trainboard.tui.screens``, so it cannot go stale:
a binding added anywhere shows up here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

import trainboard.tui.screens

Group = tuple[str, list[tuple[str, str]]]  # title, (keys, description)


def own_bindings(cls: type[DOMNode]) -> list[Binding]:
    """The bindings a trainboard class adds itself and inherits from trainboard classes."""
    found: list[Binding] = []
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("trainboard.tui.") and "BINDINGS" in vars(klass):
            found += Binding.make_bindings(vars(klass)["BINDINGS"])
    return found


def rows(app: App[object], bindings: Iterable[Binding]) -> list[tuple[str, str]]:
    """(keys, description) per action, keys that do the same thing joined: "q / ^c"."""
    merged: dict[tuple[str, str], list[str]] = {}
    for binding in bindings:
        description = binding.description or binding.tooltip
        if not description:
            continue
        keys = merged.setdefault((binding.action, description), [])
        shown = app.get_key_display(binding)
        if shown not in keys:
            keys.append(shown)
    return [(" / ".join(keys), description) for (_, description), keys in merged.items()]


def title_of(cls: type[DOMNode]) -> str:
    """``HELP_TITLE`` when the class has one; else its name in words ("LogViewScreen": "Log view")."""
    title = getattr(cls, "HELP_TITLE", "")
    if title:
        return str(title)
    name = cls.__name__.removesuffix("Screen")
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return words[:1].upper() + words[1:]


def screen_classes() -> list[type[Screen[Any]]]:
    """Every screen defined in the trainboard.tui.screens package (importing its modules), in
    ``HELP_ORDER``; the help screen itself is left out (its subtitle says escape)."""
    found: dict[type[Screen[Any]], None] = {}
    for info in pkgutil.iter_modules(trainboard.tui.screens.__path__, "trainboard.tui.screens."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Screen) and value.__module__ == module.__name__:
                found[value] = None
    found.pop(HelpScreen, None)
    return sorted(found, key=lambda cls: getattr(cls, "HELP_ORDER", 100))


def binding_groups(app: App[object]) -> list[Group]:
    groups: list[Group] = []
    everywhere = [*Binding.make_bindings(App.BINDINGS)]
    if app.ENABLE_COMMAND_PALETTE:
        everywhere.append(Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Command palette"))
    main = app.screen_stack[0] if app.screen_stack else app.screen
    widget_classes: dict[type, None] = {}
    for widget in main.walk_children():
        if own_bindings(type(widget)):
            widget_classes[type(widget)] = None
    widget_groups = [(title_of(cls), rows(app, own_bindings(cls))) for cls in widget_classes]
    # A widget's keys the app binds too (the log pane's, see trainboard.tui.log_keys) are listed
    # once, with the widget.
    listed = {row for _, found in widget_groups for row in found}
    groups.append((title_of(type(app)), [row for row in rows(app, own_bindings(type(app))) if row not in listed]))
    groups += widget_groups
    for screen_cls in screen_classes():
        only_in = getattr(screen_cls, "HELP_APPS", ())  # the apps that show the screen; () = every one
        if only_in and type(app).__name__ not in only_in:
            continue
        found = rows(app, own_bindings(screen_cls))
        answers = getattr(screen_cls, "ANSWERS", ())  # a question's answers, picked by their keys
        found += [(answer.key, answer.label) for answer in answers]
        if found:
            groups.append((title_of(screen_cls), found))
    groups.append(("Everywhere", rows(app, everywhere)))
    return [(title, found) for title, found in groups if found]


class HelpScreen(ModalScreen[None]):
    """The key bindings, grouped."""

    HELP_TITLE = "Help"
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
        background: $background 60%;
    }
    HelpScreen > Vertical {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        border-title-color: $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    HelpScreen VerticalScroll { height: auto; max-height: 100%; padding: 0 1; }
    HelpScreen .group { margin-top: 1; text-style: bold; color: $accent; }
    HelpScreen .keys { height: auto; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close help")]

    def compose(self) -> ComposeResult:
        groups = binding_groups(self.app)
        width = max((len(keys) for _, found in groups for keys, _ in found), default=4) + 2
        frame = Vertical()
        frame.border_title = "trainboard keys"
        frame.border_subtitle = "escape closes · ctrl+p finds any command"
        with frame:
            with VerticalScroll():
                for title, found in groups:
                    yield Static(title, classes="group", markup=False)
                    yield Static(
                        Content("\n").join(
                            Content.assemble((f"  {keys:<{width}}", "bold $text"), (description, "$text-muted"))
                            for keys, description in found
                        ),
                        classes="keys",
                    )

    def action_close(self) -> None:
        self.dismiss(None)

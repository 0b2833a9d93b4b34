"""The dashboards' key bar (``SteadyFooter``): it shows what Textual's ``Footer`` shows, rebuilds its
keys only when they change, and leaves no removed key alive (a question opened and closed 30 times)."""

from __future__ import annotations

import gc
import html
from collections.abc import Set as AbstractSet

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.widgets._footer import FooterKey

from trainboard.tui.widgets import ConfirmScreen
from trainboard.tui.widgets.footer import SteadyFooter

SIZE = (100, 12)


class Main(Screen[None]):
    BINDINGS = [Binding("c", "ask", "Cancel sweep"), Binding("s", "stop", "Stop member"), Binding("x", "flip", "Flip")]

    def __init__(self, steady: bool) -> None:
        super().__init__()
        self.steady = steady
        self.stoppable = True

    def compose(self) -> ComposeResult:
        yield Static("the sweep", id="body")
        yield SteadyFooter() if self.steady else Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.stoppable if action == "stop" else True

    def action_ask(self) -> None:
        self.app.push_screen(ConfirmScreen[bool]("cancel", "Cancel the sweep?"))

    def action_flip(self) -> None:
        self.stoppable = not self.stoppable
        self.refresh_bindings()


class Keys(App[None]):
    def __init__(self, steady: bool) -> None:
        super().__init__()
        self.steady = steady

    def get_default_screen(self) -> Screen[None]:
        return Main(self.steady)


def footer_keys(besides: AbstractSet[int] = frozenset()) -> list[FooterKey]:
    """Every FooterKey alive (but those in ``besides``: other tests' in this process)."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, FooterKey) and id(o) not in besides]


def shown_text(app: App[None]) -> str:
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def screenshot(steady: bool) -> str:
    app = Keys(steady)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        return app.export_screenshot()


async def test_it_looks_like_textuals_footer() -> None:
    assert await screenshot(steady=True) == await screenshot(steady=False)


async def test_a_question_opened_and_closed_neither_rebuilds_it_nor_leaves_keys_alive() -> None:
    others = {id(key) for key in footer_keys()}
    app = Keys(steady=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        footer = app.screen.query_one(SteadyFooter)
        rebuilds = footer.rebuilds
        for _ in range(30):
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause()
        assert footer.rebuilds == rebuilds
        keys = footer_keys(others)
        assert len(keys) == len(footer.query(FooterKey)), len(keys)


async def test_it_rebuilds_when_a_binding_changes_and_lets_go_of_the_old_keys() -> None:
    others = {id(key) for key in footer_keys()}
    app = Keys(steady=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        footer = app.screen.query_one(SteadyFooter)
        rebuilds = footer.rebuilds
        for _ in range(10):
            await pilot.press("x")  # "Stop member" is hidden, then shown again: the keys differ
            await pilot.pause()
        assert footer.rebuilds == rebuilds + 10
        shown = len(footer.query(FooterKey))
        assert "Stop member" in shown_text(app)
        await pilot.press("x")
        await pilot.pause()
        assert "Stop member" not in shown_text(app)
        assert len(footer.query(FooterKey)) == shown - 1
        assert len(footer_keys(others)) <= 2 * shown  # this set and the last

"""A question over the sweep dashboard (``KeptBackgroundConfirm``) looks like a ``ConfirmScreen``
but renders the dimmed screen below it only when that screen changed, not at each repaint."""

from __future__ import annotations

import html

from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from trainboard.tui.widgets import ConfirmScreen
from trainboard.tui.widgets.kept_background import KeptBackgroundConfirm

SIZE = (80, 20)


class Below(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static("\n".join(f"row {i} of the screen below" for i in range(12)), id="rows")
        yield Footer()


class Asking(App[None]):
    def __init__(self, kept: bool) -> None:
        super().__init__()
        self.kept = kept

    def get_default_screen(self) -> Screen[None]:
        return Below()

    def ask(self) -> None:
        kind = KeptBackgroundConfirm if self.kept else ConfirmScreen
        self.push_screen(kind[bool]("cancel", "Cancel the sweep?", "Every member is stopped."))


def shown_text(app: App[None]) -> str:
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def screenshot(kept: bool) -> str:
    app = Asking(kept)
    async with app.run_test(size=SIZE) as pilot:
        app.ask()
        await pilot.pause(0.2)
        return app.export_screenshot()


async def test_it_looks_like_a_confirm_screen() -> None:
    assert await screenshot(kept=True) == await screenshot(kept=False)


async def test_the_background_is_rendered_again_only_when_the_screen_below_changed() -> None:
    app = Asking(kept=True)
    async with app.run_test(size=SIZE) as pilot:
        app.ask()
        await pilot.pause(0.2)
        question = app.screen
        assert isinstance(question, KeptBackgroundConfirm)
        before = question.renders
        assert before >= 1
        for _ in range(4):  # the focus moves between the buttons: the question repaints, the screen below not
            await pilot.press("tab")
            await pilot.pause(0.05)
        assert question.renders == before
        assert "row 3 of the screen below" in shown_text(app)

        app.screen_stack[0].query_one("#rows", Static).update("the member list moved")
        await pilot.pause(0.2)
        assert question.renders > before
        shown = shown_text(app)
        assert "the member list moved" in shown and "row 3 of the screen below" not in shown
        await pilot.press("n")
        assert app.screen is app.screen_stack[0]

"""A run dashboard that the sweep screen lets go of (``RunScreen``, not owned) is freed: nothing of
the app keeps it (Textual's theme signal held it through its callback, with its log pane)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from textual.app import App

from trainboard.backend.config import load_config
from trainboard.backend.session import Session
from trainboard.tui.run_screen import RunScreen


async def test_a_removed_run_screen_is_freed(repo: Path) -> None:
    session = Session(load_config(repo / "tb.yaml"), root=repo)
    app: App[None] = App(css_path=Path(__file__).parent.parent / "tui" / "app.tcss")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = RunScreen(session, owned=False)
        app.install_screen(screen, "member")
        await app.push_screen(screen)
        await pilot.pause()
        assert app.screen is screen
        app.pop_screen()
        await pilot.pause()
        app.uninstall_screen(screen)
        await screen.remove()
        await pilot.pause()
        gone = weakref.ref(screen)
        del screen
        gc.collect()
        assert gone() is None
        assert not session.bus._subscribers  # and it no longer follows the session

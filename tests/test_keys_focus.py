"""The log pane's keys work from any state of the dashboard's main screen (issue 12 item 2).

After the plot (``m``), the full log (``l``), the runs screen (``r``), help (``?``) or the
command palette (ctrl+p) has come and gone, and with the focus on another panel, every log
key (``f``, ``/``, ``n``, ``N``, ``e``, ``E``, escape) still acts on the pane and shows in the
footer. Each test runs a real job on the local runner, driven by the pilot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

from tests.pilot_support import wait_for_end, wait_until
from tests.test_log_pane import NOISY_JOB
from trainboard.backend.config import load_config
from trainboard.backend.session import Session
from trainboard.tui.app import TrainboardApp, make_app
from trainboard.tui.screens.help import HelpScreen, binding_groups
from trainboard.tui.screens.log_view import FullLogScreen
from trainboard.tui.screens.runs import RunsScreen
from trainboard.tui.widgets import LogPane, MetricsPanel, MetricsPlot
from trainboard.tui.widgets.log_index import ERROR_PATTERN
from trainboard.tui.widgets.log_search import SearchPrompt

SIZE = (120, 40)  # not tall enough for the plot in the side column: m maximises it
FOOTER_KEYS = {"slash", "n", "N", "e", "f"}  # E and escape are bound but not in the footer


@pytest.fixture
def repo(repo: Path) -> Path:
    (repo / "noisy.py").write_text(NOISY_JOB)  # untracked: synced all the same
    return repo


def build(repo: Path) -> TrainboardApp:
    return make_app(Session(load_config(repo / "tb.yaml", ["job.command=python noisy.py"]), root=repo))


def marked(pane: LogPane) -> tuple[str, str]:
    assert pane.mark is not None, pane.border_subtitle
    kind, row = pane.mark
    return kind, pane.lines[row]


async def footer_keys(pilot: Pilot, app: TrainboardApp) -> set[str]:
    """The keys the footer draws (it recomposes after a refresh)."""
    await pilot.pause(0.1)
    return {str(getattr(key, "key", "")) for key in app.screen.query("FooterKey")}


async def use_every_log_key(pilot: Pilot, app: TrainboardApp, state: str) -> None:
    """Press each log key, checking what it did to the pane; leave it following, with no search."""
    pane = app.query_one(LogPane)
    assert app.screen is app.screen_stack[0], state
    assert FOOTER_KEYS <= await footer_keys(pilot, app), state
    assert pane.following and not pane.search_query, state

    await pilot.press("f")
    assert not pane.following and "paused" in pane.border_subtitle, state
    await pilot.press("f")
    assert pane.following and "following" in pane.border_subtitle, state

    await pilot.press("slash")
    assert isinstance(app.screen, SearchPrompt), state
    await pilot.press(*"needle", "enter")
    await pilot.pause()
    assert pane.search_query == "needle", state
    assert marked(pane) == ("match", "step 257 needle") and "match 6/6" in pane.border_subtitle, state
    await pilot.press("n")  # wraps to the first
    assert marked(pane) == ("match", "step 7 needle") and "match 1/6" in pane.border_subtitle, state
    await pilot.press("N")
    assert marked(pane) == ("match", "step 257 needle"), state

    await pilot.press("e")  # the first error below the mark
    assert marked(pane) == ("error", "Traceback (most recent call last):"), state
    assert "error 1/3" in pane.border_subtitle, state
    await pilot.press("E")  # wraps back to the last
    kind, line = marked(pane)
    assert kind == "error" and line == "ERROR the last one" and ERROR_PATTERN.search(line), state

    await pilot.press("escape")  # clears the search and the mark
    assert pane.search_query == "" and pane.mark is None, state
    await pilot.press("f")  # the jumps paused the pane: follow again
    assert pane.following, state
    assert FOOTER_KEYS <= await footer_keys(pilot, app), state


async def plot_then_escape(pilot: Pilot, app: TrainboardApp) -> None:
    await pilot.press("m")
    assert app.screen.maximized is app.query_one(MetricsPlot)
    await pilot.press("escape")
    assert app.screen.maximized is None


async def plot_then_m(pilot: Pilot, app: TrainboardApp) -> None:
    await pilot.press("m")
    assert app.screen.maximized is app.query_one(MetricsPlot)
    await pilot.press("m")
    assert app.screen.maximized is None


def screen_and_back(key: str, screen: type) -> Callable[[Pilot, TrainboardApp], Awaitable[None]]:
    """Press ``key``, see ``screen`` open, and leave it with escape."""

    async def go(pilot: Pilot, app: TrainboardApp) -> None:
        await pilot.press(key)
        assert isinstance(app.screen, screen)
        await pilot.press("escape")

    return go


async def palette_runs_and_back(pilot: Pilot, app: TrainboardApp) -> None:
    """The palette's "Show runs", then escape from the runs screen."""
    await pilot.press("ctrl+p")
    await pilot.press(*"Show runs")
    commands = app.screen.query_one(CommandList)
    await wait_until(pilot, lambda: commands.option_count > 0, "palette hits", timeout=5)
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs screen", timeout=5)
    await pilot.press("escape")


async def focus_on_metrics(pilot: Pilot, app: TrainboardApp) -> None:
    """Another panel has the focus (as after Tab)."""
    app.query_one(MetricsPanel).focus()
    await pilot.pause()
    assert isinstance(app.focused, MetricsPanel)


STATES: dict[str, Callable[[Pilot, TrainboardApp], Awaitable[None]]] = {
    "m, escape": plot_then_escape,
    "m, m": plot_then_m,
    "l, escape": screen_and_back("l", FullLogScreen),
    "r, escape": screen_and_back("r", RunsScreen),
    "?, escape": screen_and_back("question_mark", HelpScreen),
    "ctrl+p, escape": screen_and_back("ctrl+p", CommandPalette),
    "ctrl+p Show runs, escape": palette_runs_and_back,
    "focus on the metrics panel": focus_on_metrics,
}


async def test_every_log_key_works_after_each_screen_and_with_the_focus_anywhere(repo: Path) -> None:
    app = build(repo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        assert app.focused is app.query_one(LogPane)
        await use_every_log_key(pilot, app, "at the start")
        for state, go in STATES.items():
            await go(pilot, app)
            await pilot.pause()
            await use_every_log_key(pilot, app, state)
        await pilot.press("q")


async def test_the_plot_going_back_gives_the_focus_back_to_the_log(repo: Path) -> None:
    app = build(repo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        pane = app.query_one(LogPane)
        for back in ("m", "escape"):
            await pilot.press("m")
            assert app.screen.maximized is not None
            await pilot.press(back)
            await pilot.pause()
            assert app.screen.maximized is None and app.focused is pane, back
        await pilot.press("q")


async def test_the_log_keys_are_off_over_the_runs_screen_and_listed_once_in_help(repo: Path) -> None:
    app = build(repo)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        pane = app.query_one(LogPane)
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        assert not {"slash", "n", "N", "e", "E", "f"} & set(app.screen.active_bindings)
        await pilot.press("f", "e")
        assert pane.following and pane.mark is None  # the runs screen's keys are its own
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]

        groups = dict(binding_groups(app))
        assert ("f", "Pause/follow") in groups["Log pane"]
        assert not [row for row in groups["Run dashboard"] if row in groups["Log pane"]]
        await pilot.press("q")

"""Textual's internals that trainboard touches, all in trainboard.tui.compat_textual, checked on
the installed Textual: when an upgrade moves one, a test here fails and says which one.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.strip import Strip
from textual.widgets import Log

from tests.conftest import ROOT
from trainboard.tui import compat_textual
from trainboard.tui.compat_textual import (
    UnhandledErrorHook,
    clear_log_render_cache,
    forget_detached_watchers,
    forget_styles_caches,
    revive_writer_thread,
    unhandled_exception,
)

UPGRADE = (
    "Textual {installed} is installed; trainboard.tui.compat_textual was written against {checked}. "
    "A Textual upgrade moved an internal it relies on: {what}. Update compat_textual (and "
    "TEXTUAL_VERSION_CHECKED), not its callers."
)


def moved(what: str) -> str:
    return UPGRADE.format(installed=version("textual"), checked=compat_textual.TEXTUAL_VERSION_CHECKED, what=what)


def test_the_installed_textual_is_the_major_version_compat_was_checked_against() -> None:
    installed, checked = version("textual").split(".")[0], compat_textual.TEXTUAL_VERSION_CHECKED.split(".")[0]
    assert installed == checked, moved(f"a new major version ({installed}, not {checked}): re-check every function")


class Crashing(UnhandledErrorHook, App[None]):
    BINDINGS = [Binding("x", "crash")]

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Exception] = []

    def action_crash(self) -> None:
        raise RuntimeError("a bug in a handler")

    def on_unhandled_error(self, error: Exception) -> None:
        self.seen.append(error)


async def test_an_exception_nothing_caught_reaches_the_hook_and_is_kept_for_the_test_run() -> None:
    assert callable(getattr(App, "_handle_exception", None)), moved("App._handle_exception is gone")
    app = Crashing()
    with pytest.raises(RuntimeError, match="a bug in a handler"):
        async with app.run_test() as pilot:
            await pilot.press("x")
            await pilot.pause()
    assert [str(e) for e in app.seen] == ["a bug in a handler"], moved(
        "App._handle_exception is no longer called with an unhandled exception (on_unhandled_error was not)"
    )
    error = unhandled_exception(app)
    assert isinstance(error, RuntimeError), moved("App._exception no longer holds the exception the app died of")


async def test_a_clean_run_leaves_no_exception() -> None:
    app = App[None]()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app._driver is not None, moved("App._driver no longer holds the running driver")
    assert unhandled_exception(app) is None


class _Broken(io.StringIO):
    """A terminal that hung up: every write fails, as writes to it fail with EIO."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


async def test_a_writer_thread_killed_by_a_dead_terminal_is_restarted_on_the_same_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        from textual.drivers import _writer_thread
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError as error:
        pytest.fail(moved(f"textual.drivers._writer_thread or linux_driver moved ({error})"))
    if sys.__stdin__ is None:  # LinuxDriver reads stdin's file number: give it one that is quiet
        monkeypatch.setattr(sys, "__stdin__", open(os.devnull))
    app = App[None]()
    driver = LinuxDriver(app)  # not started: no terminal is touched
    assert hasattr(driver, "_writer_thread"), moved("LinuxDriver._writer_thread is gone")
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the dying thread's traceback
    dead = _writer_thread.WriterThread(_Broken())
    assert isinstance(getattr(dead, "_file", None), _Broken), moved("WriterThread._file no longer holds its file")
    dead.start()
    dead.write("lost")
    dead.join(5)
    assert not dead.is_alive()
    out = io.StringIO()
    dead._file = out  # what a hang-up does next: the app's output points at a quiet file
    driver._writer_thread = dead
    assert app._driver is None, moved("App._driver is not None before the app runs")
    monkeypatch.setattr(app, "_driver", driver)

    assert revive_writer_thread(app) is True
    fresh = driver._writer_thread
    assert fresh is not dead and fresh is not None and fresh.is_alive(), moved("the driver's writer thread")
    fresh.write("written again")
    fresh.stop()
    assert out.getvalue() == "written again"
    assert revive_writer_thread(app) is True  # one that ended is replaced too; a live one is left alone:
    alive = driver._writer_thread
    assert alive is not fresh and alive.is_alive()
    assert revive_writer_thread(app) is False and driver._writer_thread is alive
    alive.stop()


def test_without_a_writer_thread_there_is_nothing_to_revive() -> None:
    assert revive_writer_thread(App[None]()) is False  # no driver yet, or a headless one


class OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield Log()


async def test_clearing_the_log_cache_drops_its_rendered_lines() -> None:
    app = OneLog()
    async with app.run_test() as pilot:
        log = app.query_one(Log)
        log.write_lines(["one", "two", "three"])
        await pilot.pause()
        assert list(log.lines) == ["one", "two", "three"], moved("Log.lines no longer lists the lines written")
        cache = getattr(log, "_render_line_cache", None)
        assert cache is not None, moved("Log._render_line_cache is gone")
        cache[0] = Strip([Segment("stale")], 5)
        assert log.render_line(0).text.startswith("stale"), moved("Log no longer reads _render_line_cache")
        clear_log_render_cache(log)
        assert len(cache) == 0
        assert log.render_line(0).text.startswith("one")


PRIVATE = re.compile(r"\._(driver|writer_thread|handle_exception|exception|render_line_cache)\b|textual\.\w+\._\w")


def test_textual_internals_are_touched_only_through_compat_textual() -> None:
    users: list[str] = []
    files = [*(ROOT / "tui").rglob("*.py"), *(ROOT / "tests").glob("*support*.py"), *(ROOT / "benchmarks").glob("*.py")]
    for path in files:
        if path.name == "compat_textual.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line):
                users.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert users == [], "Textual internals outside trainboard.tui.compat_textual:\n" + "\n".join(users)


def test_compat_names_the_textual_version_it_was_written_against() -> None:
    doc: Any = compat_textual.__doc__
    assert compat_textual.TEXTUAL_VERSION_CHECKED in doc
    assert Path(compat_textual.__file__).name == "compat_textual.py"


class Watched(App[None]):
    def compose(self) -> ComposeResult:
        yield Log(id="watched")
        yield Log(id="watcher")


async def test_the_watchers_of_a_removed_node_are_forgotten() -> None:
    """A node's watcher lists (``__watchers``) keep a removed watcher until the watched value
    changes: forget_detached_watchers drops it, and keeps the others."""
    app = Watched()
    async with app.run_test() as pilot:
        watched, watcher = app.query_one("#watched", Log), app.query_one("#watcher", Log)
        watcher.watch(watched, "auto_scroll", lambda _: None, init=False)
        app.watch(watched, "auto_scroll", lambda _: None, init=False)
        watchers = getattr(watched, "__watchers", None)
        assert isinstance(watchers, dict), moved("a node's watchers are no longer kept in __watchers")
        assert [node for node, _ in watchers["auto_scroll"]] == [watcher, app], moved("__watchers' entries")
        await watcher.remove()
        await pilot.pause()
        forget_detached_watchers(watched)
        assert [node for node, _ in watchers["auto_scroll"]] == [app]


def test_the_style_caches_kept_for_gone_widgets_can_be_emptied() -> None:
    from textual._styles_cache import StylesCache

    kept = getattr(StylesCache, "get_inner_outer", None)
    assert kept is not None and hasattr(kept, "cache_clear"), moved("StylesCache.get_inner_outer's lru_cache")
    forget_styles_caches()
    assert kept.cache_info().currsize == 0

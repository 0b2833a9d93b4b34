"""The dashboards' garbage-collector settling (``trainboard.tui.heap``): what was alive once the
imports were done is frozen out of the collector's full passes, and handed back at the end."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from trainboard.tui.heap import HeapSettler


@pytest.fixture
def settler() -> Iterator[HeapSettler]:
    gc.unfreeze()  # what an earlier test in this worker froze (tracking.freeze_imported on MLflow's import)
    settler = HeapSettler()
    yield settler
    settler.release()
    gc.unfreeze()  # whatever a failed assertion left frozen


def test_settle_freezes_what_is_alive_and_again_only_after_an_import(
        settler: HeapSettler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gc.get_freeze_count() == 0
    assert settler.settle()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the modules imported so far, their functions and classes
    assert not settler.settle()  # nothing imported since: no collection, nothing more frozen
    # Not equal: a thread an earlier test in this worker left running may free a frozen object.
    assert gc.get_freeze_count() <= frozen

    (tmp_path / "tb_heap_probe.py").write_text("TABLE = {i: [i] for i in range(500)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("tb_heap_probe")
    try:
        assert settler.settle()
        assert gc.get_freeze_count() > frozen  # the new module's objects too
        assert settler.settled == 2
    finally:
        del sys.modules["tb_heap_probe"], module


def test_release_hands_everything_back_to_the_collector(settler: HeapSettler) -> None:
    settler.settle()
    assert gc.get_freeze_count() > 0
    settler.release()
    assert gc.get_freeze_count() == 0
    assert settler.settle()  # after a release, the next call settles afresh
    settler.release()
    settler.release()  # twice: nothing to hand back
    assert gc.get_freeze_count() == 0


def test_a_cycle_left_after_the_release_is_collected(settler: HeapSettler) -> None:
    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    settler.settle()  # the cycle is alive: frozen with the rest
    settler.release()
    del a, b
    assert any(isinstance(o, Node) for o in gc.get_objects())
    gc.collect()
    assert not any(isinstance(o, Node) for o in gc.get_objects())


async def test_the_style_caches_of_removed_widgets_are_let_go() -> None:
    from textual._styles_cache import StylesCache
    from textual.app import App
    from textual.widget import Widget
    from textual.widgets import Static

    from trainboard.tui.heap import forget_styles_caches

    def orphans() -> int:
        gc.collect()
        live = {id(o._styles_cache) for o in gc.get_objects() if isinstance(o, Widget)}
        return sum(1 for o in gc.get_objects() if isinstance(o, StylesCache) and id(o) not in live)

    app: App[None] = App()
    async with app.run_test(size=(40, 10)) as pilot:
        for round in range(5):
            shown = [Static(f"question {round}.{i}") for i in range(10)]
            await app.screen.mount_all(shown)
            await pilot.pause()
            for widget in shown:
                await widget.remove()
        await pilot.pause()
        del shown, widget
        assert orphans() >= 10  # Textual's cache keeps the removed widgets' style caches
        forget_styles_caches()
        assert orphans() == 0

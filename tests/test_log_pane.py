"""The log pane and the full-log screen, driven by the pilot against the real session.

Each app test runs a real job on the local runner (the tiny repo's, or a small
script written into it) and reads what the pane and the full-log screen show.
"""

from __future__ import annotations

import gc
import textwrap
import tracemalloc
from array import array
from collections import deque
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.pilot_support import wait_for_end, wait_until
from trainboard.backend.config import load_config
from trainboard.backend.session import Session
from trainboard.tui.app import TrainboardApp, make_app
from trainboard.tui.screens.log_view import FullLogScreen
from trainboard.tui.widgets import LogPane
from trainboard.tui.widgets.log_file import CACHE_LINES, LogFileView
from trainboard.tui.widgets.log_index import ERROR_PATTERN, LineIndex, LineScan
from trainboard.tui.widgets.log_search import SearchPrompt, search_pattern

SIZE = (120, 40)

TOKEN = "ghp_" + "Z9" * 20  # the shape of a GitHub token; fake

NOISY_JOB = textwrap.dedent(
    """
    import os
    for i in range(300):
        print(f"step {i}" + (" needle" if i % 50 == 7 else ""))
    print("Traceback (most recent call last):")
    print('  File "train.py", line 3, in <module>')
    print("ValueError: boom")
    for i in range(100):
        print(f"after {i}")
    print("ERROR the last one")
    token = os.environ.get("GITHUB_TOKEN")
    if token:
        print(f"pushing with token={token} to origin")
    """
)


@pytest.fixture
def repo(repo: Path) -> Path:
    """The shared ``repo`` (conftest), plus a job that prints errors and a token."""
    (repo / "noisy.py").write_text(NOISY_JOB)  # untracked: synced all the same
    return repo


def build(repo: Path, *overrides: str) -> TrainboardApp:
    return make_app(Session(load_config(repo / "tb.yaml", list(overrides)), root=repo))


async def search(pilot: Pilot, app: TrainboardApp, text: str) -> None:
    await pilot.press("slash")
    assert isinstance(app.screen, SearchPrompt)
    await pilot.press(*text)
    await pilot.press("enter")
    await pilot.pause()


def marked_text(pane: LogPane) -> str:
    assert pane.mark is not None
    return pane.lines[pane.mark[1]]


def in_view(view: LogPane | LogFileView, row: int) -> bool:
    top, bottom = view.visible_rows
    return top <= row <= bottom


def shown(view: LogPane | LogFileView, row: int) -> str:
    """The text the view renders for ``row`` (which must be in view)."""
    assert in_view(view, row), (row, view.visible_rows)
    return view.render_line(row - view.scroll_offset.y).text.rstrip()


async def test_search_highlights_and_n_N_and_e_move_between_matches_and_errors(repo: Path) -> None:
    app = build(repo, "job.command=python noisy.py")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        pane = app.query_one(LogPane)
        shown_keys = {b.binding.description for b in app.active_bindings.values() if b.binding.show}
        assert {"Search", "Next error", "Pause/follow", "Full log"} <= shown_keys

        await search(pilot, app, "NEEDLE")  # any case
        assert pane.search_query == "NEEDLE"
        # Enter goes to the nearest match above the bottom of the view: the last one.
        assert marked_text(pane) == "step 257 needle" and "match 6/6" in pane.border_subtitle
        assert not pane.following
        row = pane.mark[1] if pane.mark else -1
        strip = pane.render_line(row - pane.scroll_offset.y)
        match_bg = pane.get_component_rich_style("log--match", partial=True).bgcolor
        assert [seg.text for seg in strip if seg.style and seg.style.bgcolor == match_bg] == ["needle"]

        await pilot.press("n")  # wraps to the first
        assert marked_text(pane) == "step 7 needle" and "match 1/6" in pane.border_subtitle
        assert in_view(pane, pane.mark[1] if pane.mark else -1)
        await pilot.press("N")
        assert marked_text(pane) == "step 257 needle"
        await pilot.press("N")
        assert marked_text(pane) == "step 207 needle" and "match 5/6" in pane.border_subtitle

        await pilot.press("e")
        assert marked_text(pane) == "Traceback (most recent call last):"
        assert "error 1/3" in pane.border_subtitle
        await pilot.press("e")
        assert marked_text(pane) == "ValueError: boom"
        await pilot.press("e")
        assert marked_text(pane) == "ERROR the last one" and "error 3/3" in pane.border_subtitle
        await pilot.press("e")  # wraps
        assert "error 1/3" in pane.border_subtitle and in_view(pane, pane.mark[1] if pane.mark else -1)

        await pilot.press("escape")
        assert pane.search_query == "" and pane.mark is None

        # The same in the full log, read from job.log.
        await pilot.press("l")
        assert isinstance(app.screen, FullLogScreen)
        view = app.screen.view
        await wait_until(pilot, lambda: view.errors.complete and view._known > 400, "the full log's index")
        await pilot.press("e")  # from the top of the view: the error in view comes first
        assert view.mark is not None and view.line_text(view.mark[1]) == "ERROR the last one"
        assert "error 3/3" in view.border_subtitle
        await pilot.press("E", "E")
        assert view.mark is not None and view.line_text(view.mark[1]) == "Traceback (most recent call last):"
        assert "error 1/3" in view.border_subtitle and in_view(view, view.mark[1])
        await search(pilot, app, "needle")
        await wait_until(pilot, lambda: "match 6/6" in view.border_subtitle, "the full log's search")
        assert view.mark is not None and shown(view, view.mark[1]).endswith("step 257 needle")
        await pilot.press("n")
        assert view.mark is not None and shown(view, view.mark[1]).endswith("step 7 needle")
        await pilot.press("escape")  # clears the search
        await pilot.press("escape")  # back to the dashboard
        assert not isinstance(app.screen, FullLogScreen)
        await pilot.press("q")


async def test_a_flood_while_paused_keeps_the_view_and_the_full_log_scrolls_all_of_it(repo: Path) -> None:
    lines = 200_000
    app = build(repo, f"params.lines={lines}", "params.sleep=1")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(LogPane)
        await wait_until(pilot, lambda: "epoch 1: f1=0.700" in pane.lines, "the first epoch")
        assert pane.following and "following" in pane.border_subtitle
        await pilot.press("f")
        assert not pane.following
        top = pane.scroll_offset.y
        first_shown = shown(pane, top)

        await wait_for_end(pilot, app)  # the flood arrives while paused
        assert pane.scroll_offset.y == top and shown(pane, top) == first_shown  # the view stayed put
        assert pane.unseen > lines and f"paused · {pane.unseen:,} new lines" in pane.border_subtitle
        assert "skipped" in pane.border_subtitle and pane.dropped > 0
        assert pane.line_count <= pane.max_lines and len(pane.held) <= pane.capacity
        assert len(pane.pending) <= pane.capacity

        await pilot.press("end")  # going to the end follows again
        await pilot.pause(0.2)
        assert pane.following and pane.lines[-1] == f"line {lines - 1}"
        assert in_view(pane, pane.line_count - 1) and "following" in pane.border_subtitle
        await pilot.press("pageup")  # scrolling up pauses
        assert not pane.following
        await pilot.press("f")
        assert pane.following

        await pilot.press("l")
        assert isinstance(app.screen, FullLogScreen)
        view = app.screen.view
        total = lines + 3  # "$ python job.py", two epochs, then the lines
        await wait_until(pilot, lambda: view._known == total, "the index of job.log")
        await pilot.pause(0.2)
        assert view.following and in_view(view, total - 1)
        assert shown(view, total - 1) == f"{total:>6} line {lines - 1}"

        await pilot.press("home")
        assert not view.following and shown(view, 0).endswith(" $ python job.py")
        view.scroll_to(y=100_003, animate=False, immediate=True)  # the middle
        await pilot.pause()
        assert shown(view, 100_003) == f"{100_004:>6} line 100000"
        await pilot.press("pagedown")
        await pilot.pause(0.3)
        top = view.scroll_offset.y
        assert shown(view, top) == f"{top + 1:>6} line {top - 3}"

        await search(pilot, app, "line 123456")
        await wait_until(pilot, lambda: "match 1/1" in view.border_subtitle, "the search of 200k lines")
        assert view.mark == ("match", 123_459) and in_view(view, 123_459)

        await pilot.press("end")
        assert view.following and in_view(view, total - 1)

        # Bounded memory: offsets in an array, a bounded cache, no list of the lines anywhere.
        assert isinstance(view.index.ends, array) and view.index.ends.typecode == "Q"
        assert len(view.index.ends) == total and len(view.cache) <= CACHE_LINES
        gc.collect()
        big = [type(o).__name__ for o in gc.get_objects() if isinstance(o, list | tuple | deque) and len(o) > 50_000]
        assert big == []

        await pilot.press("s")  # the other file: setup.log
        await wait_until(pilot, lambda: view._known == 2, "the index of setup.log")
        assert view.line_text(1) == "preparing"
        await pilot.press("l")
        assert not isinstance(app.screen, FullLogScreen)
        await pilot.press("q")


async def test_a_secret_in_the_log_is_masked_in_the_pane_and_the_full_log(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    app = build(repo, "job.command=python noisy.py")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_end(pilot, app)
        pane = app.query_one(LogPane)
        assert "pushing with token=*** to origin" in pane.lines
        assert not any(TOKEN in line for line in pane.lines)
        kept = (app.session.run_dir / "job.log").read_text()  # the log kept on disk is masked too
        assert "pushing with token=*** to origin" in kept and TOKEN not in kept
        assert not list((app.session.run_dir / "runner").glob("*.log"))  # the raw log went with teardown

        await pilot.press("l")
        view = app.screen.query_one(LogFileView)
        await wait_until(pilot, lambda: view.errors.complete and view._known > 400, "the full log's index")
        await pilot.press("end")
        await pilot.pause()
        top, bottom = view.visible_rows
        rendered = [shown(view, row) for row in range(top, min(bottom, view._known - 1) + 1)]
        assert any(text.endswith("pushing with token=*** to origin") for text in rendered), rendered
        assert not any("Z9Z9" in text for text in rendered)
        await search(pilot, app, "Z9Z9")  # a search cannot find what it cannot show
        await wait_until(pilot, lambda: "no match" in view.border_subtitle, "the search")
        await pilot.press("escape", "escape", "q")


def test_a_million_line_file_is_indexed_in_bounded_memory_and_read_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    count = 1_000_000
    path.write_bytes(b"".join(b"line %d of the log\n" % i for i in range(count)))
    index = LineIndex(path)
    tracemalloc.start()
    try:
        assert index.update() == count
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.line_count == count
    assert peak < 8 * count + 6 * 2**20, f"indexing 1M lines peaked at {peak / 2**20:.1f} MiB"  # the offsets + a chunk
    assert index.read(0, 2, str) == ["line 0 of the log", "line 1 of the log"]
    assert index.read(count // 2, 1, str) == [f"line {count // 2} of the log"]
    assert index.read(count - 1, 5, str) == [f"line {count - 1} of the log"]

    with path.open("ab") as fh:  # the file grows, the last line still unterminated
        fh.write(b"line A\nline B (still being writ")
    assert index.update() == 1
    assert index.line_count == count + 2 and index.read(count, 2, str) == ["line A", "line B (still being writ"]

    scan = LineScan(index, search_pattern("OF THE LOG") or ERROR_PATTERN, str)
    scan.advance()
    assert len(scan.rows) == count and scan.complete
    errors = LineScan(index, ERROR_PATTERN, str)
    errors.advance()
    assert len(errors.rows) == 0

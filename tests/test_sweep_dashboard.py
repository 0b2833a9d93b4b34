"""The sweep dashboard (``make_sweep_app``), driven by the pilot over a real sweep of the tiny job.

Each test runs real members (local runner, MLflow's SQLite store) and checks what the
screen shows and what the sweep recorded: a member opened with enter (its run dashboard,
its log) and left with escape runs on; ``s`` stops one member, ``c`` cancels the rest;
``/`` filters the rows and ``o`` sorts them; ``q`` while it runs cancels and tears down.
"""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Static

from tests.pilot_support import wait_until
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.store import RunStore
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_record import QUEUED, RUNNING, SKIPPED, SweepStore
from trainboard.backend.sweep_spec import plan
from trainboard.tui.screens.help import HelpScreen
from trainboard.tui.screens.sweep import SweepScreen
from trainboard.tui.screens.sweep_member import MemberScreen
from trainboard.tui.sweep_app import SweepApp, make_sweep_app
from trainboard.tui.widgets import ConfirmScreen, LogPane, StageList
from trainboard.tui.widgets.members_view import MembersView

SIZE = (120, 40)


def make_sweep(repo: Path, *sweeps: str, overrides: tuple[str, ...] = ()) -> Sweep:
    loaded = load_config(repo / "tb.yaml", list(overrides))
    members, configs = plan(loaded, list(sweeps), repo)
    return Sweep(loaded, members, configs, root=repo)


def rows(app: SweepApp) -> list[list[str]]:
    """The table's rows as the screen shows them (plain text)."""
    view = app.main.query_one(MembersView)
    return [view.row_text(row) for row in range(len(view.order))]


def header(app: SweepApp) -> str:
    return str(app.main.query_one("#sweep-header").render())


async def select(pilot: Pilot, app: SweepApp, index: int) -> None:
    view = app.main.query_one(MembersView)
    view.move_cursor(view.order.index(index))
    await pilot.pause()
    assert app.main.selected == index


async def wait_for_status(pilot: Pilot, sweep: Sweep, index: int, *statuses: str, timeout: float = 60) -> None:
    await wait_until(pilot, lambda: sweep.members[index].info.status in statuses,
                     f"member {index} {' or '.join(statuses)}", timeout=timeout)


async def test_enter_opens_a_running_member_and_escape_comes_back_leaving_it_running(repo: Path) -> None:
    sweep = make_sweep(repo, "params.base_f1=0.5,0.7", overrides=("params.sleep=1.5", "params.epochs=4"))
    app = make_sweep_app(sweep)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SweepScreen)
        await wait_until(pilot, lambda: sweep.members[0].history, "member 0's first objective value", timeout=60)
        shown = header(app)
        assert f"sweep {sweep.sweep_id}" in shown and "2 members" in shown and "$0.00 (no cap)" in shown, shown
        await pilot.pause(0.3)
        table = rows(app)
        assert [row[1] for row in table] == ["0.5", "0.7"], table  # the varied value, one column per setting
        assert "running" in table[0][2], table

        await select(pilot, app, 0)
        await pilot.press("enter")
        assert isinstance(app.screen, MemberScreen) and app.screen.session is sweep.members[0].session
        pane = app.screen.query_one(LogPane)
        # The log pane starts with what the member logged before it opened (its log files).
        await wait_until(pilot, lambda: any(line.startswith("epoch 1") for line in pane.lines), "epoch 1 in the pane")
        stages = app.screen.query_one(StageList)
        await wait_until(pilot, lambda: "train" in str(stages.render()), "the replayed stages")

        await pilot.press("escape")
        assert isinstance(app.screen, SweepScreen)
        assert sweep.members[0].info.status == RUNNING  # leaving the member's dashboard leaves it running
        assert not sweep.stop_reason

        # Enter again: the same dashboard, kept while hidden; what happened meanwhile shows.
        opened = pane.screen
        await wait_until(pilot, lambda: sweep.members[0].info.status != RUNNING, "member 0 to end", timeout=120)
        await pilot.press("enter")
        assert app.screen is opened and isinstance(opened, MemberScreen)
        await wait_until(pilot, lambda: opened.outcome is not None, "the member's end on its dashboard")
        assert any(line.startswith("epoch 4") for line in pane.lines)
        assert sum(line.startswith("epoch 4") for line in pane.lines) == 1  # each line once
        await pilot.press("escape")

        await wait_until(pilot, lambda: app.outcome is not None, "the sweep to finish", timeout=120)
        await pilot.pause(0.3)
        assert [m.info.status for m in sweep.members] == ["succeeded", "succeeded"]
        assert "★ 1" in rows(app)[1][0]  # the best (0.7 + 0.4) is marked
        await pilot.press("q")
    assert app.return_code == app.exited_with == sweep.data.exit_code
    saved = SweepStore(repo / ".trainboard").load(sweep.sweep_id)
    assert saved.best == 1


async def test_s_stops_one_member_and_c_cancels_the_rest(repo: Path) -> None:
    sweep = make_sweep(repo, "params.base_f1=0.5,0.6,0.7",
                       overrides=("params.sleep=2", "params.epochs=10", "sweep.max_parallel=1"))
    app = make_sweep_app(sweep)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: sweep.members[0].history, "member 0 training", timeout=60)
        await select(pilot, app, 0)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Stop member 0?"
        await pilot.press("y")
        await wait_for_status(pilot, sweep, 0, "cancelled")
        assert sweep.members[1].info.status in (QUEUED, RUNNING)  # the others go on

        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.question == "Cancel the sweep?"
        await pilot.press("y")
        await wait_until(pilot, lambda: app.outcome is not None, "the sweep to stop", timeout=120)
        assert app.outcome == ExitCode.INTERRUPTED
        statuses = [m.info.status for m in sweep.members]
        assert statuses[0] == "cancelled" and statuses[2] == SKIPPED, statuses
        await pilot.pause(0.3)
        assert "cancelled" in rows(app)[0][2] and SKIPPED in rows(app)[2][2]
        await pilot.press("q")
    assert app.return_code == ExitCode.INTERRUPTED
    assert RunStore(repo / ".trainboard").load(sweep.members[0].info.run_id).status == "cancelled"
    saved = SweepStore(repo / ".trainboard").load(sweep.sweep_id)
    assert saved.members[0].reason == "stopped from the dashboard"
    assert saved.members[2].reason == "cancelled from the dashboard"


async def test_slash_filters_the_rows_and_o_sorts_them(repo: Path) -> None:
    sweep = make_sweep(repo, "params.base_f1=0.5,0.7,0.6")
    app = make_sweep_app(sweep)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.outcome is not None, "the sweep to finish", timeout=180)
        await pilot.pause(0.3)
        assert [r[1] for r in rows(app)] == ["0.5", "0.7", "0.6"]

        await pilot.press("slash", *"0.7")
        assert [r[1] for r in rows(app)] == ["0.7"]  # as you type
        await pilot.press("enter")
        assert app.main.filter == "0.7" and isinstance(app.screen, SweepScreen)
        await pilot.press("slash", "escape")  # escape keeps the filter there was
        assert [r[1] for r in rows(app)] == ["0.7"]
        await pilot.press("slash", *["backspace"] * 3, "enter")
        assert len(rows(app)) == 3

        await pilot.press("o")  # objective, best first
        assert app.main.sort == "objective"
        assert [r[1] for r in rows(app)] == ["0.7", "0.6", "0.5"]
        await pilot.press("o", "o")  # status, then back to index
        assert [r[1] for r in rows(app)] == ["0.5", "0.7", "0.6"]

        await pilot.press("question_mark")  # help: the sweep's keys and a member's, from their bindings
        assert isinstance(app.screen, HelpScreen)
        shown = "\n".join(str(s.render()) for s in app.screen.query(Static))
        for expected in ("Sweep dashboard", "Stop member", "Cancel sweep", "Filter", "Sort", "Open member",
                         "Sweep member", "Back to sweep"):
            assert expected in shown, expected
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == sweep.data.exit_code


async def test_q_while_the_sweep_runs_cancels_it_and_waits_for_teardown(repo: Path) -> None:
    sweep = make_sweep(repo, "params.base_f1=0.5,0.7", overrides=("params.sleep=2", "params.epochs=10"))
    app = make_sweep_app(sweep)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: all(m.history for m in sweep.members), "both members training", timeout=60)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen) and app.screen.purpose == "quit"
        await pilot.press("y")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit", timeout=120)
    assert app.return_code == app.exited_with == ExitCode.INTERRUPTED
    assert [m.info.status for m in sweep.members] == ["cancelled", "cancelled"]
    assert SweepStore(repo / ".trainboard").load(sweep.sweep_id).exit_code == ExitCode.INTERRUPTED


def test_sparkline_best_so_far_and_header_read_the_sweeps_state() -> None:
    from trainboard.backend.sweep_record import MemberInfo, SweepData
    from trainboard.tui.widgets.sweep_table import best_so_far, header_text, sparkline

    assert sparkline([]) == ""
    assert sparkline([0.5, 0.5]) == "▄▄"  # flat: mid-height
    assert sparkline([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == "▁▂▃▄▅▆▇█"
    assert sparkline(list(range(30)), points=4) == "▁▃▆█"  # the latest values only

    members = [MemberInfo(index=i, values={"params.lr": str(i)}) for i in range(4)]
    data = SweepData(sweep_id="s1", branch="main", members=members, goal="max", max_cost_usd=5.0, cost=0.123)
    assert best_so_far(data) is None
    members[1].objective, members[2].objective, members[3].objective = 0.8, 0.9, 0.9
    assert best_so_far(data) == 2  # a tie goes to the lower index
    data.goal = "min"
    assert best_so_far(data) == 1
    data.best = 3  # the verdict's pick, once the sweep has one
    assert best_so_far(data) == 3

    members[0].status, members[1].status, members[2].status = RUNNING, "succeeded", SKIPPED
    assert header_text(data) == "sweep s1 · main · $0.12 of $5.00 cap · 4 members: 1 running, 1 queued, 2 done"

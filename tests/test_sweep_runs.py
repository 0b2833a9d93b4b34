"""Sweeps in `trainboard runs`, the runs screen and `trainboard compare SWEEP` (issue 13, items 4 and 6).

Two real sweeps of the tiny job, run once for the module through the CLI: the first (two
members, no baseline yet) passes; the second (a 2×2 grid, two members whose job fails)
compares with the first's best and fails its gates. The live-sweep test writes a
sweep.json with SweepStore next to member runs made with RunStore.create, as the
controller does, and moves it on between reloads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import make_tiny_repo, run_cli
from textual.widgets import DataTable, Static

from trainboard.backend.compare import Comparison, ComparisonRow
from trainboard.backend.config import load_config
from trainboard.backend.store import RunRecord, RunStatus, RunStore
from trainboard.backend.sweep_record import MemberInfo, SweepData, SweepStore, member_link
from trainboard.tui import sweep_rows
from trainboard.tui.cli import main
from trainboard.tui.runs_app import make_runs_app
from trainboard.tui.screens.run_detail import RunDetailScreen
from trainboard.tui.screens.runs import RunsScreen

SIZE = (180, 30)
# The tests that read the module's two real sweeps stay on one xdist worker (one fixture run).
on_swept = pytest.mark.xdist_group("sweep_runs")


@dataclass
class Swept:
    repo: Path
    passed: SweepData  # two members, no baseline: exit 0
    failed: SweepData  # a 2×2 grid against the first's best: two gate-failed, two job-failed, exit 1
    runs: dict[str, RunRecord]

    def members(self, data: SweepData) -> list[str]:
        return [m.run_id for m in data.members]


def sweep(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["run", "tb.yaml", "--no-tui", *args], cwd=repo, timeout=600)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> Swept:
    repo = make_tiny_repo(tmp_path_factory.mktemp("sweeps") / "repo")
    (repo / ".trainboard").mkdir()
    shutil.copy(empty_mlflow_db, repo / ".trainboard" / "mlflow.db")
    first = sweep(repo, "--sweep", "params.base_f1=0.5,0.8")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = sweep(repo, "--sweep", "params.base_f1=0.6,0.7", "--sweep", "params.exit_code=0,3",
                   "--set", "sweep.max_parallel=4")
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    store = RunStore(repo / ".trainboard")
    passed, failed = SweepStore(store.root).all()
    assert [len(passed.members), len(failed.members)] == [2, 4]
    return Swept(repo, passed, failed, {r.run_id: r for r in store.all()})


def cli(swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(swept.repo)
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def line_of(out: str, text: str) -> str:
    return next(x for x in out.splitlines() if text in x)


def flat(out: str) -> str:
    """The printed table's cells as one line: a cell folded over lines reads whole."""
    return " ".join(out.replace("│", " ").split())


def member(data: SweepData, **values: str) -> MemberInfo:
    return next(m for m in data.members if m.values == {f"params.{k}": v for k, v in values.items()})


# ---------------------------------------------------------------- trainboard runs


@on_swept
def test_runs_shows_a_sweep_as_one_row_in_place_of_its_members(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(swept, monkeypatch, capsys, "runs", "--no-tui")
    assert code == 0
    for run_id in swept.runs:
        assert run_id not in out
    # Newest first: the failed sweep started last.
    assert out.index(swept.failed.sweep_id) < out.index(swept.passed.sweep_id)
    passed = line_of(out, swept.passed.sweep_id)
    assert "succeeded" in passed and "2 members: 2 succeeded" in passed and "F1 1.0000" in passed
    failed = line_of(out, swept.failed.sweep_id)
    assert "gate-failed" in failed and "4 members: 4 failed" in failed and "F1 0.9000 (-0.1000)" in failed
    # The verdict (folded in its column): the best member's values, its objective, the cost.
    text = flat(out)
    assert "best: params.base_f1=0.8 · f1 1.0000 · gates passed · cost $0.00" in text
    assert "best: params.base_f1=0.7 params.exit_code=0 · f1 0.9000 (-0.1000 vs main) · gates failed" in text
    assert "kept in 6 runs (2 sweeps)" in out


@on_swept
def test_runs_expand_and_runs_sweep_list_the_members_under_their_sweep(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(swept, monkeypatch, capsys, "runs", "--expand", "--no-tui")
    assert code == 0
    lines = out.splitlines()
    for data in (swept.failed, swept.passed):
        at = lines.index(line_of(out, data.sweep_id))
        under = [line_of(out, run_id) for run_id in swept.members(data)]
        assert [lines.index(x) for x in under] == sorted(lines.index(x) for x in under)
        assert all(lines.index(x) > at for x in under)
        for m, text in zip(data.members, under, strict=True):
            assert ("└ " if m.index == len(data.members) - 1 else "├ ") + m.run_id in text
            assert sweep_rows.values_label(m.values) in text  # the member's values for a name
    assert out.index(swept.members(swept.failed)[-1]) < out.index(swept.passed.sweep_id)

    # One sweep by a prefix of its id: it alone, its members under it.
    code, out, _ = cli(swept, monkeypatch, capsys, "runs", swept.passed.sweep_id[:-2])
    assert code == 0
    assert swept.passed.sweep_id in out and swept.failed.sweep_id not in out
    assert all(run_id in out for run_id in swept.members(swept.passed))
    assert not any(run_id in out for run_id in swept.members(swept.failed))
    code, _, err = cli(swept, monkeypatch, capsys, "runs", "sweep-nope")
    assert code == 2 and "no sweep matching 'sweep-nope'" in err


@on_swept
def test_runs_json_links_each_member_to_its_sweep_and_prints_one_sweep_whole(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(swept, monkeypatch, capsys, "runs", "--json")
    assert code == 0
    records = json.loads(out)
    assert {r["run_id"] for r in records} == set(swept.runs)
    links = {r["run_id"]: r["sweep"] for r in records}
    for data in (swept.passed, swept.failed):
        for m in data.members:
            link = links[m.run_id]
            assert (link["id"], link["index"], link["values"]) == (data.sweep_id, m.index, m.values)
            assert (link["status"], link["best"], link["verdict"]) == (data.status, data.best, data.verdict)
            assert link["is_best"] is (m.index == data.best)

    code, out, _ = cli(swept, monkeypatch, capsys, "runs", swept.failed.sweep_id, "--json")
    assert code == 0
    whole = json.loads(out)
    assert whole["sweep_id"] == swept.failed.sweep_id and whole["status"] == "gate-failed"
    assert [m["status"] for m in whole["members"]] == [m.status for m in swept.failed.members]
    assert sorted(r["run_id"] for r in whole["runs"]) == sorted(swept.members(swept.failed))


# ---------------------------------------------------------------- trainboard compare SWEEP


@on_swept
def test_compare_sweep_prints_the_members_and_passes_with_the_best(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(swept, monkeypatch, capsys, "compare", swept.passed.sweep_id)
    assert code == 0, out
    best = member(swept.passed, base_f1="0.8")
    assert out.startswith(f"sweep {swept.passed.sweep_id} · main @ ")
    assert "params.base_f1" in out and "Δ vs main" in out and "Gates" in out
    row = line_of(out, best.run_id)
    assert "0.8" in row and "succeeded ★" in row and "1.0000" in row and "pass" in row
    assert "0.7000" in line_of(out, member(swept.passed, base_f1="0.5").run_id)
    assert f"best member: run {best.run_id}" in out and "Comparison with main" in out
    assert out.rstrip().splitlines()[-1].startswith("best: params.base_f1=0.8 · F1 1.0000")
    assert "gates passed" in out.rstrip().splitlines()[-1]


@on_swept
def test_compare_sweep_exits_with_the_best_members_gates(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Without "sweep-": an id that names no run but a sweep.
    code, out, _ = cli(swept, monkeypatch, capsys, "compare", swept.failed.sweep_id.removeprefix("sweep-"))
    assert code == 1, out  # as the sweep exited
    best = member(swept.failed, base_f1="0.7", exit_code="0")
    row = line_of(out, best.run_id)
    assert "gate-failed ★" in row and "0.9000" in row and "-0.1000" in row and "FAIL (F1)" in row
    for m in swept.failed.members:
        if m.values["params.exit_code"] == "3":
            assert "job-failed" in line_of(out, m.run_id) and "—" in line_of(out, m.run_id)
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("best: params.base_f1=0.7 params.exit_code=0 · F1 0.9000 (-0.1000 vs main)")
    assert last.endswith("gates failed")


@on_swept
def test_compare_a_run_id_compares_the_run_and_an_unknown_sweep_is_refused(
        swept: Swept, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = member(swept.passed, base_f1="0.5").run_id
    code, out, _ = cli(swept, monkeypatch, capsys, "compare", run_id)
    assert code in (0, 1) and out.startswith(f"run {run_id} · main @ ") and "sweep " not in out
    code, _, err = cli(swept, monkeypatch, capsys, "compare", "sweep-nope")
    assert code == 2 and "no sweep matching 'sweep-nope'" in err


# ---------------------------------------------------------------- the runs screen


def rows(screen: RunsScreen) -> list[dict[str, str]]:
    table = screen.query_one(DataTable)
    keys = [column.key.value for column in table.ordered_columns]
    return [dict(zip(keys, (cell.plain for cell in table.get_row_at(i)), strict=True))
            for i in range(table.row_count)]


def hint(screen: RunsScreen) -> str:
    return str(screen.query_one("#runs-hint", Static).render())


def footer_keys(screen: RunsScreen) -> set[str]:
    return {binding.description for _, binding, _, _ in screen.active_bindings.values() if binding.show}


@on_swept
async def test_the_runs_screen_expands_a_sweep_into_its_members_and_opens_one(swept: Swept) -> None:
    app = make_runs_app(RunStore(swept.repo / ".trainboard"))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert [r["run"] for r in rows(screen)] == [f"▸ {swept.failed.sweep_id}", f"▸ {swept.passed.sweep_id}"]
        first = rows(screen)[0]
        assert (first["status"], first["metric"]) == ("✗ gate-failed", "F1 0.9000 (-0.1000)")
        assert first["verdict"].startswith("4 members: 4 failed · best: params.base_f1=0.7 params.exit_code=0")
        assert str(screen.query_one(DataTable).border_subtitle) == "6 runs · 2 sweeps"
        assert "Expand/collapse sweep" in footer_keys(screen)
        assert hint(screen).endswith("enter: lists its members")

        await pilot.press("down", "enter")  # the passed sweep opens under its row
        listed = rows(screen)
        assert [r["run"] for r in listed] == [f"▸ {swept.failed.sweep_id}", f"▾ {swept.passed.sweep_id}",
                                              *(f" {mark} {m.run_id}" for mark, m in
                                                zip("├└", swept.passed.members, strict=True))]
        assert listed[3]["status"] == "✓ succeeded" and listed[3]["verdict"].startswith("params.base_f1=0.8: PASS")
        assert screen.query_one(DataTable).cursor_row == 1

        await pilot.press("down", "down", "enter")  # a member opens as a run
        detail = app.screen
        assert isinstance(detail, RunDetailScreen) and detail.record.run_id == swept.passed.members[1].run_id
        summary = str(detail.query_one("#run-summary", Static).render())
        assert f"sweep {swept.passed.sweep_id} · member #1 · params.base_f1=0.8" in summary
        await pilot.press("escape")
        assert app.screen is screen

        await pilot.press("space")  # on a member: its sweep folds, the cursor on the sweep's row
        assert len(rows(screen)) == 2 and screen.query_one(DataTable).cursor_row == 1
        await pilot.press("up", "space")
        assert [r["run"][:3] for r in rows(screen)] == ["▾ s", " ├ ", " ├ ", " ├ ", " └ ", "▸ s"]
        assert [r["status"] for r in rows(screen)[1:5]].count("✗ job-failed") == 2


def comparison(after: float) -> dict[str, Any]:
    rows = (ComparisonRow("f1", "F1", "max", 4, 0.8, after, "Δ ≥ -0.005", after >= 0.795),)
    return Comparison("main", "mlflow-run", "main @ 1a2b3c4", rows, True).to_dict()


async def test_a_live_sweep_ticks_and_its_members_appear_as_they_start(tmp_path: Path) -> None:
    repo = make_tiny_repo(tmp_path / "repo")
    raw = load_config(repo / "tb.yaml").raw
    store = RunStore(repo / ".trainboard")
    sweeps = SweepStore(store.root)
    values = [{"params.lr": "1e-4"}, {"params.lr": "5e-05"}]
    parent = os.getppid()  # a live trainboard for the running members

    def start(index: int, **fields: Any) -> RunRecord:
        return store.create(f"m{index}", status=RunStatus.RUNNING, created_at=time.time(), config=raw,
                            branch="feat", commit="1a2b3c4d", trainboard_pid=parent,
                            sweep=member_link("sweep-live", index, values[index]), **fields)

    # A member whose sweep has no record (yet): a run of its own.
    start(0)
    app = make_runs_app(store)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert [r["run"] for r in rows(screen)] == ["m0"]
        assert "Expand/collapse sweep" not in footer_keys(screen)

        data = SweepData(sweep_id="sweep-live", created_at=time.time() - 65, name="tiny", branch="feat",
                         commit="1a2b3c4d", params=["params.lr"], objective="f1", max_cost_usd=5.0, members=[
                             MemberInfo(index=0, values=values[0], run_id="m0", status="running", stage="train"),
                             MemberInfo(index=1, values=values[1])])
        sweeps.save(data)
        screen.reload()
        (row,) = rows(screen)
        assert row["run"] == "▸ sweep-live" and row["status"] == "● running"
        assert row["took"].startswith("running 1m") and row["cost"] == "$0.00 of $5.00"
        assert row["verdict"] == "2 members: 1 running, 1 queued · running: no member has a result yet"
        assert "Expand/collapse sweep" in footer_keys(screen)
        await pilot.press("space")
        assert [r["run"] for r in rows(screen)] == ["▾ sweep-live", " ├ m0", " └ #1"]
        assert rows(screen)[2]["status"] == "○ queued"
        await pilot.press("down", "down")
        assert hint(screen) == "#1 params.lr=5e-05: queued, no run yet"
        await pilot.press("enter")  # nothing to open yet
        assert app.screen is screen

        # Member 0 ends, member 1 starts: its row shows its run, the sweep its best so far.
        store.load("m0").update(status=RunStatus.SUCCEEDED, comparison=comparison(0.9), verdict="PASS",
                                gates_passed=True, duration=30.0)
        start(1)
        data.members[0] = data.members[0].model_copy(update={"status": "succeeded", "objective": 0.9,
                                                             "delta": 0.1, "passed": True, "cost": 0.25})
        data.members[1] = data.members[1].model_copy(update={"status": "running", "run_id": "m1"})
        data.cost = 0.25
        sweeps.save(data)
        screen.reload()
        sweep_row, first, second = rows(screen)
        assert sweep_row["metric"] == "F1 0.9000 (+0.1000)" and sweep_row["cost"] == "$0.25 of $5.00"
        assert sweep_row["verdict"] == "2 members: 1 succeeded, 1 running · best so far: params.lr=1e-4"
        assert first["status"] == "✓ succeeded" and first["verdict"] == "params.lr=1e-4: PASS"
        assert (second["run"], second["status"]) == (" └ m1", "● running")
        assert screen.query_one(DataTable).cursor_row == 2 and hint(screen).startswith("● m1: running")

        # The sweep ends: its verdict, what it took; nothing is live, so nothing is read again.
        store.load("m1").update(status=RunStatus.GATE_FAILED, comparison=comparison(0.7), gates_passed=False,
                                verdict="FAIL: gate failed for F1", duration=20.0)
        data.members[1] = data.members[1].model_copy(update={"status": "gate-failed", "objective": 0.7,
                                                             "delta": -0.1, "passed": False})
        data = data.model_copy(update={"status": "succeeded", "exit_code": 0, "best": 0,
                                       "finished_at": data.created_at + 90,
                                       "verdict": "best: params.lr=1e-4 · f1 0.9000 (+0.1000 vs main) · gates passed"})
        sweeps.save(data)
        screen.reload()
        sweep_row = rows(screen)[0]
        assert sweep_row["status"] == "✓ succeeded" and sweep_row["took"] == "1m30s"
        assert sweep_row["verdict"] == ("2 members: 1 succeeded, 1 failed · "
                                        "best: params.lr=1e-4 · f1 0.9000 (+0.1000 vs main) · gates passed")
        assert rows(screen)[2]["status"] == "✗ gate-failed"


def test_members_are_counted_by_how_they_stand() -> None:
    statuses = ["succeeded", "gate-failed", "job-failed", "running", "queued", "queued", "skipped", "cancelled"]
    data = SweepData(sweep_id="sweep-x", members=[MemberInfo(index=i, values={}, status=s)
                                                  for i, s in enumerate(statuses)])
    assert sweep_rows.members_text(data) == ("8 members: 1 succeeded, 2 failed, 1 running, 2 queued, "
                                             "1 cancelled, 1 skipped")
    assert sweep_rows.members_text(SweepData(sweep_id="sweep-y")) == "0 members"

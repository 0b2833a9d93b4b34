"""`trainboard prune`: which run folders go (keep-last, older-than), live runs never, sizes, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainboard.backend import prune as prune_mod
from trainboard.backend.prune import choose, folder_bytes, format_bytes, parse_when, prune
from trainboard.backend.store import RunStatus, RunStore
from trainboard.tui.cli import main

DAY = 86400.0
NOW = time.time()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_run(store: RunStore, run_id: str, status: RunStatus, age_days: float, payload: int = 1000,
             **fields: object) -> Path:
    record = store.create(run_id, status=status, created_at=NOW - age_days * DAY, **fields)
    (record.path / "logs").mkdir()
    (record.path / "logs" / "job.log").write_bytes(b"x" * payload)
    (record.path / "model.bin").write_bytes(b"m" * (2 * payload))
    return record.path


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, RunStore, dict[str, Path]]:
    """A folder with eight runs, oldest first: every kind of status."""
    store = RunStore(tmp_path / ".trainboard")
    runs = {
        "r1-succeeded": make_run(store, "r1-succeeded", RunStatus.SUCCEEDED, 30),
        "r2-alive": make_run(store, "r2-alive", RunStatus.RUNNING, 25, trainboard_pid=os.getpid()),
        "r3-crashed": make_run(store, "r3-crashed", RunStatus.RUNNING, 20, trainboard_pid=dead_pid()),
        "r4-detached": make_run(store, "r4-detached", RunStatus.DETACHED, 15),
        "r5-job-failed": make_run(store, "r5-job-failed", RunStatus.JOB_FAILED, 10),
        "r6-gate-failed": make_run(store, "r6-gate-failed", RunStatus.GATE_FAILED, 5),
        "r7-cancelled": make_run(store, "r7-cancelled", RunStatus.CANCELLED, 2),
        "r8-error": make_run(store, "r8-error", RunStatus.ERROR, 0.1),
    }
    return tmp_path, store, runs


def ids(store: RunStore, **kw: object) -> list[str]:
    return [p.run_id for p in choose(store, **kw)]  # type: ignore[arg-type]


def test_parse_when_durations_and_dates() -> None:
    assert parse_when("7d", now=1000.0 + 7 * DAY) == 1000.0
    assert parse_when("12h", now=50000.0) == 50000.0 - 12 * 3600
    assert parse_when("30m", now=5000.0) == 5000.0 - 1800
    assert parse_when("2w", now=2e6) == 2e6 - 14 * DAY
    assert parse_when("2026-01-31T00:00:00+00:00") == 1769817600.0
    assert parse_when("2026-01-31") == parse_when("2026-01-31T00:00")
    for bad in ("soon", "7", "7y", ""):
        with pytest.raises(ValueError, match="duration like 7d"):
            parse_when(bad)


def test_keep_last_never_prunes_live_runs(repo: tuple[Path, RunStore, dict[str, Path]]) -> None:
    _, store, _ = repo
    # The 3 newest stay; of the older ones, the live (running with this pid, detached) stay too.
    assert ids(store, keep_last=3) == ["r1-succeeded", "r3-crashed", "r5-job-failed"]
    assert ids(store, keep_last=0) == ["r1-succeeded", "r3-crashed", "r5-job-failed", "r6-gate-failed",
                                       "r7-cancelled", "r8-error"]
    assert ids(store, keep_last=100) == []


def test_older_than_and_both(repo: tuple[Path, RunStore, dict[str, Path]]) -> None:
    _, store, _ = repo
    assert ids(store, older_than=NOW - 12 * DAY) == ["r1-succeeded", "r3-crashed"]
    assert ids(store, older_than=parse_when("3d")) == ["r1-succeeded", "r3-crashed", "r5-job-failed",
                                                       "r6-gate-failed"]
    # Both: a run must be outside the newest 7 AND older than 12 days.
    assert ids(store, keep_last=7, older_than=NOW - 12 * DAY) == ["r1-succeeded"]
    with pytest.raises(ValueError, match="--keep N and/or --older-than"):
        choose(store)


def test_sizes_are_the_bytes_of_the_folder(repo: tuple[Path, RunStore, dict[str, Path]]) -> None:
    _, store, runs = repo
    path = runs["r1-succeeded"]
    files = [p for p in path.rglob("*") if p.is_file()]
    assert folder_bytes(path) == sum(p.stat().st_size for p in files)
    assert folder_bytes(path) >= 3000 + 256 * 1024  # the payload and the run's reserve
    chosen = {p.run_id: p.size for p in choose(store, keep_last=0)}
    assert chosen["r1-succeeded"] == folder_bytes(path)
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024 * 1024) == "3.0 MB"


def test_dry_run_deletes_nothing(repo: tuple[Path, RunStore, dict[str, Path]]) -> None:
    tmp, _, runs = repo
    lines: list[str] = []
    assert prune(tmp / ".trainboard", 0, None, True, lines.append) == 0
    assert all(path.is_dir() for path in runs.values())
    assert sum(line.startswith("would prune") for line in lines) == 6
    assert "nothing was deleted" in lines[-1]


def test_prune_deletes_only_run_folders(repo: tuple[Path, RunStore, dict[str, Path]]) -> None:
    tmp, store, runs = repo
    mlflow = tmp / ".trainboard" / "mlflow"
    mlflow.mkdir()
    (mlflow / "mlflow.db").write_text("keep me")
    sizes = {p.run_id: p.size for p in choose(store, older_than=NOW - 12 * DAY)}
    lines: list[str] = []
    assert prune(tmp / ".trainboard", None, "12d", False, lines.append) == 0
    assert not runs["r1-succeeded"].exists() and not runs["r3-crashed"].exists()
    assert all(runs[k].is_dir() for k in runs if k not in sizes)
    assert (mlflow / "mlflow.db").read_text() == "keep me"
    assert lines[0].split() == ["pruned", "r1-succeeded", "succeeded", *format_bytes(sizes["r1-succeeded"]).split()]
    assert lines[-1] == f"total: 2 run(s) pruned, {format_bytes(sum(sizes.values()))} freed"


def test_symlinks_inside_a_run_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("precious")
    store = RunStore(tmp_path / ".trainboard")
    path = make_run(store, "old", RunStatus.SUCCEEDED, 10)
    (path / "file-link").symlink_to(outside / "data.txt")
    (path / "dir-link").symlink_to(outside, target_is_directory=True)
    (path / "logs" / "up").symlink_to(tmp_path)
    size = folder_bytes(path)
    assert size < 4000 + 256 * 1024 + 1000  # the links' own sizes, not their targets'
    lines: list[str] = []
    assert prune(store.root, 0, None, False, lines.append) == 0
    assert not path.exists() and not path.is_symlink()
    assert (outside / "data.txt").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["data.txt"]


def test_a_symlinked_run_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = RunStore(tmp_path / "elsewhere")
    target = make_run(elsewhere, "far", RunStatus.SUCCEEDED, 10)
    store = RunStore(tmp_path / ".trainboard")
    store.runs.mkdir(parents=True)
    (store.runs / "far").symlink_to(target, target_is_directory=True)
    lines: list[str] = []
    assert prune(store.root, 0, None, False, lines.append) == 0
    assert (target / "model.bin").exists() and (store.runs / "far").is_symlink()
    assert lines[0].startswith("skipped     far:") and "symlink" in lines[0]
    assert lines[-1].startswith("total: 0 run(s) pruned")


def test_pid_check_is_reaps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # prune asks trainboard.backend.reap whether a running record's trainboard is alive.
    store = RunStore(tmp_path / ".trainboard")
    make_run(store, "run", RunStatus.RUNNING, 10, trainboard_pid=os.getpid())
    assert ids(store, keep_last=0) == []
    from trainboard.backend import reap

    monkeypatch.setattr(reap, "pid_alive", lambda pid: False)
    assert ids(store, keep_last=0) == ["run"]
    assert prune_mod.is_live(store.load("run")) is False


def test_cli_end_to_end(repo: tuple[Path, RunStore, dict[str, Path]], monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _, runs = repo
    monkeypatch.chdir(tmp)
    assert main(["prune"]) == 2
    out = capsys.readouterr().out
    assert "--keep N and/or --older-than" in out and "nothing deleted" in out
    assert main(["prune", "--older-than", "someday"]) == 2
    assert "duration like 7d" in capsys.readouterr().out
    assert all(path.is_dir() for path in runs.values())

    assert main(["prune", "--keep", "3", "--dry-run"]) == 0
    assert "would prune" in capsys.readouterr().out
    assert all(path.is_dir() for path in runs.values())

    assert main(["prune", "--keep", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[:-1]] == [
        ["pruned", "r1-succeeded", "succeeded"], ["pruned", "r3-crashed", "running"],
        ["pruned", "r5-job-failed", "job-failed"]]
    assert lines[-1].startswith("total: 3 run(s) pruned, ")
    assert sorted(p.name for p in (tmp / ".trainboard" / "runs").iterdir()) == [
        "r2-alive", "r4-detached", "r6-gate-failed", "r7-cancelled", "r8-error"]

    assert main(["runs", "--no-tui"]) == 0
    table = capsys.readouterr().out
    assert "Size" in table and "kept in 5 runs" in table and "r8-error" in table

"""`trainboard prune`: delete old run folders (``.trainboard/runs/<id>/``) to free disk.

Runs are chosen by ``keep_last`` (keep the N newest runs, prune the rest) and/or
``older_than`` (a date, or a duration such as ``7d`` or ``12h`` before now); with
both, a run is pruned only when both select it. A live run is never pruned: one
"running" whose trainboard process is still alive (see trainboard.backend.reap.pid_alive),
or "detached" (its job may still be running on a host).

Deleting removes the run's folder only, never the MLflow store or anything else; a run
folder that is a symlink, or resolves outside the runs folder, is refused, and symlinks
inside a folder are removed as links, their targets left alone.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend.store import RunRecord, RunStatus, RunStore

OK, USAGE = 0, 2  # exit codes
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Pruned:
    """A run chosen for pruning: its id, status, folder and size in bytes."""

    run_id: str
    status: str
    path: Path
    size: int


def parse_when(text: str, now: float | None = None) -> float:
    """The cut-off time (epoch seconds) for ``--older-than``: a duration before ``now``
    (``30m``, ``12h``, ``7d``, ``2w``) or an ISO date or date-time (local time unless it says).

    Raises ValueError with a message for people when ``text`` is neither."""
    now = time.time() if now is None else now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--older-than {text!r}: give a duration like 7d, 12h, 30m, 2w "
                         "or a date like 2026-01-31 (or 2026-01-31T12:00)") from None
    return when.timestamp()  # naive: local time


def folder_bytes(path: Path) -> int:
    """The bytes of everything under ``path`` (files and links counted as themselves, never followed)."""
    total = 0
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in (*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))):
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                continue
    return total


def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def is_live(record: RunRecord) -> bool:
    """Whether the run may still be going: detached, or running with its trainboard alive."""
    from trainboard.backend.reap import pid_alive  # botocore: only when a run is asked about

    if record.status is RunStatus.DETACHED:
        return True
    return record.status is RunStatus.RUNNING and pid_alive(record.trainboard_pid)


def _created(record: RunRecord) -> float:
    if record.created_at is not None:
        return float(record.created_at)
    try:
        return (record.path / "record.json").stat().st_mtime
    except OSError:
        return time.time()  # unknown: never old enough


def choose(store: RunStore, keep_last: int | None = None, older_than: float | None = None) -> list[Pruned]:
    """The runs to prune, oldest first: outside the ``keep_last`` newest and/or created
    before ``older_than`` (epoch seconds), never a live one."""
    if keep_last is None and older_than is None:
        raise ValueError("give --keep N and/or --older-than WHEN")
    if keep_last is not None and keep_last < 0:
        raise ValueError("--keep must be 0 or more")
    records = sorted(store.all(), key=lambda r: (_created(r), r.run_id))
    kept_newest = {r.run_id for r in records[len(records) - keep_last:]} if keep_last else set()
    chosen = []
    for record in records:
        if keep_last is not None and record.run_id in kept_newest:
            continue
        if older_than is not None and _created(record) >= older_than:
            continue
        if is_live(record):
            continue
        chosen.append(Pruned(record.run_id, str(record.status or "?"), record.path, folder_bytes(record.path)))
    return chosen


def delete_run(store: RunStore, path: Path) -> None:
    """Remove one run folder; refuse a symlinked folder or one outside ``store.runs``."""
    if path.is_symlink():
        raise OSError(f"{path} is a symlink: not followed, not deleted")
    real = path.resolve()
    if real.parent != store.runs.resolve():
        raise OSError(f"{path} resolves outside {store.runs}: not deleted")
    shutil.rmtree(real)  # removes links inside as links, never what they point to


def prune(root: Path, keep_last: int | None, older_than: str | None, dry_run: bool,
          echo: Callable[[str], None]) -> int:
    """The `trainboard prune` command; ``root``: the .trainboard folder. Returns 0, or 2 on bad options."""
    store = RunStore(Path(root))
    try:
        cutoff = None if older_than is None else parse_when(older_than)
        chosen = choose(store, keep_last, cutoff)
    except ValueError as exc:
        echo(f"prune: {exc} (nothing deleted)")
        return USAGE
    verb = "would prune" if dry_run else "pruned"
    freed = done = 0
    for run in chosen:
        if not dry_run:
            try:
                delete_run(store, run.path)
            except OSError as exc:
                echo(f"skipped     {run.run_id}: {exc}")
                continue
        freed += run.size
        done += 1
        echo(f"{verb:<11} {run.run_id}  {run.status:<12} {format_bytes(run.size):>10}")
    if dry_run:
        echo(f"total: {done} run(s), {format_bytes(freed)} would be freed (dry run: nothing was deleted)")
    else:
        echo(f"total: {done} run(s) pruned, {format_bytes(freed)} freed")
    return OK

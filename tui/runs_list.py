"""The runs list that `trainboard runs --no-tui` prints and the runs screen shows.

Both take their order (newest first) and their cells from here: the time (what a run took,
or "running 13m05s" while it goes on), the primary metric (the first of the config's
``metrics``, with its delta against the baseline when the run was compared) and the
verdict (or, for a live run, what it is doing).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table
from rich.text import Text

from trainboard.backend.store import RunRecord, RunStatus
from trainboard.backend.sweep_record import SweepData, SweepStore
from trainboard.tui import run_files, sweep_rows
from trainboard.tui.render import plural

if TYPE_CHECKING:
    from trainboard.backend.store import RunStore

Tone = Literal["good", "bad", "live", "muted", ""]
# The colour of each tone in the printed table (the screen maps tones to theme variables).
RICH_TONES: dict[str, str] = {"good": "green", "bad": "red", "live": "yellow", "muted": "dim", "": ""}
# The colour of each status in the printed table.
STATUS_STYLES = {RunStatus.SUCCEEDED: "green", RunStatus.GATE_FAILED: "red", RunStatus.JOB_FAILED: "red",
                 RunStatus.CONFIG_ERROR: "red", RunStatus.ERROR: "red", RunStatus.RUNNING: "yellow",
                 RunStatus.CANCELLED: "magenta", RunStatus.DETACHED: "cyan"}
METRIC_TAIL_LINES = 500  # how much of metrics.jsonl is read for a run that was never compared


def newest_first(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The runs, the most recently started first (by the record's start time, then its id)."""
    return sorted(records, key=lambda r: (r.created_at or 0.0, r.run_id), reverse=True)


@dataclass(frozen=True)
class Primary:
    """The run's primary metric: its name, value and delta against the baseline."""

    name: str
    value: str  # "0.9000", or "—" when the run has none yet
    delta: str = ""  # "+0.1000": only when the run was compared with a baseline
    better: bool | None = None  # whether the delta is an improvement for the metric's goal

    @property
    def text(self) -> str:
        return f"{self.name} {self.value}" + (f" ({self.delta})" if self.delta else "")

    @property
    def tone(self) -> Tone:
        return "" if self.better is None else ("good" if self.better else "bad")


def _spec(record: RunRecord) -> tuple[str, dict[str, Any]] | None:
    metrics = record.config.get("metrics") if isinstance(record.config, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        return None
    key = next(iter(metrics))
    spec = metrics[key]
    return str(key), spec if isinstance(spec, dict) else {}


def _last_value(record: RunRecord, key: str) -> float | None:
    """The metric's latest value in the run's metrics.jsonl (its last lines only)."""
    from trainboard.backend.metrichistory import METRICS_FILE
    from trainboard.backend.report import tail_lines

    for line in reversed(tail_lines(record.path / METRICS_FILE, METRIC_TAIL_LINES)):
        try:
            point = json.loads(line)
            if point["key"] == key:
                return float(point["value"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def primary_metric(record: RunRecord) -> Primary | None:
    """The first metric of the run's config, as compared (value after, delta) or as last logged."""
    found = _spec(record)
    if found is None:
        return None
    key, spec = found
    name = str(spec.get("display") or key)
    digits = spec.get("digits", 4) if isinstance(spec.get("digits", 4), int) else 4
    comp = run_files.saved_comparison(record).comparison
    row = next((r for r in comp.rows if r.key == key), None) if comp else None
    if row is not None and row.after is not None:
        delta = row.fmt(row.delta, signed=True) if row.delta is not None else ""
        return Primary(name, row.fmt(row.after), delta, row.improved)
    value = _last_value(record, key)
    return Primary(name, "—" if value is None else f"{value:.{digits}f}")


def verdict(record: RunRecord) -> tuple[str, Tone]:
    """The verdict and its tone; for a live run, what it is doing instead."""
    if run_files.is_live(record) and not record.verdict:
        return run_files.live_text(record), "live" if run_files.is_running(record) else "muted"
    if not record.verdict:
        return "—", "muted"
    passed = record.gates_passed
    return record.verdict, "muted" if passed is None else ("good" if passed else "bad")


def runs_table(records: list[RunRecord], sizes: dict[str, int] | None = None, now: float | None = None,
               sweeps: list[SweepData] | None = None, expand: bool = False) -> Table:
    """The runs, newest first, one a row; with ``sizes`` (bytes per run or sweep id) a Size column and
    the total kept. A sweep (``sweeps``) is one row in place of its members, listed under it with ``expand``."""
    from trainboard.backend.prune import format_bytes

    now = time.time() if now is None else now
    table = Table(title="trainboard runs", title_justify="left")
    for name in ("Run", "Name", "Status", "Branch", "Commit", "Job"):
        table.add_column(name, no_wrap=True)
    table.add_column("Time", no_wrap=True, justify="right")
    if sizes is not None:
        table.add_column("Size", no_wrap=True, justify="right")
        kept = f" ({plural(len(sweeps), 'sweep')})" if sweeps else ""
        table.caption = f"{format_bytes(sum(sizes.values()))} kept in {plural(len(records), 'run')}{kept}"
        table.caption_justify = "left"
    table.add_column("Metric", no_wrap=True)
    table.add_column("Verdict", overflow="fold", ratio=1)
    for entry in sweep_rows.group(records, sweeps or []):
        if isinstance(entry, sweep_rows.SweepGroup):
            table.add_row(*_sweep_row(entry, sizes, now))
            if expand:
                for row in _member_rows(entry, sizes, now):
                    table.add_row(*row)
        else:
            table.add_row(*_run_row(entry, sizes, now))
    return table


def _size(sizes: dict[str, int] | None, *keys: str) -> list[str]:
    from trainboard.backend.prune import format_bytes

    return [] if sizes is None else [format_bytes(sum(sizes.get(key, 0) for key in keys))]


def _run_row(record: RunRecord, sizes: dict[str, int] | None, now: float) -> list[Any]:
    status = record.status
    job = record.job_exit_code
    primary = primary_metric(record)
    said, tone = verdict(record)
    return [
        record.run_id,
        record.name,
        Text(str(status or "?"), style=STATUS_STYLES.get(status, "") if status else ""),
        record.branch,
        record.commit[:7] + ("*" if record.dirty else ""),
        "—" if job is None else f"exit {job}",
        run_files.duration_text(record, now),
        *_size(sizes, record.run_id),
        Text("—") if primary is None else Text(primary.text, style=RICH_TONES[primary.tone]),
        Text(said, style=RICH_TONES[tone]),
    ]


def _sweep_row(found: sweep_rows.SweepGroup, sizes: dict[str, int] | None, now: float) -> list[Any]:
    """The sweep's row: its members counted (Job), the best member's objective (Metric), its cost and
    verdict naming the best member's values (Verdict)."""
    data = found.data
    best, best_tone = sweep_rows.best_text(found)
    said, tone = sweep_rows.verdict_text(data)
    members = [r.run_id for r in found.runs]
    return [
        data.sweep_id,
        data.name,
        Text(data.status, style=status_style(data.status)),
        data.branch,
        data.commit[:7],
        sweep_rows.members_text(data),
        sweep_rows.duration_text(data, now),
        *_size(sizes, data.sweep_id, *members),
        Text(best, style=RICH_TONES[best_tone]),
        Text(f"{said} · cost {sweep_rows.cost_text(data)}", style=RICH_TONES[tone]),
    ]


def status_style(status: str) -> str:
    known = next((s for s in RunStatus if s == status), None)
    return STATUS_STYLES.get(known, "") if known else "dim"  # queued, skipped


def _member_rows(found: sweep_rows.SweepGroup, sizes: dict[str, int] | None, now: float) -> list[list[Any]]:
    """The sweep's members, indented under its row: each one's run row with its values for a name;
    a member with no run yet (queued, skipped) with its status and why."""
    rows = []
    objective = sweep_rows.objective_of(found)
    for n, member in enumerate(found.data.members):
        branch = "└" if n == len(found.data.members) - 1 else "├"
        label = sweep_rows.values_label(member.values)
        record = found.run_of(member)
        if record is not None:
            row = _run_row(record, sizes, now)
            row[0], row[1] = f" {branch} {record.run_id}", label
        else:
            row = [f" {branch} #{member.index}", label, Text(member.status, style="dim"), "", "", "—", "—",
                   *_size(sizes), Text(objective.text(member) if member.objective is not None else "—"),
                   Text(member.reason or "not started", style="dim")]
        rows.append(row)
    return rows


def runs_command(store: RunStore, as_json: bool = False, no_tui: bool = False,
                 expand: bool = False, sweep: str | None = None) -> int:
    """`trainboard runs`: the runs screen on a terminal; else the list printed (or as JSON), newest first.

    A sweep is one row, its members under it with ``expand``; ``sweep`` (an id or prefix) lists that
    sweep alone, its members under it."""
    if not (as_json or no_tui or sweep) and sys.stdout.isatty() and sys.stdin.isatty():
        from trainboard.tui.runs_app import make_runs_app

        app = make_runs_app(store)
        app.run()
        return int(app.return_code or 0)
    records = newest_first(store.all())
    sweeps = SweepStore(store.root).all()
    if sweep is not None:
        try:
            chosen = SweepStore(store.root).resolve(sweep)
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        sweeps, expand = [chosen], True
        records = [r for r in records if sweep_rows.sweep_link(r) == chosen.sweep_id]
    if as_json:
        print(json.dumps(_json(records, sweeps, sweep is not None), indent=2, default=str))
        return 0
    return _print_table(store, records, sweeps, expand)


def _json(records: list[RunRecord], sweeps: list[SweepData], one: bool) -> Any:
    """The run records (a member's ``sweep`` link with its sweep's status, verdict and best member);
    for one sweep, its record with its members' run records under ``runs``."""
    from trainboard.backend.redact import Redactor
    from trainboard.backend.store import masked_record

    # Masked again here: records written before masking existed, or in another environment.
    redact = Redactor.from_env().data
    by_id = {s.sweep_id: s for s in sweeps}
    runs = [sweep_rows.json_link(masked_record(r.data, redact), by_id.get(sweep_rows.sweep_link(r)))
            for r in records]
    if one:
        return {**masked_record(sweeps[0].model_dump(mode="json"), redact), "runs": runs}
    return runs


def _print_table(store: RunStore, records: list[RunRecord], sweeps: list[SweepData], expand: bool) -> int:
    from rich.console import Console

    from trainboard.backend.prune import folder_bytes

    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not records and not sweeps:
        console.print("no runs yet: start one with `trainboard run sample_params.yaml`")
        return 0
    sizes = {r.run_id: folder_bytes(r.path) for r in records}
    folders = SweepStore(store.root)
    sizes.update({s.sweep_id: folder_bytes(folders.path(s.sweep_id)) for s in sweeps})
    console.print(runs_table(records, sizes, sweeps=sweeps, expand=expand))
    return 0

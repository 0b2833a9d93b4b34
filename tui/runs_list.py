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
from trainboard.tui import run_files
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


def runs_table(records: list[RunRecord], sizes: dict[str, int] | None = None, now: float | None = None) -> Table:
    """The runs, newest first, one a row; with ``sizes`` (bytes per run id) a Size column and the total kept."""
    from trainboard.backend.prune import format_bytes

    now = time.time() if now is None else now
    records = newest_first(records)
    table = Table(title="trainboard runs", title_justify="left")
    for name in ("Run", "Name", "Status", "Branch", "Commit", "Job"):
        table.add_column(name, no_wrap=True)
    table.add_column("Time", no_wrap=True, justify="right")
    if sizes is not None:
        table.add_column("Size", no_wrap=True, justify="right")
        table.caption = f"{format_bytes(sum(sizes.values()))} kept in {plural(len(records), 'run')}"
        table.caption_justify = "left"
    table.add_column("Metric", no_wrap=True)
    table.add_column("Verdict", overflow="fold", ratio=1)
    for record in records:
        status = record.status
        job = record.job_exit_code
        size = [] if sizes is None else [format_bytes(sizes.get(record.run_id, 0))]
        primary = primary_metric(record)
        said, tone = verdict(record)
        table.add_row(
            record.run_id,
            record.name,
            Text(str(status or "?"), style=STATUS_STYLES.get(status, "") if status else ""),
            record.branch,
            record.commit[:7] + ("*" if record.dirty else ""),
            "—" if job is None else f"exit {job}",
            run_files.duration_text(record, now),
            *size,
            Text("—") if primary is None else Text(primary.text, style=RICH_TONES[primary.tone]),
            Text(said, style=RICH_TONES[tone]),
        )
    return table


def runs_command(store: RunStore, as_json: bool = False, no_tui: bool = False) -> int:
    """`trainboard runs`: the runs screen on a terminal; else the list printed (or as JSON), newest first."""
    if not (as_json or no_tui) and sys.stdout.isatty() and sys.stdin.isatty():
        from trainboard.tui.runs_app import make_runs_app

        app = make_runs_app(store)
        app.run()
        return int(app.return_code or 0)
    records = newest_first(store.all())
    if as_json:
        from trainboard.backend.redact import Redactor
        from trainboard.backend.store import masked_record

        # Masked again here: records written before masking existed, or in another environment.
        redact = Redactor.from_env().data
        print(json.dumps([masked_record(r.data, redact) for r in records], indent=2, default=str))
        return 0
    from rich.console import Console

    from trainboard.backend.prune import folder_bytes

    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not records:
        console.print("no runs yet: start one with `trainboard run sample_params.yaml`")
        return 0
    console.print(runs_table(records, {r.run_id: folder_bytes(r.path) for r in records}))
    return 0

"""Rich renderables shared by the headless view and the CLI's commands."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from trainboard.backend.compare import Comparison
from trainboard.backend.record import RunStatus

if TYPE_CHECKING:
    from trainboard.backend.store import RunRecord

# The colour of each status in `trainboard runs`.
STATUS_STYLES = {RunStatus.SUCCEEDED: "green", RunStatus.GATE_FAILED: "red", RunStatus.JOB_FAILED: "red",
                 RunStatus.ERROR: "red", RunStatus.RUNNING: "yellow", RunStatus.CANCELLED: "magenta",
                 RunStatus.DETACHED: "cyan"}


def comparison_table(comp: Comparison) -> Table:
    title = "Comparison with " + (comp.baseline_label if comp.has_baseline else f"{comp.base_branch} (no baseline yet)")
    table = Table(title=title, title_justify="left", expand=False)
    for name, justify in (("Metric", "left"), ("Before", "right"), ("After", "right"),
                          ("Δ", "right"), ("Gate", "left"), ("Result", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in comp.rows:
        delta = Text(row.fmt(row.delta, signed=True))
        if row.improved is not None:
            delta.stylize("green" if row.improved else "red")
        if row.passed is None:
            result = Text(row.reason or "—", style="dim")
        elif row.passed:
            result = Text("pass" + (f" ({row.reason})" if row.reason else ""), style="green")
        else:
            result = Text(f"FAIL ({row.reason})", style="bold red")
        table.add_row(row.display, row.fmt(row.before), row.fmt(row.after), delta, row.gate or "—", result)
    return table


def verdict_text(comp: Comparison) -> Text:
    return Text(comp.verdict, style="bold green" if comp.passed else "bold red")


def runs_table(records: list[RunRecord], sizes: dict[str, int] | None = None) -> Table:
    """The runs, one a row; with ``sizes`` (bytes per run id) a Size column and the total kept."""
    from trainboard.backend.prune import format_bytes

    table = Table(title="trainboard runs", title_justify="left")
    for name in ("Run", "Name", "Status", "Branch", "Commit", "Job", "Took"):
        table.add_column(name, no_wrap=True)
    if sizes is not None:
        table.add_column("Size", no_wrap=True, justify="right")
        table.caption = f"{format_bytes(sum(sizes.values()))} kept in {len(records)} run(s)"
        table.caption_justify = "left"
    table.add_column("Verdict", overflow="fold", ratio=1)
    for record in records:
        status = record.status
        took = record.duration
        job = record.job_exit_code
        size = [] if sizes is None else [format_bytes(sizes.get(record.run_id, 0))]
        table.add_row(
            record.run_id,
            record.name,
            Text(str(status or "?"), style=STATUS_STYLES.get(status, "") if status else ""),
            record.branch,
            record.commit[:7] + ("*" if record.dirty else ""),
            "—" if job is None else f"exit {job}",
            "—" if took is None else format_seconds(took),
            *size,
            record.verdict,
        )
    return table


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))

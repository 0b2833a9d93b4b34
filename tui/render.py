"""Rich renderables shared by the headless view and the CLI's commands."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text

from trainboard.backend.compare import Comparison


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


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 run", "2 runs", "0 steps": the count with the word in the right number."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


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

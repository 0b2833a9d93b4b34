"""The comparison table: before, after, Δ, gate and result for each metric, with
the verdict. It follows every ComparisonReady: live while training, final at the end."""

from __future__ import annotations

from rich.text import Text
from textual.markup import escape
from textual.widgets import DataTable

from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison, ComparisonRow
from trainboard.backend.config import RunConfig
from trainboard.tui.widgets.marks import styled

COLUMNS = (
    ("metric", "Metric"),
    ("before", "Before"),
    ("after", "After"),
    ("delta", "Δ"),
    ("gate", "Gate"),
    ("result", "Result"),
)


NUMBERS = ("before", "after", "delta")  # right-aligned, their headers too


def column_label(key: str, label: str) -> Text:
    """A column's header, aligned as its values are."""
    return Text(label, justify="right" if key in NUMBERS else "left")


def row_cells(row: ComparisonRow) -> dict[str, Text]:
    delta_style = "" if row.improved is None else ("$success" if row.improved else "$error")
    if row.passed is None:
        result = styled(row.reason or "—", "$text-muted")
    elif row.passed:
        result = styled("pass" + (f" ({row.reason})" if row.reason else ""), "$success")
    else:
        result = styled(f"FAIL ({row.reason})", "bold $error")
    return {
        "metric": Text(row.display),
        "before": Text(row.fmt(row.before), justify="right"),
        "after": Text(row.fmt(row.after), justify="right"),
        "delta": styled(row.fmt(row.delta, signed=True), delta_style, justify="right"),
        "gate": Text(row.gate or "—"),
        "result": result,
    }


def number_width(config: RunConfig) -> int:
    """Room for a signed value with up to three integer digits: "+123.4567"."""
    return 5 + max((spec.digits for spec in config.metrics.values()), default=4)


def column_widths(config: RunConfig) -> dict[str, int]:
    """Every column but the result, whose text is free."""
    names = max((len(config.display_name(k)) for k in config.metrics), default=6)
    gates = max((len(g.describe()) for g in config.compare.gates.values()), default=4)
    number = number_width(config)
    return {"metric": max(6, names), "before": number, "after": number, "delta": number, "gate": max(4, gates)}


class ComparisonTable(DataTable[Text]):
    DEFAULT_CSS = """
    ComparisonTable {
        height: auto;
        &.-passed { border-subtitle-color: $success; }
        &.-failed { border-subtitle-color: $error; }
        &.-live { border-subtitle-color: $text-muted; }
    }
    """

    def __init__(self, config: RunConfig) -> None:
        super().__init__(id="comparison", cursor_type="none", show_cursor=False)
        self.config = config
        self.comparison: Comparison | None = None
        self.border_title = f"Comparison with {config.compare.base}"
        self.border_subtitle = "waiting for metrics"
        self._shown: Comparison | None = None
        self._rows: dict[str, ComparisonRow] = {}
        self.unjudged = ""  # the run ended without a final comparison: its status
        self._unjudged_shown = ""

    def on_mount(self) -> None:
        # Fixed widths, known from the config: a column that grew only when the
        # table was next idle could be drawn (and cached) cut off.
        for key, label in COLUMNS:
            self.add_column(column_label(key, label), key=key, width=column_widths(self.config).get(key))
        for key in self.config.metrics:
            gate = self.config.compare.gates.get(key)
            self.add_row(
                Text(self.config.display_name(key)),
                *(Text("—", justify="right") for _ in NUMBERS),
                Text(gate.describe() if gate else "—"),
                styled("waiting", "$text-muted"),
                key=key,
            )

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.ComparisonReady(comparison=comparison):
                self.comparison = comparison  # a burst collapses: only the latest is rendered
            case ev.RunFinished(status=status) if self.comparison is None or not self.comparison.final:
                self.unjudged = status

    def refresh_view(self, now: float) -> None:
        comp = self.comparison
        if comp is self._shown and self.unjudged == self._unjudged_shown:
            return
        if comp is not None and comp is not self._shown:
            for row in comp.rows:
                if row.key not in self.rows or self._rows.get(row.key) == row:
                    continue
                self._rows[row.key] = row
                for column, cell in row_cells(row).items():
                    self.update_cell(row.key, column, cell, update_width=True)
            base = comp.baseline_label if comp.has_baseline else f"{comp.base_branch} (no baseline yet)"
            self.border_title = escape(f"Comparison with {base}")
        self._shown = comp
        self._unjudged_shown = self.unjudged
        if comp is not None and comp.final:
            subtitle, tone = comp.verdict, "-passed" if comp.passed else "-failed"
        elif self.unjudged:
            subtitle, tone = f"no verdict: run {self.unjudged}", "-failed"
        elif comp is not None:
            subtitle, tone = "live · gates judged at the end", "-live"
        else:
            return
        self.border_subtitle = escape(subtitle)
        for name in ("-passed", "-failed", "-live"):
            self.set_class(name == tone, name)

    def invalidate(self) -> None:
        self._shown = None
        self._unjudged_shown = ""
        self._rows.clear()

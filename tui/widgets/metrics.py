"""The metrics panel: the latest value of each followed metric, its delta against
the baseline, and a small trend of its recent values.

When MLflow stops answering the session says so once (``MetricsStale``): the
panel turns to a warning, "stale since 12:01:03 (MLflow unreachable: ...)", until
MLflow answers again (``MetricsFresh``)."""

from __future__ import annotations

from bisect import insort

from rich.text import Text
from textual.markup import escape
from textual.widgets import DataTable

from trainboard.backend import events as ev
from trainboard.backend.config import RunConfig
from trainboard.tui.render import clock
from trainboard.tui.widgets.comparison import column_widths
from trainboard.tui.widgets.marks import styled

TREND_POINTS = 8
_BARS = "▁▂▃▄▅▆▇█"


def trend(values: list[float]) -> str:
    """A sparkline of the values, lowest ▁, highest █."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    if span == 0:
        return _BARS[3] * len(values)
    return "".join(_BARS[round((v - low) / span * (len(_BARS) - 1))] for v in values)


class MetricsPanel(DataTable[Text]):
    DEFAULT_CSS = """
    MetricsPanel {
        height: auto;
    }
    """

    def __init__(self, config: RunConfig) -> None:
        super().__init__(id="metrics", cursor_type="none", zebra_stripes=False, show_cursor=False)
        self.border_title = "Metrics"
        self.config = config
        self.latest: dict[str, float] = {}
        self.step: dict[str, int] = {}
        # (step, timestamp, value) in step order: late points (read from the history at
        # the end of the job) fall into place instead of replacing the newest value.
        self.history: dict[str, list[tuple[int, int, float]]] = {key: [] for key in config.metrics}
        self.baseline: dict[str, float] = {}
        self.base_branch = config.compare.base
        self.baseline_known = False  # BaselineFound came: ``baseline`` empty means there is none yet
        self.stale: ev.MetricsStale | None = None  # MLflow stopped answering, until it answers again
        self._shown: dict[str, tuple[object, ...]] = {}
        self._frame_shown: tuple[str, str] | None = None

    def on_mount(self) -> None:
        # Fixed widths (see ComparisonTable.on_mount): values never show cut off.
        # The side panel is narrow at 80x24: room for "+0.1234", not "+123.1234".
        widths = column_widths(self.config)
        number = 3 + max((spec.digits for spec in self.config.metrics.values()), default=4)
        self.add_column("metric", key="metric", width=widths["metric"])
        self.add_column("value", key="value", width=number)
        self.add_column("Δ base", key="delta", width=max(number, len("Δ base")))
        self.add_column("trend", key="trend", width=TREND_POINTS)
        for key in self.config.metrics:
            self.add_row(Text(self.config.display_name(key)), Text("—"), Text(""), Text(""), key=key)

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.MetricPoints(points=points):
                for point in points:
                    if point.key not in self.config.metrics:
                        continue
                    series = self.history[point.key]
                    insort(series, (point.step, point.timestamp, point.value))
                    del series[:-TREND_POINTS]
                    self.step[point.key], _, self.latest[point.key] = series[-1]
            case ev.BaselineFound(branch=branch, metrics=metrics):
                self.base_branch = branch
                self.baseline = dict(metrics)
                self.baseline_known = True
            case ev.MetricsStale():
                self.stale = event
            case ev.MetricsFresh():
                self.stale = None

    def stale_text(self) -> str:
        """"stale since 12:01:03 (MLflow unreachable: ...)", or "" while the metrics are current."""
        if self.stale is None:
            return ""
        return f"stale since {clock(self.stale.since)} ({self.stale.reason})"

    def refresh_view(self, now: float) -> None:
        for key, spec in self.config.metrics.items():
            value = self.latest.get(key)
            base = self.baseline.get(key)
            shown = (value, base, tuple(v for _, _, v in self.history[key]))
            if self._shown.get(key) == shown:
                continue
            self._shown[key] = shown
            digits = spec.digits
            delta_cell = Text("")
            if value is not None and base is not None:
                delta = value - base
                improved = None if delta == 0 else (delta > 0) == (spec.goal == "max")
                style = "" if improved is None else ("$success" if improved else "$error")
                delta_cell = styled(f"{delta:+.{digits}f}", style)
            self.update_cell(key, "value", Text("—" if value is None else f"{value:.{digits}f}"), update_width=True)
            self.update_cell(key, "delta", delta_cell, update_width=True)
            sparkline = trend([v for _, _, v in self.history[key]])
            self.update_cell(key, "trend", styled(sparkline, "$accent"), update_width=True)
        steps = set(self.step.values())
        title = "Metrics" + (f" · step {max(steps)}" if steps else "")
        stale = self.stale_text()
        if stale:
            subtitle = escape(f"⚠ {stale}")
        elif self.baseline:
            subtitle = escape(f"Δ vs {self.base_branch}")
        elif self.baseline_known:
            subtitle = escape(f"no baseline yet on {self.base_branch}")
        else:
            subtitle = ""
        if (title, subtitle) != self._frame_shown:
            self._frame_shown = (title, subtitle)
            self.border_title = title
            self.border_subtitle = subtitle
            self.set_class(bool(stale), "-unreachable")
            self.tooltip = f"metrics {stale}; polling on" if stale else None

    def invalidate(self) -> None:
        self._shown.clear()
        self._frame_shown = None

"""The history plot: each followed metric with goal ``max`` (F1, precision,
recall, ...) over the job's steps, with its baseline as a flat reference line
in the same colour. Metrics to minimise (a loss) live on another scale and stay
in the metrics panel.

Shown in the side column on tall terminals; elsewhere ``m`` shows it
maximised (see app.tcss and ``TrainboardApp.action_toggle_plot``).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Mapping, Sequence

from textual.color import Color
from textual.markup import escape
from textual_plotext import PlotextPlot

from trainboard.backend import events as ev
from trainboard.backend.config import RunConfig

MAX_POINTS = 2000  # per metric; older points are dropped from the plot
_PALETTE = ("accent", "success", "warning", "secondary", "primary", "error")

Series = Sequence[tuple[int, float]]


def plotted_keys(config: RunConfig | None, keys: Sequence[str]) -> list[str]:
    """The keys to plot: those whose goal is ``max`` (every key when the config is unknown)."""
    if config is None:
        return list(keys)
    return [key for key in keys if key in config.metrics and config.metrics[key].goal == "max"]


def history_title(names: Sequence[str]) -> str:
    """"History · F1, Precision", or just "History" when nothing is plotted."""
    return " · ".join(["History", ", ".join(names)] if names else ["History"])


def draw_history(
    plot: PlotextPlot,
    series: Mapping[str, Series],
    names: Mapping[str, str],
    baseline: Mapping[str, float],
) -> int:
    """Draw each series (and its baseline) on the widget's plot; how many had points."""
    plt = plot.plt
    plt.clear_data()
    plt.xlabel("step")
    theme = plot.app.theme_variables
    drawn = 0
    for index, (key, points) in enumerate(series.items()):
        color = Color.parse(theme.get(_PALETTE[index % len(_PALETTE)], "white")).rgb
        if points:
            steps, values = zip(*points, strict=True)
            plt.plot(list(steps), list(values), marker="braille", color=color, label=names.get(key, key))
            drawn += 1
        if key in baseline:
            plt.horizontal_line(baseline[key], color=color)
    plot.refresh()
    return drawn


class MetricsPlot(PlotextPlot):
    ALLOW_MAXIMIZE = True

    def __init__(self, config: RunConfig) -> None:
        super().__init__(id="plot")
        self.config = config
        self.keys = plotted_keys(config, list(config.metrics))
        self.points: dict[str, list[tuple[int, float]]] = {key: [] for key in self.keys}
        self.baseline: dict[str, float] = {}
        self._base_branch = config.compare.base
        self.border_title = escape(history_title([config.display_name(k) for k in self.keys]))
        self.border_subtitle = "waiting for metrics"
        self._dirty = True

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.MetricPoints(points=points):
                for point in points:
                    series = self.points.get(point.key)
                    if series is not None:
                        insort(series, (point.step, point.value))  # late points fall into place
                        del series[:-MAX_POINTS]
                        self._dirty = True
            case ev.BaselineFound(metrics=metrics, branch=branch):
                self.baseline = {k: v for k, v in metrics if k in self.points}
                self._base_branch = branch
                self._dirty = True

    def refresh_view(self, now: float) -> None:
        if not self._dirty or not self.display:
            return  # hidden: drawn when shown (see invalidate)
        self._dirty = False
        names = {key: self.config.display_name(key) for key in self.keys}
        drawn = draw_history(self, self.points, names, self.baseline)
        if not drawn:
            self.border_subtitle = "waiting for metrics"
        elif self.baseline:
            self.border_subtitle = escape(f"flat lines: {self._base_branch}")
        else:
            self.border_subtitle = "no baseline yet"

    def invalidate(self) -> None:
        self._dirty = True

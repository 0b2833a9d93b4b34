"""The history plot: every followed metric over the job's steps, with the baseline
as a flat line. Shown on tall terminals only (see app.tcss)."""

from __future__ import annotations

from textual.color import Color
from textual_plotext import PlotextPlot

from backend import events as ev
from backend.config import RunConfig

MAX_POINTS = 2000  # per metric; older points are dropped from the plot
_PALETTE = ("accent", "success", "warning", "secondary", "primary", "error")


class MetricsPlot(PlotextPlot):
    def __init__(self, config: RunConfig) -> None:
        super().__init__(id="plot")
        self.border_title = "History"
        self.config = config
        self.points: dict[str, list[tuple[int, float]]] = {key: [] for key in config.metrics}
        self.baseline: dict[str, float] = {}
        self._dirty = True

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.MetricPoints(points=points):
                for point in points:
                    series = self.points.get(point.key)
                    if series is not None:
                        series.append((point.step, point.value))
                        del series[:-MAX_POINTS]
                        self._dirty = True
            case ev.BaselineFound(metrics=metrics):
                self.baseline = {k: v for k, v in metrics if k in self.config.metrics}
                self._dirty = True

    def refresh_view(self, now: float) -> None:
        if not self._dirty:
            return
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        theme = self.app.theme_variables
        for index, (key, series) in enumerate(self.points.items()):
            if not series:
                continue
            color = Color.parse(theme.get(_PALETTE[index % len(_PALETTE)], "white")).rgb
            steps, values = zip(*series, strict=True)
            plt.plot(list(steps), list(values), marker="braille", color=color, label=self.config.display_name(key))
            if key in self.baseline:
                plt.horizontal_line(self.baseline[key], color=color)
        self.refresh()

    def invalidate(self) -> None:
        self._dirty = True

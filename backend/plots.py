"""The report's metrics plot (``metrics.png``): a panel per followed metric, this run's curve
against the baseline's (its curve when its history was read, else its final value as a flat
line). matplotlib is imported only here; :func:`metrics_figure` returns the Figure unsaved."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend.config import RunConfig
from trainboard.backend.evaluations import StepAxis, experiment_title, fmt_epoch, series, step_axis
from trainboard.backend.events import MetricPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKERS_UP_TO = 40  # points in a curve: up to this many, each is marked


@dataclass(frozen=True)
class BaselineSeries:
    """What the plot knows of the baseline: its final values, and its history when read."""

    finals: Mapping[str, float]
    history: tuple[MetricPoint, ...] = ()
    params: Mapping[str, object] = field(default_factory=dict)  # to tell its steps (epochs?)
    name: str = "baseline"


def metrics_figure(config: RunConfig, points: list[MetricPoint], baseline: BaselineSeries | None) -> Figure | None:
    """The figure, not saved; None when no followed metric has a point."""
    keys = [k for k in config.metrics if any(p.key == k for p in points)]
    if not keys:
        return None
    from matplotlib.figure import Figure

    axis = step_axis(points, config.params, keys)
    base_axis = step_axis(baseline.history, baseline.params, keys) if baseline and baseline.history else None
    curve = baseline.history if baseline and base_axis and base_axis.label == axis.label else ()
    cols = min(2, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.2 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, key in enumerate(keys):
        ax = axes[index // cols][index % cols]
        ax.set_title(config.display_name(key))
        xs, ys = _draw_run(ax, axis, series(points, key), config.metrics[key].digits)
        if baseline is not None:
            base_xs, base_ys = _draw_baseline(ax, key, baseline, base_axis, series(curve, key))
            xs, ys = xs + base_xs, ys + base_ys
        ax.set_ylim(*y_limits(ys))
        ax.ticklabel_format(axis="y", useOffset=False)
        if axis.knows_epochs:  # from epoch 0: one epoch's point is not alone in a sliver of an axis
            ax.set_xlim(0, max(max(xs), 0.5) * 1.05)
        ax.set_xlabel(axis.label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for index in range(len(keys), rows * cols):
        axes[index // cols][index % cols].axis("off")
    fig.suptitle(experiment_title(config.name, config.mlflow.experiment))
    fig.tight_layout()
    return fig


def metrics_plot(config: RunConfig, points: list[MetricPoint], baseline: BaselineSeries | None,
                 dest: Path) -> Path | None:
    """``metrics_figure`` saved as a PNG at ``dest``; None when there is nothing to plot."""
    fig = metrics_figure(config, points, baseline)
    if fig is None:
        return None
    fig.savefig(dest, dpi=100)
    return dest


def y_limits(values: list[float]) -> tuple[float, float]:
    """Every value inside, with a margin: the baseline is never clipped."""
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, abs(high) * 0.02) or 0.05  # a nearly flat curve: not blown up to noise
    return low - pad, high + pad


def _draw_run(ax: Axes, axis: StepAxis, values: dict[int, float], digits: int) -> tuple[list[float], list[float]]:
    xs = [axis.x(step) for step in values]
    ys = list(values.values())
    marker = "o" if len(xs) <= MARKERS_UP_TO else None
    ax.plot(xs, ys, marker=marker, markersize=4, linewidth=1.6, label="this run")
    if len(xs) == 1:  # one point makes no line: say its value
        where = fmt_epoch(xs[0]) if axis.knows_epochs else f"{xs[0]:g}"
        ax.annotate(f"{ys[0]:.{digits}f} at {axis.label} {where}", (xs[0], ys[0]), textcoords="offset points",
                    xytext=(-6, 6), ha="right", fontsize="small")
    if axis.label == "step" or axis.steps_are_epochs:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return xs, ys


def _draw_baseline(ax: Axes, key: str, baseline: BaselineSeries, axis: StepAxis | None,
                   curve: dict[int, float]) -> tuple[list[float], list[float]]:
    """The baseline's curve on the same axis, else its final value as a flat line."""
    if curve and axis is not None:
        xs = [axis.x(step) for step in curve]
        ys = list(curve.values())
        marker = "o" if len(xs) <= MARKERS_UP_TO else None
        ax.plot(xs, ys, linestyle="--", color="grey", marker=marker, markersize=3, label=baseline.name)
        return xs, ys
    final = baseline.finals.get(key)
    if final is None:
        return [], []
    ax.axhline(final, linestyle="--", color="grey", label=f"{baseline.name}: final value")
    return [], [final]

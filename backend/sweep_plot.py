"""The sweep report's plot (``objective.png``): the objective against each varied setting,
a panel a setting, one point a member with a result, the best member marked.

A setting whose values all read as numbers gets a numeric axis (logarithmic when they are
all positive and span a factor of 20 or more, as learning rates do); any other setting is
categorical, its values in the order the members first take them. matplotlib is imported
only when a figure is drawn (see :mod:`trainboard.backend.plots`); draw it in a thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend.plots import y_limits

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LOG_SPAN = 20.0  # positive numeric values spanning this factor or more get a log axis
PANEL_COLUMNS = 3
TICKS_AT_VALUES = 8  # up to this many distinct values, a tick at each


@dataclass(frozen=True)
class SweepPoint:
    """One member with a result, as the plot draws it."""

    index: int
    values: dict[str, str]  # setting -> value as --set text
    objective: float
    passed: bool | None  # its gates; None: not judged


def numeric_values(texts: Sequence[str]) -> list[float] | None:
    """The values as finite numbers, or None when one of them is not a number
    (``true``, ``adam``, ``nan``)."""
    out = []
    for text in texts:
        try:
            value = float(text)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        out.append(value)
    return out


def uses_log_axis(values: Sequence[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPAN


def objective_figure(points: Sequence[SweepPoint], params: Sequence[str], objective: str, goal: str,
                     best: int | None, title: str = "") -> Figure | None:
    """The figure, unsaved; None when no member has a result or nothing was varied."""
    if not points or not params:
        return None
    from matplotlib.figure import Figure

    cols = min(PANEL_COLUMNS, len(params))
    rows = math.ceil(len(params) / cols)
    fig = Figure(figsize=(4.4 * cols, 3.3 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    ys = [p.objective for p in points]
    for number, param in enumerate(params):
        ax = axes[number // cols][number % cols]
        _panel(ax, points, param, best)
        ax.set_ylim(*y_limits(ys))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(param, fontsize="medium")
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    for number in range(len(params), rows * cols):
        axes[number // cols][number % cols].axis("off")
    better = "higher" if goal == "max" else "lower"
    said = f"{objective} against each varied setting ({better} is better)"
    fig.suptitle(f"{title}\n{said}" if title else said, fontsize="medium")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _panel(ax: Axes, points: Sequence[SweepPoint], param: str, best: int | None) -> None:
    """One setting's panel: its values along x (numeric or categorical), the objective up."""
    texts = [p.values.get(param, "") for p in points]
    numbers = numeric_values(texts)
    if numbers is not None:
        xs = numbers
        _numeric_axis(ax, numbers, texts)
    else:
        order = list(dict.fromkeys(texts))
        xs = [float(order.index(t)) for t in texts]
        ax.set_xticks(range(len(order)), order, rotation=30 if max(len(t) for t in order) > 6 else 0)
        ax.set_xlim(-0.5, len(order) - 0.5)
    groups = (("gates passed", "tab:blue", "o", True), ("gates failed", "tab:red", "x", False),
              ("not judged", "tab:grey", "o", None))
    for label, color, marker, passed in groups:
        chosen = [(x, p.objective) for x, p in zip(xs, points, strict=True) if p.passed is passed]
        if chosen:
            ax.scatter([c[0] for c in chosen], [c[1] for c in chosen], color=color, marker=marker, s=30,
                       label=label, zorder=2)
    for x, point in zip(xs, points, strict=True):
        if point.index == best:
            ax.scatter([x], [point.objective], marker="*", s=260, facecolor="gold", edgecolor="black",
                       label="best", zorder=3)


def _numeric_axis(ax: Axes, numbers: Sequence[float], texts: Sequence[str]) -> None:
    """Logarithmic for a wide positive span; a tick at each value (labelled as it was set)
    when there are few, else matplotlib's own ticks in scientific notation where needed."""
    if uses_log_axis(numbers):
        ax.set_xscale("log")
    ax.margins(x=0.12)
    distinct = sorted(set(numbers))
    if len(distinct) <= TICKS_AT_VALUES:
        labels = [texts[numbers.index(value)] for value in distinct]
        ax.minorticks_off()
        ax.set_xticks(distinct, labels, rotation=30 if max(len(t) for t in labels) > 6 else 0)
    elif ax.get_xscale() == "linear":
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=False)


def objective_plot(points: Sequence[SweepPoint], params: Sequence[str], objective: str, goal: str,
                   best: int | None, dest: Path, title: str = "") -> Path | None:
    """``objective_figure`` saved as a PNG at ``dest``; None (and no file) when there is nothing to draw."""
    fig = objective_figure(points, params, objective, goal, best, title)
    if fig is None:
        dest.unlink(missing_ok=True)
        return None
    fig.savefig(dest, dpi=100)
    return dest

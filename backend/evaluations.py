"""A run's metric history as the report reads it: what its MLflow steps are (epochs, or
training steps mapped to epochs by the job's ``epoch`` metric) and the table of its
evaluations, one row per evaluation step. The plot (``plots.py``) uses the same axis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trainboard.backend.config import RunConfig
from trainboard.backend.events import MetricPoint

EPOCH_KEY = "epoch"  # a job logs it (fractional) at each evaluation: step -> epoch
EPOCH_PARAMS = ("epochs", "num_epochs", "n_epochs", "max_epochs", "num_train_epochs")
MAX_ROWS = 20  # more evaluations: the first and the last ones, and how many were left out


def series(points: Iterable[MetricPoint], key: str) -> dict[int, float]:
    """``key``'s value at each step: the one logged last when a step was logged twice."""
    latest: dict[int, tuple[int, float]] = {}
    for p in points:
        if p.key == key and (p.step not in latest or p.timestamp >= latest[p.step][0]):
            latest[p.step] = (p.timestamp, p.value)
    return {step: value for step, (_, value) in sorted(latest.items())}


@dataclass(frozen=True)
class BaselineHistory:
    """The baseline's metric history, read once for the report (``baselines.baseline_history``);
    ``note`` says why it is empty (final values only: a flat line) when it is."""

    points: tuple[MetricPoint, ...]
    note: str = ""


@dataclass(frozen=True)
class StepAxis:
    """What a run's steps are: ``label`` "epoch" or "step"; ``anchors`` the (step, epoch)
    points of the job's ``epoch`` metric when it logs one (steps are training steps then)."""

    label: str
    anchors: tuple[tuple[int, float], ...] = ()

    @property
    def knows_epochs(self) -> bool:
        return self.label == "epoch"

    @property
    def steps_are_epochs(self) -> bool:
        return self.label == "epoch" and not self.anchors

    def x(self, step: int) -> float:
        """Where ``step`` lies on the axis: its epoch (interpolated between the epoch metric's
        points, epoch 0 at step 0), or the step itself."""
        if not self.anchors:
            return float(step)
        pts = list(self.anchors)
        if pts[0][0] > 0:
            pts.insert(0, (0, 0.0))
        if len(pts) == 1:
            return pts[0][1]
        for (s0, e0), (s1, e1) in zip(pts, pts[1:], strict=False):
            if step <= s1 or s1 == pts[-1][0]:
                return e1 if s1 == s0 else e0 + (e1 - e0) * (step - s0) / (s1 - s0)
        return pts[-1][1]  # pragma: no cover - the loop returns on its last pair


def epoch_count(params: Mapping[str, object]) -> int | None:
    """The number of epochs the params ask for (``epochs: 3``), when they say."""
    for name in EPOCH_PARAMS:
        try:
            value = float(str(params[name]))
        except (KeyError, ValueError):
            continue
        if value >= 1 and value.is_integer():
            return int(value)
    return None


def step_axis(points: Iterable[MetricPoint], params: Mapping[str, object], keys: Iterable[str]) -> StepAxis:
    """Epochs when the run logs an ``epoch`` metric (mapped from its steps), or when every step
    of ``keys`` lies within the epochs its params ask for; training steps otherwise."""
    points = list(points)
    epochs = series(points, EPOCH_KEY)
    if epochs:
        return StepAxis("epoch", tuple(epochs.items()))
    wanted = set(keys)
    steps = {p.step for p in points if p.key in wanted}
    count = epoch_count(params)
    if steps and count is not None and min(steps) >= 0 and max(steps) <= count:
        return StepAxis("epoch")
    return StepAxis("step")


def experiment_title(name: str, experiment: str) -> str:
    """How the report and the plot are titled: the run config's name and its MLflow experiment."""
    return name if not experiment or experiment == name else f"{name} (experiment {experiment})"


def fmt_epoch(epoch: float) -> str:
    return format(round(epoch, 2), "g")


@dataclass(frozen=True)
class Column:
    key: str
    display: str
    digits: int

    def fmt(self, value: float | None) -> str:
        return "—" if value is None else f"{value:.{self.digits}f}"


@dataclass(frozen=True)
class EvaluationRow:
    step: int
    epoch: float | None  # None: the run's steps do not say
    values: tuple[float | None, ...]  # one per column


@dataclass(frozen=True)
class EvaluationTable:
    """A row per evaluation step of the followed metrics (the first and last ``MAX_ROWS``)."""

    axis: StepAxis
    columns: tuple[Column, ...]
    rows: tuple[EvaluationRow, ...]
    total: int  # evaluations in all
    omitted: int  # left out between the first and the last rows shown (after row ``len(rows) // 2``)
    between: tuple[str, ...]  # keys logged between evaluations: their latest value at each row's step
    baseline: tuple[float | None, ...] | None  # the baseline's final values, one per column


def evaluation_table(config: RunConfig, points: Iterable[MetricPoint], baseline: Mapping[str, float] | None,
                     max_rows: int = MAX_ROWS) -> EvaluationTable | None:
    """The evaluations of the followed metrics that have points; None when none has.

    The evaluation steps are those of the metrics logged together at each evaluation (F1,
    precision...: see ``_evaluation_steps``); a metric logged at other steps (train loss every
    few steps) shows its latest value at each evaluation's step."""
    points = list(points)
    by_key = {k: series(points, k) for k in config.metrics}
    by_key = {k: v for k, v in by_key.items() if v}
    if not by_key:
        return None
    evaluated = _evaluation_steps(by_key, set(series(points, EPOCH_KEY)))
    between = tuple(k for k, v in by_key.items() if not set(v) <= evaluated)
    steps = sorted(evaluated)
    axis = step_axis(points, config.params, by_key)
    rows = [
        EvaluationRow(step, axis.x(step) if axis.knows_epochs else None,
                      tuple(_value_at(v, step, k in between) for k, v in by_key.items()))
        for step in steps
    ]
    omitted = max(0, len(rows) - max_rows)
    if omitted:
        head = max_rows // 2
        rows = rows[:head] + rows[len(rows) - (max_rows - head):]
    columns = tuple(Column(k, config.display_name(k), config.metrics[k].digits) for k in by_key)
    finals = tuple(baseline.get(k) for k in by_key) if baseline else None
    return EvaluationTable(axis, columns, tuple(rows), len(steps), omitted, between, finals)


def _evaluation_steps(by_key: dict[str, dict[int, float]], epoch_steps: set[int]) -> set[int]:
    """The steps of the metrics logged together: of the groups of metrics logged at the same
    steps, the one that shares most steps with the ``epoch`` metric (logged at each evaluation),
    then the one with the most metrics, then the one with the fewest steps."""
    groups: dict[frozenset[int], int] = {}
    for values in by_key.values():
        steps = frozenset(values)
        groups[steps] = groups.get(steps, 0) + 1

    def rank(steps: frozenset[int]) -> tuple[int, int, int]:
        return len(steps & epoch_steps), groups[steps], -len(steps)

    best: frozenset[int] = max(list(groups), key=rank)
    return set(best)


def _value_at(values: dict[int, float], step: int, latest: bool) -> float | None:
    if step in values or not latest:
        return values.get(step)
    before = [s for s in values if s <= step]
    return values[max(before)] if before else None

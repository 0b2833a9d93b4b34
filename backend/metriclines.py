"""Metric lines: a job reports metrics by printing them, and trainboard logs them to MLflow.

A job prints, at the start of a line of its stdout or stderr::

    trainboard:metric f1=0.81 loss=0.4 step=3

Every ``key=value`` pair but ``step`` is a metric (a decimal number); ``step``
(optional, a count, default 0) is the step they belong to. A line that does not
parse whole (a value that is no finite number, a key MLflow would refuse, no
metric at all) is an ordinary log line, and nothing of it is logged.

:class:`MetricLines` reads the training job's log lines as they stream: each
line's values become :class:`~trainboard.backend.events.MetricPoint` (timed when
trainboard read the line) that go to the views, the run's metric history and the
comparison at once, like polled ones, and to the run's MLflow run in batches,
through trainboard's own client in a thread (``trainboard.backend.tracking``): the
job never imports MLflow. The polls of the run's metrics skip them (the cursor
has them). A value the run already has at the same step (a log read again from
its start, on attach) is not logged twice.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend.tracking import POLL_TIMEOUT, TrackingError

if TYPE_CHECKING:
    from trainboard.backend.stages.base import RunContext
    from trainboard.backend.tracking import Tracking

PREFIX = "trainboard:metric"
BATCH = 1000  # MLflow's most metrics in one log_batch call
FLUSH_GRACE = 5.0  # at the job's end, at most this long retrying a store that does not answer
_KEY = re.compile(r"[A-Za-z0-9_\-./]{1,250}")  # the metric names MLflow takes (no space: the separator)
_STEP_MAX = 2**63 - 1


def parse_metric_line(line: str) -> tuple[dict[str, float], int] | None:
    """The metrics (name: value) and the step a log line reports, or None when it is not a
    (well-formed) metric line."""
    if not line.startswith(PREFIX):
        return None
    rest = line[len(PREFIX):]
    if not rest or not rest[0].isspace():
        return None  # "trainboard:metrics ..." is not the protocol
    values: dict[str, float] = {}
    step = None
    for token in rest.split():
        key, sep, text = token.partition("=")
        if not sep or not _KEY.fullmatch(key) or key in values or (key == "step" and step is not None):
            return None
        if key == "step":
            if not text.isascii() or not text.isdigit() or int(text) > _STEP_MAX:
                return None
            step = int(text)
            continue
        try:
            value = float(text)
        except ValueError:
            return None
        if not math.isfinite(value) or "_" in text:
            return None
        values[key] = value
    return (values, step or 0) if values else None


def read_points(text: str, at: float | None = None) -> list[ev.MetricPoint]:
    """The points of every metric line in a batch of lines (joined by newlines), timed ``at``
    (milliseconds as MLflow keeps them; default now). Cheap without a metric line."""
    if PREFIX not in text:
        return []
    stamp = int((time.time() if at is None else at) * 1000)
    points: list[ev.MetricPoint] = []
    for line in text.split("\n"):
        parsed = parse_metric_line(line) if line.startswith(PREFIX) else None
        if parsed is not None:
            values, step = parsed
            points.extend(ev.MetricPoint(key, value, step, stamp) for key, value in values.items())
    return points


def log_points(tracking: Tracking, run_id: str, points: list[ev.MetricPoint]) -> None:
    """Log ``points`` to the MLflow run, a batch at a time (blocking: call it in a thread)."""
    from mlflow.entities import Metric

    try:
        for start in range(0, len(points), BATCH):
            batch = [Metric(p.key, p.value, p.timestamp, p.step) for p in points[start:start + BATCH]]
            tracking.client.log_batch(run_id, metrics=batch)
    except Exception as exc:  # MLflow raises many kinds; all mean "unreachable"
        raise TrackingError(f"MLflow at {tracking.tracking_uri}: {exc}") from exc


class MetricLines:
    """The training job's metric lines: sent to the views at once, logged to MLflow in batches.

    One batch is in flight at a time; what arrives meanwhile waits for the next. A batch
    that MLflow does not take stays to be tried again (the metrics are said to be stale,
    as when a poll fails); :meth:`flush`, at the job's end, sends what is left."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.pending: list[ev.MetricPoint] = []
        self.logged = 0
        self._sending: asyncio.Task[bool] | None = None

    def feed(self, text: str) -> list[ev.MetricPoint]:
        """The new points a batch of log lines reports: shown, kept and queued for MLflow."""
        points = self._new(read_points(text))
        if not points:
            return []
        from trainboard.backend.metricfeed import add_points

        self.ctx.state.metrics.cursor.newer(points)  # the polls skip what the lines said
        add_points(self.ctx, points)
        self.pending.extend(points)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.ensure_future(self._send())
        return points

    def _new(self, points: list[ev.MetricPoint]) -> list[ev.MetricPoint]:
        """Leave out a value the run has at the same step already (the log read again on attach)."""
        if not points or not self.ctx.state.metrics.points:
            return points
        known = {(p.key, p.step, p.value) for p in self.ctx.state.metrics.points}
        return [p for p in points if (p.key, p.step, p.value) not in known]

    async def _send(self) -> bool:
        """Log what is pending, batch after batch; False when MLflow did not take it (it stays)."""
        from trainboard.backend.metricfeed import metrics_failed

        tracking, run_id = self.ctx.state.tracking.client, self.ctx.state.tracking.mlflow_run_id
        assert tracking is not None
        while self.pending:
            batch = list(self.pending)
            try:
                await tracking.call(log_points, tracking, run_id, batch, timeout=POLL_TIMEOUT)
            except TrackingError as exc:
                metrics_failed(self.ctx, exc)
                return False
            del self.pending[:len(batch)]
            self.logged += len(batch)
        return True

    async def flush(self) -> None:
        """Send what is left (the job has ended). A store that does not answer gets a short grace;
        then the points it did not take are said to be missing from MLflow."""
        deadline = time.monotonic() + FLUSH_GRACE
        while True:
            if self._sending is not None and not self._sending.done():
                await asyncio.shield(self._sending)
            if not self.pending:
                return
            self._sending = asyncio.ensure_future(self._send())
            if await asyncio.shield(self._sending) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        if self.pending:
            said = f"{len(self.pending)} metric values the job printed did not reach MLflow (it did not answer)"
            self.ctx.error(self.ctx.current_stage(), f"{said}; they are in the run's record and its comparison")

"""Job progress: the one-line protocol a job prints, and what trainboard derives from it.

A job reports progress by printing, at the start of a line of its stdout or stderr::

    trainboard:progress step=40 total=128 epoch=1/2 loss=0.8421

``step`` (required) is the global count of training steps done; ``total`` (optional) the
steps expected in all; ``epoch=e/E`` (optional) the epoch. Other ``key=value`` pairs are
for the human reading the log. A line that does not parse is an ordinary log line.

:class:`ProgressTracker` reads the job's log lines as they stream and makes
:class:`~trainboard.backend.events.JobProgress` events: the step, and the throughput
(steps/s) and ETA derived from the times the lines arrived. The texts the views show
(``40/128 · 2.4 step/s · ETA 36s``) are made here too, so that the dashboard and the
headless output say the same.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from trainboard.backend import events as ev

PREFIX = "trainboard:progress"
WINDOW_SECONDS = 30.0  # the throughput is measured over the progress lines of about this long
WINDOW_SAMPLES = 20  # and over at most this many arrivals
MAX_VALUE = 10**15  # a step or total beyond this is not a step count


@dataclass(frozen=True, slots=True)
class ProgressLine:
    """What one protocol line says."""

    step: int
    total: int | None = None
    epoch: int | None = None
    epochs: int | None = None


def _count(text: str, least: int) -> int | None:
    """A non-negative decimal count (at least ``least``), or None."""
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    value = int(text)
    return value if least <= value <= MAX_VALUE else None


def parse_line(line: str) -> ProgressLine | None:
    """The progress a log line reports, or None when it is not a (well-formed) protocol line.

    ``step`` must be a count; a ``total`` or ``epoch`` that does not parse is left out."""
    if not line.startswith(PREFIX):
        return None
    rest = line[len(PREFIX):]
    if rest and not rest[0].isspace():
        return None  # "trainboard:progressive ..." is not the protocol
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    step = _count(fields.get("step", ""), 0)
    if step is None:
        return None
    total = _count(fields.get("total", ""), 1)
    epoch = epochs = None
    done, slash, of = fields.get("epoch", "").partition("/")
    if slash:
        epoch, epochs = _count(done, 0), _count(of, 1)
        if epoch is None or epochs is None:
            epoch = epochs = None
    return ProgressLine(step, total, epoch, epochs)


def last_progress(lines: Iterable[str]) -> ProgressLine | None:
    """The last protocol line among ``lines``, parsed."""
    found = None
    for line in lines:
        if line.startswith(PREFIX):
            found = parse_line(line) or found
    return found


class ProgressTracker:
    """The job's progress as its lines arrive: one JobProgress per batch that reports any.

    The throughput is the steps done between the oldest and the newest arrival in the
    window (the last WINDOW_SECONDS, at most WINDOW_SAMPLES arrivals, never fewer than
    two) over the time between them. Lines that arrive together (a backlog read at once,
    as on attach) count as one arrival: the newest step among them."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=WINDOW_SAMPLES)
        self.latest: ev.JobProgress | None = None

    def feed(self, text: str, at: float | None = None) -> ev.JobProgress | None:
        """The progress a batch of lines (joined by newlines) reports; None when none does.

        Cheap when the batch has no protocol line: one substring search."""
        if PREFIX not in text:
            return None
        line = last_progress(text.split("\n"))
        if line is None:
            return None
        return self.add(line, time.time() if at is None else at)

    def add(self, line: ProgressLine, at: float) -> ev.JobProgress:
        samples = self._samples
        if samples and (line.step < samples[-1][1] or at < samples[-1][0]):
            samples.clear()  # the count went back (a restarted job): measure afresh
        if samples and samples[-1][0] == at:
            samples.pop()
        samples.append((at, line.step))
        while len(samples) > 2 and at - samples[0][0] > WINDOW_SECONDS:
            samples.popleft()
        rate = None
        (t0, s0), (t1, s1) = samples[0], samples[-1]
        if t1 > t0:
            rate = (s1 - s0) / (t1 - t0)
        eta = None
        if line.total is not None and rate:
            eta = max(0, line.total - line.step) / rate
        elif line.total is not None and line.step >= line.total:
            eta = 0.0
        self.latest = ev.JobProgress(line.step, line.total, line.epoch, line.epochs, rate, eta, at=at)
        return self.latest


# ---------------------------------------------------------------------- how it reads


def format_eta(seconds: float) -> str:
    """36s, 2m05s, 1h02m."""
    seconds = int(max(0.0, seconds) + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_rate(rate: float, unit: str = "step") -> str:
    """2.4 step/s; 12 step/s; below one step a second, the seconds a step: 4.2 s/step."""
    if rate >= 10:
        return f"{rate:.0f} {unit}/s"
    if rate >= 1:
        return f"{rate:.1f} {unit}/s"
    if rate > 0:
        return f"{1 / rate:.1f} s/{unit.rstrip('s')}"
    return f"0 {unit}/s"


def steps_text(progress: ev.JobProgress) -> str:
    """40/128, or 40 when the total is unknown."""
    return f"{progress.step}/{progress.total}" if progress.total else f"{progress.step}"


def eta_left(progress: ev.JobProgress, now: float | None) -> float | None:
    """The ETA as of ``now`` (counted down since the line arrived), or as it arrived."""
    if progress.eta is None:
        return None
    if now is None:
        return progress.eta
    return max(0.0, progress.eta - max(0.0, now - progress.at))


def short_text(progress: ev.JobProgress, now: float | None = None, width: int = 1000) -> str:
    """The longest of ``40/128 · epoch 1/2 · 2.4 step/s · ETA 36s`` and its shorter
    forms that fits ``width`` characters (the steps alone when none does)."""
    steps = steps_text(progress)
    eta = eta_left(progress, now)
    rate = progress.rate
    epoch = f"epoch {progress.epoch}/{progress.epochs}" if progress.epochs and progress.epochs > 1 else ""
    tail = [format_rate(rate)] if rate is not None else []
    if eta is not None:
        tail.append(f"ETA {format_eta(eta)}")
    forms = []
    if epoch:
        forms.append(" · ".join([steps, epoch, *tail]))
    forms.append(" · ".join([steps, *tail]))
    if eta is not None:
        forms.append(f"{steps} · ETA {format_eta(eta)}")
    for form in forms:
        if len(form) <= width:
            return form
    return steps


def headless_text(progress: ev.JobProgress) -> str:
    """``progress: 40/128 steps (31%) · epoch 1/2 · 2.4 steps/s · ETA 36s``."""
    parts = [f"{steps_text(progress)} steps"]
    if progress.total:
        parts[0] += f" ({min(100, int(100 * progress.step / progress.total))}%)"
    if progress.epochs:
        parts.append(f"epoch {progress.epoch}/{progress.epochs}")
    if progress.rate is not None:
        parts.append(format_rate(progress.rate, "steps"))
    if progress.eta is not None:
        parts.append(f"ETA {format_eta(progress.eta)}")
    return "progress: " + " · ".join(parts)


def final_text(progress: ev.JobProgress) -> str:
    """How the train stage's detail reads once the job has ended: 128/128 steps."""
    return f"{steps_text(progress)} steps"

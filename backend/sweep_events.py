"""What a sweep says to its views (the sweep dashboard, the headless printer), and the
live state of one member that they read.

A sweep emits these on its own bus; each member's own events go to its
session's bus as for a single run. Views of the sweep poll :class:`MemberState`
on a timer (``version`` tells what changed) rather than follow every member's stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend.events import _now

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig
    from trainboard.backend.session import Session
    from trainboard.backend.sweep_record import MemberInfo

HISTORY_POINTS = 120  # objective values kept for a member's sparkline
EVENTS_KEPT = 5000  # a member's events kept for a view opened mid-run (progress events are folded)


@dataclass(frozen=True, slots=True)
class SweepStarted(ev.Event):
    sweep_id: str
    members: int
    max_parallel: int
    cap: float | None
    params: tuple[str, ...]
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class MemberChanged(ev.Event):
    """A member's status or stage changed."""

    index: int
    status: str
    stage: str
    detail: str = ""
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class SweepCost(ev.Event):
    spent: float  # USD, every member so far
    cap: float | None
    at: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class SweepFinished(ev.Event):
    exit_code: int
    status: str
    best: int | None
    reason: str = ""
    at: float = field(default_factory=_now)


@dataclass
class MemberState:
    """One member as the views see it; ``info`` is its entry in the sweep record."""

    info: MemberInfo
    loaded: LoadedConfig
    session: Session | None = None
    history: list[float] = field(default_factory=list)
    progress: ev.JobProgress | None = None
    events: list[ev.Event] = field(default_factory=list)
    version: int = 0
    projected: float | None = None  # USD this member may cost in all (the cost cap's reckoning)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.info.values.items())

    def keep(self, event: ev.Event) -> None:
        """Keep ``event`` for a view opened later; a progress event replaces the last one."""
        if isinstance(event, ev.LogLines):
            return
        if isinstance(event, ev.JobProgress | ev.CostUpdated) and self.events and \
                type(self.events[-1]) is type(event):
            self.events[-1] = event
        elif len(self.events) < EVENTS_KEPT:
            self.events.append(event)

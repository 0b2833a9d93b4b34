"""A sweep's cost cap (``budget.max_cost_usd``): what the members have cost, whether the
next one may start, and when the sweep has reached the cap.

A member is launched only when what is spent, plus what the running members may
still cost (each at least its projection), plus the new member's projection stays
within the cap. A projection is the runner's hourly price times the worst case of
the member's duration (the longest member so far, else ``job.timeout_minutes``,
else the EC2 instance's ``max_duration_minutes``): see ``trainboard.backend.budget``.
Free runners (this machine, an SSH host) project nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.sweep_events import MemberState


class CostCap:
    def __init__(self, cap: float | None, members: Sequence[MemberState]) -> None:
        self.cap = cap
        self.members = members

    def spent(self) -> float:
        return sum(m.info.cost or 0.0 for m in self.members)

    def _longest(self) -> float | None:
        """The longest a finished member took (seconds), a better worst case than the limits."""
        took = [m.info.finished_at - m.info.started_at for m in self.members
                if m.info.finished_at is not None and m.info.started_at is not None and m.info.exit_code is not None]
        return max(took) if took else None

    def projected(self, member: MemberState) -> float | None:
        """What ``member`` may cost in all (USD); 0 on a free runner; None when nothing tells."""
        from trainboard.backend.budget import projected_cost

        return projected_cost(member.loaded.config, observed=self._longest())

    def blocks(self, member: MemberState) -> str:
        """Why ``member`` may not start under the cap ("" when it may)."""
        if self.cap is None:
            return ""
        new = self.projected(member)
        if not new:
            return ""
        committed = 0.0
        for m in self.members:
            cost = m.info.cost or 0.0
            launched = m.projected is not None and m.info.exit_code is None  # running, or its task about to
            committed += max(cost, m.projected or 0.0) if launched else cost
        if committed + new > self.cap:
            return (f"cost cap: starting it could pass the cap ${self.cap:.2f} (${committed:.2f} spent or "
                    f"committed, ${new:.2f} projected for it)")
        return ""

    def reached(self) -> str:
        """Why the sweep stops now ("" while under the cap)."""
        spent = self.spent()
        if self.cap is None or spent < self.cap:
            return ""
        return f"cost cap: ${spent:.2f} reached the cap ${self.cap:.2f}"

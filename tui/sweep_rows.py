"""A sweep as `trainboard runs` and the runs screen show it: one row in place of its members.

A sweep's facts come from its record (``.trainboard/sweeps/<id>/sweep.json``, SweepData);
its members are whole runs whose records name it (``sweep: {id, index, values}``).
:func:`group` puts each sweep once in the newest-first list, its member runs under it;
the rest makes the texts of the sweep's row: how its members stand, the best member's
values and objective, what it cost, how long it took.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainboard.backend.record import RunStatus
from trainboard.backend.sweep_record import QUEUED, RUNNING, SKIPPED, MemberInfo, SweepData, SweepStore
from trainboard.tui.render import format_seconds, plural

if TYPE_CHECKING:
    from trainboard.backend.store import RunRecord, RunStore
    from trainboard.tui.runs_list import Tone

# How the members' statuses are counted in a sweep's row, in this order.
FAILED = (RunStatus.GATE_FAILED, RunStatus.JOB_FAILED, RunStatus.ERROR, RunStatus.CONFIG_ERROR)
MEMBER_COUNTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("succeeded", (RunStatus.SUCCEEDED,)),
    ("failed", FAILED),
    ("running", (RunStatus.RUNNING, RunStatus.DETACHED)),  # RUNNING: the member's status while it runs
    ("queued", (QUEUED,)),
    ("cancelled", (RunStatus.CANCELLED,)),
    ("skipped", (SKIPPED,)),
)
HAS_RESULT = (RunStatus.SUCCEEDED, RunStatus.GATE_FAILED)


@dataclass
class SweepGroup:
    """A sweep and the member runs recorded under ``.trainboard/runs`` (by member index)."""

    data: SweepData
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def sweep_id(self) -> str:
        return self.data.sweep_id

    @property
    def is_live(self) -> bool:
        return self.data.status == RUNNING

    def run_of(self, member: MemberInfo) -> RunRecord | None:
        """The member's run record (None while it is queued, or when it was skipped)."""
        by_id = next((r for r in self.runs if member.run_id and r.run_id == member.run_id), None)
        return by_id or next((r for r in self.runs if r.info.sweep and r.info.sweep.index == member.index), None)


def sweep_link(record: RunRecord) -> str:
    """The id of the sweep the run is a member of ("" for a run of its own)."""
    link = record.info.sweep
    return link.id if link is not None else ""


def group(records: Iterable[RunRecord], sweeps: Iterable[SweepData]) -> list[RunRecord | SweepGroup]:
    """Runs and sweeps, the most recently started first; a sweep's member runs are in its group,
    not in the list (a member whose sweep has no record stays a run of its own)."""
    groups = {data.sweep_id: SweepGroup(data) for data in sweeps}
    entries: list[RunRecord | SweepGroup] = []
    for record in records:
        found = groups.get(sweep_link(record))
        if found is not None:
            found.runs.append(record)
        else:
            entries.append(record)
    for found in groups.values():
        found.runs.sort(key=lambda r: r.info.sweep.index if r.info.sweep else 0)
    entries.extend(groups.values())
    return sorted(entries, key=_started, reverse=True)


def _started(entry: RunRecord | SweepGroup) -> tuple[float, str]:
    if isinstance(entry, SweepGroup):
        return entry.data.created_at or 0.0, entry.sweep_id
    return entry.created_at or 0.0, entry.run_id


def load_groups(store: RunStore) -> list[RunRecord | SweepGroup]:
    """Every run and sweep recorded under the store's root, grouped (see :func:`group`)."""
    return group(store.all(), SweepStore(store.root).all())


def values_label(values: dict[str, str]) -> str:
    """The member's varied values: "params.lr=1e-4 params.epochs=2"."""
    return " ".join(f"{key}={value}" for key, value in values.items())


def members_text(data: SweepData) -> str:
    """"4 members: 2 succeeded, 1 failed, 1 running": the members, counted by how they stand."""
    counts = Counter(member.status for member in data.members)
    parts = [f"{n} {word}" for word, statuses in MEMBER_COUNTS if (n := sum(counts[s] for s in statuses))]
    known = {s for _, statuses in MEMBER_COUNTS for s in statuses}
    parts += [f"{n} {status}" for status, n in counts.items() if status not in known]
    return plural(len(data.members), "member") + (": " + ", ".join(parts) if parts else "")


def best_member(data: SweepData) -> tuple[MemberInfo | None, bool]:
    """The sweep's best member and whether the sweep picked it; while it runs (no pick yet), the
    best so far by the sweep's rule (trainboard.backend.sweep_verdict) among the members done."""
    from trainboard.backend.sweep_verdict import best_member as pick

    picked = data.best is not None
    index = data.best if picked else pick(data.members, data.goal)
    member = next((m for m in data.members if m.index == index), None)
    return member, picked and member is not None


@dataclass(frozen=True)
class Objective:
    """How the sweep's objective reads: its display name and digits, from a member's config."""

    name: str
    digits: int = 4

    def value(self, member: MemberInfo) -> str:
        return "—" if member.objective is None else f"{member.objective:.{self.digits}f}"

    def delta(self, member: MemberInfo) -> str:
        return "" if member.delta is None else f"{member.delta:+.{self.digits}f}"

    def text(self, member: MemberInfo) -> str:
        delta = self.delta(member)
        return f"{self.name} {self.value(member)}" + (f" ({delta})" if delta else "")


def objective_of(found: SweepGroup) -> Objective:
    key = found.data.objective
    for record in found.runs:
        metrics = record.config.get("metrics") if isinstance(record.config, dict) else None
        spec: Any = metrics.get(key) if isinstance(metrics, dict) else None
        if isinstance(spec, dict):
            digits = spec.get("digits", 4)
            return Objective(str(spec.get("display") or key), digits if isinstance(digits, int) else 4)
    return Objective(key or "objective")


def delta_tone(data: SweepData, member: MemberInfo) -> Tone:
    """Good when the member's delta goes the objective's way, bad when it goes against it."""
    if member.delta is None or member.delta == 0:
        return ""
    return "good" if (member.delta > 0) == (data.goal != "min") else "bad"


def best_text(found: SweepGroup) -> tuple[str, Tone]:
    """"F1 0.9000 (+0.0100)" of the best member, or "—"; its tone."""
    member, _ = best_member(found.data)
    if member is None or member.objective is None:
        return "—", ""
    return objective_of(found).text(member), delta_tone(found.data, member)


def best_label(data: SweepData) -> str:
    """"best: params.lr=5e-05" (or "best so far: ..." while the sweep runs), "" when none."""
    member, picked = best_member(data)
    if member is None:
        return ""
    return f"best{'' if picked else ' so far'}: {values_label(member.values)}"


def cost_text(data: SweepData) -> str:
    """The members' summed cost, against the sweep's cap when it has one."""
    cap = f" of ${data.max_cost_usd:.2f}" if data.max_cost_usd is not None else ""
    return f"${data.cost:.2f}{cap}"


def duration_text(data: SweepData, now: float | None = None) -> str:
    """What the sweep took, or "running 3m05s" while it runs."""
    now = time.time() if now is None else now
    if data.status == RUNNING:
        return f"running {format_seconds(now - data.created_at)}"
    end = data.finished_at or max((m.finished_at or 0.0 for m in data.members), default=0.0)
    return format_seconds(end - data.created_at) if end else "—"


def verdict_text(data: SweepData) -> tuple[str, Tone]:
    """The sweep's verdict with its best member named; while it runs, the best so far."""
    best = best_label(data)
    if data.status == RUNNING:
        return best or "running: no member has a result yet", "live"
    said = " · ".join(filter(None, [data.verdict or best, f"stopped: {data.reason}" if data.reason else ""]))
    tone: Tone = "good" if data.exit_code == 0 else ("muted" if data.exit_code is None else "bad")
    return said or "—", tone


def member_tone(status: str) -> Tone:
    if status == RunStatus.SUCCEEDED:
        return "good"
    if status in FAILED:
        return "bad"
    return "live" if status == RUNNING else "muted"


def json_link(record_data: dict[str, Any], data: SweepData | None) -> dict[str, Any]:
    """A member's record as `trainboard runs --json` prints it: its ``sweep`` link gains the sweep's
    status, verdict and best member index (``best``), and whether this member is that one."""
    link = record_data.get("sweep")
    if data is None or not isinstance(link, dict):
        return record_data
    extra = {"status": data.status, "verdict": data.verdict, "best": data.best,
             "is_best": data.best is not None and link.get("index") == data.best}
    return {**record_data, "sweep": {**link, **extra}}

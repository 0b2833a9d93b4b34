"""The sweep's verdict: which member is best, and what the sweep exits with.

- The objective is ``sweep.objective``, or the first metric the config lists
  (each has a goal, ``max`` by default).
- The best member is, among the members with a result (succeeded or
  gate-failed), the one with the best objective value; a tie goes to the lower index.
- The sweep exits with the best member's verdict: 0 when its gates pass, 1 when not.
  Members that failed meanwhile are listed, but do not change it.
- Stopped by a person (Ctrl-C, SIGTERM, cancel): 130, whatever finished.
  Stopped by the cost cap: the best finished member's verdict; 130 when none finished.
- No member with a result: 4 when every member's job failed, else 3.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainboard.backend.config import RunConfig
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.sweep_record import MemberInfo

RESULT_STATUSES = (RunStatus.SUCCEEDED.value, RunStatus.GATE_FAILED.value)


def objective_of(config: RunConfig) -> tuple[str, str]:
    """The metric that picks the best member, and its goal (``max`` or ``min``)."""
    name = config.sweep.objective or next(iter(config.metrics))
    return name, config.metrics[name].goal


def best_member(members: Sequence[MemberInfo], goal: str) -> int | None:
    """The index of the best member with a result, or None."""
    scored = [m for m in members if m.status in RESULT_STATUSES and m.objective is not None]
    if not scored:
        return None
    sign = -1.0 if goal == "max" else 1.0
    return min(scored, key=lambda m: (sign * float(m.objective or 0.0), m.index)).index


def sweep_exit(members: Sequence[MemberInfo], best: int | None, *, cancelled: bool) -> ExitCode:
    """What the sweep exits with (the rule in this module's docstring)."""
    if cancelled:
        return ExitCode.INTERRUPTED
    if best is not None:
        return ExitCode.OK if members[best].passed else ExitCode.GATE_FAILED
    ended = [m for m in members if m.status not in ("queued", "running", "skipped")]
    if any(m.status == RunStatus.CANCELLED.value for m in ended) or not ended:
        return ExitCode.INTERRUPTED
    if all(m.status == RunStatus.JOB_FAILED.value for m in ended):
        return ExitCode.JOB_FAILED
    return ExitCode.INFRA_ERROR


def verdict_line(members: Sequence[MemberInfo], best: int | None, objective: str, base: str) -> str:
    """``best: params.lr=5e-05 · f1 0.8123 (+0.0123 vs main) · gates passed`` or why there is none."""
    if best is None:
        failed = sum(1 for m in members if m.status not in RESULT_STATUSES)
        return f"no best member: none of {len(members)} finished with a result ({failed} did not)"
    m = members[best]
    values = " ".join(f"{k}={v}" for k, v in m.values.items()) or f"member {m.index}"
    delta = f" ({m.delta:+.4f} vs {base})" if m.delta is not None else ""
    gates = "gates passed" if m.passed else "gates failed"
    return f"best: {values} · {objective} {m.objective:.4f}{delta} · {gates}"

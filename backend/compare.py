"""Before, after, delta and gate for each followed metric; the overall verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trainboard.backend.config import Gate, RunConfig


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    key: str
    display: str
    goal: str  # "max" or "min"
    digits: int
    before: float | None
    after: float | None
    gate: str  # the gate as text, "" when the metric has none
    passed: bool | None  # None: no gate on this metric
    reason: str = ""  # why the gate failed, or why it could not be judged

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def improved(self) -> bool | None:
        delta = self.delta
        if delta is None or delta == 0:
            return None
        return delta > 0 if self.goal == "max" else delta < 0

    def fmt(self, value: float | None, signed: bool = False) -> str:
        if value is None:
            return "—"
        return f"{value:+.{self.digits}f}" if signed else f"{value:.{self.digits}f}"


@dataclass(frozen=True, slots=True)
class Comparison:
    base_branch: str
    baseline_run_id: str  # MLflow run id of the baseline, "" when there is none
    baseline_label: str  # what to call it: "main @ 1a2b3c4 (run 2026...)"
    rows: tuple[ComparisonRow, ...]
    final: bool  # False while the job still runs (live deltas)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        rows = tuple(ComparisonRow(**row) for row in data.get("rows", ()))
        return cls(**{**data, "rows": rows})

    @property
    def has_baseline(self) -> bool:
        return bool(self.baseline_run_id)

    @property
    def failed_rows(self) -> tuple[ComparisonRow, ...]:
        return tuple(r for r in self.rows if r.passed is False)

    @property
    def passed(self) -> bool:
        return not self.failed_rows

    @property
    def verdict(self) -> str:
        if self.failed_rows:
            names = ", ".join(r.display for r in self.failed_rows)
            return f"FAIL: gate failed for {names}"
        if not self.has_baseline:
            return f"PASS (no baseline yet on {self.base_branch}: deltas start with the next run)"
        return f"PASS: every gate holds against {self.baseline_label}"


def judge(gate: Gate, before: float | None, after: float | None) -> tuple[bool | None, str]:
    """Whether ``after`` passes ``gate``; the reason when it does not."""
    if after is None:
        return False, "not logged by the job"
    problems = []
    if gate.min is not None and after < gate.min:
        problems.append(f"{after:.4g} < min {gate.min:g}")
    if gate.max is not None and after > gate.max:
        problems.append(f"{after:.4g} > max {gate.max:g}")
    needs_delta = gate.min_delta is not None or gate.max_delta is not None
    if needs_delta and before is not None:
        delta = after - before
        if gate.min_delta is not None and delta < gate.min_delta:
            problems.append(f"Δ {delta:+.4g} < {gate.min_delta:+g}")
        if gate.max_delta is not None and delta > gate.max_delta:
            problems.append(f"Δ {delta:+.4g} > {gate.max_delta:+g}")
    if problems:
        return False, "; ".join(problems)
    if needs_delta and before is None and gate.min is None and gate.max is None:
        return True, "no baseline: delta not checked"
    return True, ""


def compare(
    config: RunConfig,
    after: dict[str, float],
    before: dict[str, float] | None,
    *,
    baseline_run_id: str = "",
    baseline_label: str = "",
    final: bool = True,
) -> Comparison:
    before = before or {}
    rows = []
    for key, spec in config.metrics.items():
        gate = config.compare.gates.get(key)
        b, a = before.get(key), after.get(key)
        if gate is None:
            passed, reason = None, ""
        elif not final:  # mid-run values are not final: gates are judged at the end
            passed, reason = None, "judged at the end"
        else:
            passed, reason = judge(gate, b, a)
        rows.append(
            ComparisonRow(
                key=key,
                display=config.display_name(key),
                goal=spec.goal,
                digits=spec.digits,
                before=b,
                after=a,
                gate=gate.describe() if gate else "",
                passed=passed,
                reason=reason,
            )
        )
    return Comparison(
        base_branch=config.compare.base,
        baseline_run_id=baseline_run_id,
        baseline_label=baseline_label or (f"{config.compare.base}" if baseline_run_id else ""),
        rows=tuple(rows),
        final=final,
    )

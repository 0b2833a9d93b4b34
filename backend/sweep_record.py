"""A sweep's record on disk: ``.trainboard/sweeps/<sweep-id>/sweep.json``.

The sweep's own facts (its varied settings, objective, cap, parent MLflow run,
outcome and best member) and one entry a member; each member is also a whole
run under ``.trainboard/runs/<run-id>/`` whose record names its sweep
(``sweep: {id, index, values}``). Written whole, atomically, on every change.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from trainboard.backend.store import new_run_id

SWEEP_RECORD = "sweep.json"
QUEUED, RUNNING, SKIPPED = "queued", "running", "skipped"  # member statuses besides a run's RunStatus


class MemberInfo(BaseModel):
    """One member as the sweep keeps it: its values, its run, how it ended."""

    index: int
    values: dict[str, str]  # setting -> the value as --set text, only the varied settings
    run_id: str = ""
    mlflow_run_id: str = ""
    status: str = QUEUED  # queued, running, then a RunStatus value, or skipped (never started)
    stage: str = ""
    exit_code: int | None = None
    objective: float | None = None  # the objective's last value
    delta: float | None = None  # against the base branch's value
    passed: bool | None = None  # the member's gates
    cost: float | None = None
    reason: str = ""  # why it was stopped or skipped
    started_at: float | None = None
    finished_at: float | None = None


class SweepData(BaseModel):
    sweep_id: str
    created_at: float = Field(default_factory=time.time)
    config_path: str = ""
    overrides: list[str] = Field(default_factory=list)  # the --set values (masked)
    branch: str = ""
    commit: str = ""
    name: str = ""
    params: list[str] = Field(default_factory=list)  # the varied settings, in declaration order
    mode: str = "grid"
    max_parallel: int = 1
    objective: str = ""
    goal: str = "max"
    max_cost_usd: float | None = None
    cost: float = 0.0
    experiment: str = ""
    parent_run_id: str = ""  # the MLflow run the members are children of
    status: str = RUNNING
    exit_code: int | None = None
    reason: str = ""  # why it stopped early (cancel, cost cap)
    best: int | None = None  # the index of the best member
    verdict: str = ""
    report: str = ""
    finished_at: float | None = None
    trainboard_pid: int | None = None  # the process running the sweep (gone while running: it crashed)
    members: list[MemberInfo] = Field(default_factory=list)

    @property
    def best_member(self) -> MemberInfo | None:
        return None if self.best is None else self.members[self.best]


def new_sweep_id() -> str:
    return "sweep-" + new_run_id()


class SweepStore:
    """The sweeps under ``<root>/sweeps`` (root: the .trainboard folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sweeps = root / "sweeps"

    def path(self, sweep_id: str) -> Path:
        return self.sweeps / sweep_id

    def save(self, data: SweepData) -> None:
        folder = self.path(data.sweep_id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (SWEEP_RECORD + ".tmp")
        tmp.write_text(json.dumps(data.model_dump(mode="json"), indent=1))
        os.replace(tmp, folder / SWEEP_RECORD)

    def load(self, sweep_id: str) -> SweepData:
        return SweepData.model_validate(json.loads((self.path(sweep_id) / SWEEP_RECORD).read_text()))

    def all(self) -> list[SweepData]:
        if not self.sweeps.is_dir():
            return []
        found = []
        for folder in sorted(self.sweeps.iterdir()):
            try:
                found.append(self.load(folder.name))
            except (OSError, ValueError):
                continue
        return found

    def resolve(self, ref: str | None) -> SweepData:
        """A sweep by id or unique id prefix (``sweep-`` may be left out); the latest when None."""
        sweeps = self.all()
        if not sweeps:
            raise LookupError(f"no sweeps recorded under {self.sweeps}")
        if ref is None:
            return sweeps[-1]
        matches = [s for s in sweeps if s.sweep_id in (ref, "sweep-" + ref)] or [
            s for s in sweeps if s.sweep_id.startswith(ref) or s.sweep_id.startswith("sweep-" + ref)]
        if len(matches) != 1:
            known = ", ".join(s.sweep_id for s in sweeps[-5:])
            what = "no sweep" if not matches else f"{len(matches)} sweeps"
            raise LookupError(f"{what} matching {ref!r}; recent sweeps: {known}")
        return matches[0]


def member_link(sweep_id: str, index: int, values: dict[str, str]) -> dict[str, Any]:
    """What a member's run record keeps of its sweep (its ``sweep`` key)."""
    return {"id": sweep_id, "index": index, "values": values}

"""Run records on disk: everything a run produced, under .trainboard/runs/<run-id>/."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD = "record.json"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class RunRecord:
    """The run's state as last written. ``data`` is plain JSON."""

    path: Path  # the run's folder
    data: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.data["run_id"])

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def save(self) -> None:
        tmp = self.path / (RECORD + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path / RECORD)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root  # the .trainboard folder
        self.runs = root / "runs"

    def create(self, run_id: str, **fields: Any) -> RunRecord:
        path = self.runs / run_id
        path.mkdir(parents=True, exist_ok=False)
        record = RunRecord(path=path, data={"run_id": run_id, "created_at": time.time(), **fields})
        record.save()
        return record

    def load(self, run_id: str) -> RunRecord:
        path = self.runs / run_id
        return RunRecord(path=path, data=json.loads((path / RECORD).read_text()))

    def all(self) -> list[RunRecord]:
        if not self.runs.is_dir():
            return []
        records = []
        for path in sorted(self.runs.iterdir()):
            try:
                records.append(RunRecord(path=path, data=json.loads((path / RECORD).read_text())))
            except (OSError, ValueError):
                continue
        return records

    def resolve(self, ref: str | None) -> RunRecord:
        """A run by id, unique id prefix, or the latest when ``ref`` is None."""
        records = self.all()
        if not records:
            raise LookupError(f"no runs recorded under {self.runs}")
        if ref is None:
            return records[-1]
        matches = [r for r in records if r.run_id == ref] or [
            r for r in records if r.run_id.startswith(ref)
        ]
        if len(matches) != 1:
            known = ", ".join(r.run_id for r in records[-5:])
            what = "no run" if not matches else f"{len(matches)} runs"
            raise LookupError(f"{what} matching {ref!r}; recent runs: {known}")
        return matches[0]

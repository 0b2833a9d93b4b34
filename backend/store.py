"""Run records on disk: everything a run produced, under .trainboard/runs/<run-id>/.

A record never holds a secret: its ``config`` and ``overrides`` are kept masked
(trainboard.backend.redact.mask_config), and every string in it passes the run's Redactor
(by default: the secret-named variables of this environment and token shapes)
each time it is written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar, overload

from trainboard.backend.events import StageState
from trainboard.backend.record import (
    BaselineNote,
    ErrorEntry,
    JobInfo,
    MlflowInfo,
    PullRequestInfo,
    RecordError,
    RunData,
    RunnerInfo,
    RunStatus,
    StageInfo,
    StaleMetrics,
    SweepLink,
    coerced,
    typed_view,
)

__all__ = ["RECORD", "RecordError", "RunData", "RunRecord", "RunStatus", "RunStore", "masked_record",
           "new_run_id", "recorded_config"]

T = TypeVar("T")
RECORD = "record.json"
Masker = Callable[[Any], Any]  # a JSON-like value -> the same with secrets masked (Redactor.data)
# Space set aside in each live run's folder, freed when the disk fills so that the
# record's last writes (the outcome, the errors) still land; removed when the run ends.
RESERVE = ".reserve"
RESERVE_BYTES = 256 * 1024


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class _Typed(Generic[T]):
    """A key of the record read through its typed view: ``record.status`` is
    ``record.info.status``. Read-only: ``record.update(status=...)`` checks and writes."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, record: None, owner: type) -> _Typed[T]: ...
    @overload
    def __get__(self, record: RunRecord, owner: type) -> T: ...
    def __get__(self, record: RunRecord | None, owner: type) -> _Typed[T] | T:
        if record is None:
            return self
        value: T = getattr(record.info, self.name)
        return value

    def __set__(self, record: RunRecord, value: Any) -> NoReturn:
        raise AttributeError(f"record.{self.name} is read-only: record.update({self.name}=...) checks and writes it")


@dataclass
class RunRecord:
    """The run's state as last written. ``data`` is the record's JSON, kept as read or
    written (keys this version does not know included); ``info`` and the attributes
    below read it typed (trainboard.backend.record.RunData)."""

    path: Path  # the run's folder
    data: dict[str, Any]
    # Masks every string before it is written; None: this environment's secrets and token shapes.
    redact: Masker | None = field(default=None, repr=False, compare=False)
    _info: RunData | None = field(default=None, init=False, repr=False, compare=False)

    created_at = _Typed[float | None]()
    name = _Typed[str]()
    config_path = _Typed[str]()
    overrides = _Typed[list[str]]()
    config = _Typed[dict[str, Any]]()
    branch = _Typed[str]()
    commit = _Typed[str]()
    dirty = _Typed[bool]()
    runner = _Typed[RunnerInfo]()
    mlflow = _Typed[MlflowInfo]()
    status = _Typed[RunStatus | None]()
    stages = _Typed[dict[str, StageInfo]]()
    trainboard_pid = _Typed[int | None]()
    setup = _Typed[JobInfo | None]()
    job = _Typed[JobInfo | None]()
    dvc = _Typed[JobInfo | None]()
    dvc_files = _Typed[list[str]]()
    job_tracking_uri = _Typed[str | None]()
    job_exit_code = _Typed[int | None]()
    job_seconds = _Typed[float | None]()
    metrics_stale = _Typed[StaleMetrics | None]()
    verdict_on_stale_metrics = _Typed[bool]()
    verdict = _Typed[str]()
    gates_passed = _Typed[bool | None]()
    comparison = _Typed[dict[str, Any] | None]()
    baseline_note = _Typed[BaselineNote | None]()
    pull_request = _Typed[PullRequestInfo | None]()
    report = _Typed[str]()
    cost = _Typed[float | None]()
    stopped_by = _Typed[str]()
    sweep = _Typed[SweepLink | None]()
    exit_code = _Typed[int | None]()
    finished_at = _Typed[float | None]()
    duration = _Typed[float | None]()
    errors = _Typed[list[ErrorEntry]]()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "data":  # a new JSON: read it typed again when asked
            super().__setattr__("_info", None)

    @property
    def info(self) -> RunData:
        """The record typed; a value that does not fit its key's type reads as the default."""
        if self._info is None:
            self._info = typed_view(self.data)
        return self._info

    @property
    def run_id(self) -> str:
        return self.info.run_id or self.path.name

    def get(self, key: str, default: Any = None) -> Any:
        """The key's value in the JSON, as written (prefer the typed attributes)."""
        return self.data.get(key, default)

    def update(self, **fields: Any) -> None:
        """Set keys, each checked against its type (RecordError when it does not fit), and save."""
        self.data.update(coerced(fields, f"run record {self.path / RECORD}"))
        self.save()

    def merge(self, section: str, **fields: Any) -> None:
        """Set keys inside one section (``runner``, ``mlflow``), keeping its others; checked, and saved."""
        current = self.data.get(section)
        self.update(**{section: {**(current if isinstance(current, dict) else {}), **fields}})

    def set_stage(self, stage: str, state: StageState, detail: str, elapsed: float, started_at: float | None) -> None:
        """Set one of ``stages`` (checked); written by the next save."""
        info = {"state": state, "detail": detail, "elapsed": elapsed, "started_at": started_at}
        checked = coerced({"stages": {stage: info}}, f"run record {self.path / RECORD}")["stages"]
        self.data.setdefault("stages", {}).update(checked)
        self._info = None

    def add_error(self, stage: str | None, message: str) -> None:
        """Append to ``errors`` (checked); written by the next save."""
        checked = coerced({"errors": [{"stage": stage, "message": message}]}, f"run record {self.path / RECORD}")
        self.data.setdefault("errors", []).extend(checked["errors"])
        self._info = None

    def save(self) -> None:
        self._info = None  # ``data`` may have been changed in place
        text = json.dumps(masked_record(self.data, self.redact), indent=2, default=str)
        try:
            self._write(text)
        except OSError as exc:
            # A full disk: give back the space set aside when the run began, so that the
            # record can still say how the run ended; then try once more.
            if exc.errno != errno.ENOSPC or not self.release_reserve():
                raise
            self._write(text)

    def _write(self, text: str) -> None:
        tmp = self.path / (RECORD + ".tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, self.path / RECORD)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def release_reserve(self) -> bool:
        """Delete the run's reserve file; whether there was one to free."""
        try:
            (self.path / RESERVE).unlink()
            return True
        except OSError:
            return False


def masked_record(data: dict[str, Any], redact: Masker | None = None) -> dict[str, Any]:
    """A record as it may be written or printed: the config and overrides masked, and
    every string through ``redact`` (default: this environment's secrets, token shapes)."""
    from trainboard.backend.redact import Redactor, mask_config, mask_overrides

    data = dict(data)
    if "config" in data:
        data["config"] = mask_config(data["config"])
    if isinstance(data.get("overrides"), list):
        data["overrides"] = mask_overrides(str(o) for o in data["overrides"])
    masker = redact or Redactor.from_env().data
    return dict(masker(json.loads(json.dumps(data, default=str))))


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root  # the .trainboard folder
        self.runs = root / "runs"

    def create(self, run_id: str, redact: Masker | None = None, **fields: Any) -> RunRecord:
        """A new run's record; ``redact`` masks what it writes (see RunRecord.redact).

        The config and overrides are kept masked from the start, in memory too."""
        path = self.runs / run_id
        fields = coerced({"run_id": run_id, "created_at": time.time(), **fields}, f"run record {path / RECORD}")
        path.mkdir(parents=True, exist_ok=False)
        with open(path / RESERVE, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)  # real blocks, not a sparse file
        data = masked_record(fields, redact)
        record = RunRecord(path=path, data=data, redact=redact)
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


def recorded_config(record: RunRecord) -> dict[str, Any]:
    """The run's config as recorded, with the values the record masks read back from the
    config file it was run with, when that file is still there; what it cannot tell stays ``***``.

    Only the file is read (not the masked ``--set`` values); a running job's own
    environment knows the rest (see Session._attached).
    """
    from trainboard.backend.config import ConfigError, load_config
    from trainboard.backend.redact import MASK, unmask_config

    masked = record.config
    if MASK not in json.dumps(masked):
        return masked
    where = record.config_path
    if not where:
        return masked
    path = Path(str(where))
    if not path.is_absolute():  # records written before config_path was absolute
        path = record.path.parent.parent.parent / path  # <root>/.trainboard/runs/<id>
    try:
        loaded = load_config(path)
    except (ConfigError, OSError, RecursionError):
        return masked
    return dict(unmask_config(masked, loaded.raw))

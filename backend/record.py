"""The run record's typed shape: the RunData model of ``record.json`` (its RunStatus is in exitcodes).

RunData names every key trainboard writes in ``.trainboard/runs/<id>/record.json``,
with its type. Every key is optional (an early record lacks the newer ones) and every
model keeps the keys it does not know (a newer trainboard's), so that any record that
was ever written still reads. :func:`typed_view` reads a record's JSON leniently: a value
of the wrong type reads as its key's default, and the JSON itself is never changed
(see trainboard.backend.store.RunRecord, which keeps the JSON and reads it through here).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainboard.backend.events import StageState
from trainboard.backend.exitcodes import RunStatus as RunStatus  # re-exported: the record's status


class _Part(BaseModel):
    """Keys of other trainboard versions are kept; NaN and infinities stay floats."""

    model_config = ConfigDict(extra="allow")


class RunnerInfo(_Part):
    """``runner``: where the job ran, and what reattach and reap need (``state``)."""

    kind: str = ""  # "local", "ssh", "ec2"
    address: str = ""
    workspace: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    ready_at: float | None = None
    state: dict[str, Any] = Field(default_factory=dict)  # the runner's own (Runner.state())
    hourly_price: float | None = None


class MlflowInfo(_Part):
    tracking_uri: str = ""
    experiment: str = ""
    run_id: str = ""  # "" until the MLflow run is created
    baseline_run_id: str = ""
    baseline_source: str = ""  # "mlflow" or "notes"


class StageInfo(_Part):
    """One of ``stages``, keyed by the stage's name."""

    state: StageState = StageState.PENDING
    detail: str = ""
    elapsed: float = 0.0
    started_at: float | None = None


class JobInfo(_Part):
    """``setup``, ``job`` or ``dvc``: a detached job as it was started on the runner."""

    pid: int = 0
    log: str = ""
    exit_path: str = ""
    started_at: float | None = None


class PullRequestInfo(_Part):
    number: int = 0
    url: str = ""
    comment_url: str = ""
    branch: str = ""  # the outputs branch pushed


class SweepLink(_Part):
    """``sweep``: the sweep a member run belongs to (``.trainboard/sweeps/<id>/sweep.json``)."""

    id: str = ""
    index: int = 0
    values: dict[str, str] = Field(default_factory=dict)  # the varied settings' values


class BaselineNote(_Part):
    """``baseline_note``: the git note a base-branch run recorded as the next runs' baseline."""

    commit: str = ""
    pushed_to: str = ""
    problem: str = ""


class StaleMetrics(_Part):
    """``metrics_stale``: since when the job's metrics stopped arriving, and why."""

    since: float | None = None
    reason: str = ""


class ErrorEntry(_Part):
    stage: str | None = None  # None: not in a stage
    message: str = ""


class RunData(_Part):
    """Every key of a run record, in the order a run writes them."""

    run_id: str = ""
    created_at: float | None = None
    name: str = ""
    config_path: str = ""  # absolute since attach reads the secrets back from it
    overrides: list[str] = Field(default_factory=list)  # masked --set values
    config: dict[str, Any] = Field(default_factory=dict)  # masked
    branch: str = ""
    commit: str = ""
    dirty: bool = False
    runner: RunnerInfo = Field(default_factory=RunnerInfo)
    mlflow: MlflowInfo = Field(default_factory=MlflowInfo)
    status: RunStatus | None = None
    stages: dict[str, StageInfo] = Field(default_factory=dict)
    trainboard_pid: int | None = None
    setup: JobInfo | None = None
    job: JobInfo | None = None
    dvc: JobInfo | None = None
    dvc_files: list[str] = Field(default_factory=list)
    job_tracking_uri: str | None = None
    job_exit_code: int | None = None
    job_seconds: float | None = None
    metrics_stale: StaleMetrics | None = None  # None again once they come back
    verdict_on_stale_metrics: bool = False
    verdict: str = ""
    gates_passed: bool | None = None
    comparison: dict[str, Any] | None = None  # Comparison.to_dict()
    baseline_note: BaselineNote | None = None
    pull_request: PullRequestInfo | None = None
    report: str = ""
    cost: float | None = None
    stopped_by: str = ""  # why the run was stopped from outside: "cost cap ...", "sweep cancelled"
    sweep: SweepLink | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    duration: float | None = None
    errors: list[ErrorEntry] = Field(default_factory=list)


class RecordError(ValueError):
    """A value written to a run record that does not fit its key's type."""


def coerced(fields: dict[str, Any], where: str = "run record") -> dict[str, Any]:
    """``fields`` as they will be written (JSON: a mapping's keys become strings, tuples
    lists), checked against RunData and coerced to their keys' types (a RunStatus for a
    status); keys RunData does not name pass unchecked.

    Raises RecordError naming each key whose value does not fit."""
    fields = json.loads(json.dumps(fields, default=str))
    try:
        model = RunData.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {_short(err['input'])})"
            for err in exc.errors(include_url=False)
        )
        raise RecordError(f"{where}: {problems}") from None
    known = model.model_dump(include=set(fields) & set(RunData.model_fields), exclude_unset=True)
    return {key: known[key] if key in known else value for key, value in fields.items()}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def typed_view(data: dict[str, Any]) -> RunData:
    """The record's JSON as RunData; a value that does not fit its type reads as its default."""
    while True:  # each round drops the values pydantic found wrong
        try:
            return RunData.model_validate(data)
        except ValidationError as exc:
            before = data
            for err in reversed(exc.errors(include_url=False)):  # a list's later items first
                data = _without(data, err["loc"])
            if data == before:  # not a JSON object at all
                return RunData()


def _without(data: Any, loc: tuple[int | str, ...]) -> Any:
    """A copy of ``data`` without the value at ``loc`` (or the deepest part of it that exists)."""
    if not loc or not isinstance(data, dict | list):
        return data
    head, rest = loc[0], loc[1:]
    if isinstance(data, dict) and head in data:
        inner = _without(data[head], rest) if rest and _has(data[head], rest[0]) else None
        return {k: v for k, v in data.items() if k != head} if inner is None else {**data, head: inner}
    if isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data):
        inner = _without(data[head], rest) if rest and _has(data[head], rest[0]) else None
        return data[:head] + data[head + 1:] if inner is None else [*data[:head], inner, *data[head + 1:]]
    return data


def _has(data: Any, key: int | str) -> bool:
    if isinstance(data, dict):
        return key in data
    return isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)

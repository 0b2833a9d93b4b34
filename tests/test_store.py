"""The run record: records of every shape ever written load, typed; what is written keeps
the JSON's keys and values; RunStatus names every status trainboard writes; a value of
the wrong type is refused when written and read as its default when found on disk."""

from __future__ import annotations

import json
import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from trainboard.backend.events import StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.record import RecordError, RunData, RunStatus
from trainboard.backend.store import RECORD, RunRecord, RunStore


def same(value: Any) -> Any:
    return value  # a redactor that masks nothing: the values written are the ones given


def on_disk(store: RunStore, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((store.runs / run_id / RECORD).read_text())
    return data


def write_old(store: RunStore, data: dict[str, Any]) -> RunRecord:
    """A record as an older trainboard left it, written by hand."""
    path = store.runs / str(data["run_id"])
    path.mkdir(parents=True)
    (path / RECORD).write_text(json.dumps(data, indent=2))
    return store.load(str(data["run_id"]))


# A record from before runners, DVC, pull requests, git notes and stale metrics.
EARLY = {
    "run_id": "20250101-120000-abcd",
    "created_at": 1735732800,
    "name": "tiny",
    "config": {"name": "tiny", "job": {"command": "python job.py"}},
    "branch": "main",
    "commit": "0123456789abcdef",
    "dirty": False,
    "status": "succeeded",
    "stages": {"train": {"state": "done", "detail": "", "elapsed": 2.5}},
    "verdict": "all gates passed",
    "gates_passed": True,
    "exit_code": 0,
    "duration": 12,
}

# A record of a later run that lost its machine, with keys no version of this code knows.
FUTURE = {
    "run_id": "20260101-120000-beef",
    "created_at": 1767268800.5,
    "status": "error",
    "runner": {"kind": "ec2", "address": "10.0.0.7", "state": {"instance_id": "i-1"}, "zone": "eu-west-1a"},
    "mlflow": {"tracking_uri": "sqlite:///x.db", "experiment": "e", "run_id": "m1", "artifact_store": "s3://b"},
    "errors": [{"stage": "provision", "message": "no capacity", "code": 17}],
    "shard": {"index": 3, "of": 8},
    "tags": ["nightly"],
}


def test_an_early_record_loads_typed(tmp_path: Path) -> None:
    record = write_old(RunStore(tmp_path), EARLY)
    assert record.run_id == EARLY["run_id"]
    assert record.status is RunStatus.SUCCEEDED and record.status.has_result and not record.status.is_live
    assert record.created_at == 1735732800.0 and record.duration == 12.0
    assert record.branch == "main" and record.commit.startswith("0123456") and record.dirty is False
    assert record.stages["train"].state is StageState.DONE and record.stages["train"].started_at is None
    # keys the early record lacks read as their defaults
    assert record.runner.kind == "" and record.runner.hourly_price is None
    assert record.mlflow.run_id == "" and record.job is None and record.cost is None
    assert record.errors == [] and record.dvc_files == [] and record.pull_request is None
    assert record.get("runner") is None  # the JSON itself is as written


def test_unknown_keys_are_kept_through_a_rewrite(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = write_old(store, FUTURE)
    assert record.status is RunStatus.ERROR and not record.status.is_live
    assert record.runner.kind == "ec2" and record.runner.state == {"instance_id": "i-1"}
    assert record.errors[0].stage == "provision" and record.errors[0].message == "no capacity"
    assert record.info.model_extra == {"shard": {"index": 3, "of": 8}, "tags": ["nightly"]}
    record.redact = same
    record.update(cost=1.5)
    assert on_disk(store, FUTURE["run_id"]) == {**FUTURE, "cost": 1.5}


@pytest.mark.parametrize("status", [s.value for s in RunStatus])
def test_every_status_loads(tmp_path: Path, status: str) -> None:
    record = write_old(RunStore(tmp_path), {**EARLY, "status": status})
    assert record.status is RunStatus(status)
    assert record.status == status  # a StrEnum: equal to the string on disk


def test_a_record_without_status_or_run_id_loads(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    path = store.runs / "r0"
    path.mkdir(parents=True)
    (path / RECORD).write_text(json.dumps({"name": "x"}))
    (record,) = store.all()
    assert record.status is None and record.run_id == "r0"  # the folder names it


def test_create_and_update_keep_the_keys_and_values_given(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = store.create(
        "r1", redact=same, name="tiny", config_path="/repo/trainboard.yaml", overrides=["params.lr=0.1"],
        config={"name": "tiny"}, branch="feature", commit="abc1234", dirty=True, runner={"kind": "local"},
        mlflow={"tracking_uri": "sqlite:///m.db", "experiment": "tiny", "run_id": ""},
        status="running", stages={}, trainboard_pid=4242,
    )
    record.update(runner={**record.get("runner"), "state": {"workspace": "/repo"}})
    record.update(job={"pid": 7, "log": "/w/job.log", "exit_path": "/w/job.exit", "started_at": 10.5})
    record.update(job_exit_code=0, job_seconds=3.25, metrics_stale=None)
    record.update(verdict="f1 0.9 (+0.1)", gates_passed=True, comparison={"rows": [], "verdict": "v", "x": math.inf})
    record.update(pull_request={"number": 3, "url": "u", "comment_url": "", "branch": "trainboard/feature"})
    record.update(status=ExitCode.OK.status, exit_code=int(ExitCode.OK), job_exit_code=0,
                  finished_at=20.0, duration=9.5)
    record.data.setdefault("errors", []).append({"stage": None, "message": "m"})  # as the session does
    record.save()
    written = on_disk(store, "r1")
    assert list(written) == ["run_id", "created_at", "name", "config_path", "overrides", "config", "branch",
                             "commit", "dirty", "runner", "mlflow", "status", "stages", "trainboard_pid", "job",
                             "job_exit_code", "job_seconds", "metrics_stale", "verdict", "gates_passed",
                             "comparison", "pull_request", "exit_code", "finished_at", "duration", "errors"]
    assert written["runner"] == {"kind": "local", "state": {"workspace": "/repo"}}  # no defaults added
    assert written["job"] == {"pid": 7, "log": "/w/job.log", "exit_path": "/w/job.exit", "started_at": 10.5}
    assert written["status"] == "succeeded" and written["metrics_stale"] is None
    assert written["comparison"]["x"] == math.inf and written["errors"] == [{"stage": None, "message": "m"}]
    again = store.load("r1")
    assert again.data == written and again.status is RunStatus.SUCCEEDED and again.errors[0].message == "m"
    again.redact = same
    again.save()
    assert on_disk(store, "r1") == written


def test_values_are_checked_as_they_will_be_written(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    config = {"name": "tiny", "params": {"class_weights": {0: 1.0, 1: 2.5}, "sizes": (32, 64)}}
    record = store.create("r1", redact=same, config=config, overrides=("params.lr=0.1",), status="running")
    record.update(report=Path("/runs/r1/report.md"), cost=float("nan"))
    written = on_disk(store, "r1")
    assert written["config"]["params"] == {"class_weights": {"0": 1.0, "1": 2.5}, "sizes": [32, 64]}
    assert written["overrides"] == ["params.lr=0.1"] and written["report"] == "/runs/r1/report.md"
    assert math.isnan(written["cost"]) and record.cost is not None and math.isnan(record.cost)
    assert record.data["config"] == written["config"]  # in memory as on disk


def test_update_refuses_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = store.create("r1", redact=same, status="running")
    before = (store.runs / "r1" / RECORD).read_text()
    with pytest.raises(RecordError, match=r"job_exit_code: .*integer.*'abc'"):
        record.update(job_exit_code="abc")
    with pytest.raises(RecordError, match=r"status: Input should be 'running', .*'finished'"):
        record.update(status="finished")
    with pytest.raises(RecordError, match=r"runner\.hourly_price"):
        record.update(runner={"kind": "ec2", "hourly_price": "cheap"})
    with pytest.raises(RecordError, match="stages"):
        store.create("r2", status="running", stages={"train": {"state": "exploded"}})
    assert not (store.runs / "r2").exists()  # refused before anything was written
    assert (store.runs / "r1" / RECORD).read_text() == before and record.status is RunStatus.RUNNING
    record.update(shard={"any": "value"})  # a key this version does not know is kept as given
    assert on_disk(store, "r1")["shard"] == {"any": "value"}


def test_the_typed_attributes_are_read_only(tmp_path: Path) -> None:
    record = RunStore(tmp_path).create("r1", redact=same, status="running")
    with pytest.raises(AttributeError, match=r"update\(status="):
        record.status = RunStatus.ERROR  # type: ignore[misc]
    assert record.status is RunStatus.RUNNING


def test_a_value_of_the_wrong_type_on_disk_reads_as_its_default(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    bad = {**EARLY, "status": "exploded", "duration": "long", "dirty": "perhaps",
           "stages": {"train": {"state": "done", "elapsed": "x"}, "sync": {"state": "done", "elapsed": 1}},
           "runner": {"kind": "ssh", "ready_at": [1]},
           "errors": [{"message": 1}, {"message": "kept"}, {"message": ["x"]}]}
    record = write_old(store, bad)
    assert record.status is None and record.duration is None and record.dirty is False
    assert record.stages["train"].elapsed == 0.0 and record.stages["sync"].elapsed == 1.0
    assert record.runner.kind == "ssh" and record.runner.ready_at is None
    assert [e.message for e in record.errors] == ["", "kept", ""]  # each bad value, not its neighbours
    assert record.branch == "main" and record.verdict == "all gates passed"  # the rest reads as written
    record.redact = same
    record.save()
    assert on_disk(store, EARLY["run_id"]) == bad  # nothing is lost on a rewrite


def test_the_typed_view_follows_changes_in_place(tmp_path: Path) -> None:
    record = RunStore(tmp_path).create("r1", redact=same, status="running", stages={})
    assert record.stages == {}
    record.data["stages"]["train"] = {"state": "running", "detail": "", "elapsed": 0.0, "started_at": 1.0}
    record.save()
    assert record.stages["train"].state is StageState.RUNNING
    record.data = {**record.data, "status": "cancelled"}
    assert record.status is RunStatus.CANCELLED


def test_stages_and_errors_are_set_checked_and_written_by_the_next_save(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    record = store.create("r1", redact=same, status="running", stages={})
    record.set_stage("train", StageState.DONE, "", 2, 10.0)
    record.add_error(None, "lost the runner")
    assert record.stages["train"].elapsed == 2.0 and record.errors[0].message == "lost the runner"
    assert "errors" not in on_disk(store, "r1")
    record.save()
    written = on_disk(store, "r1")
    assert written["stages"] == {"train": {"state": "done", "detail": "", "elapsed": 2.0, "started_at": 10.0}}
    assert written["errors"] == [{"stage": None, "message": "lost the runner"}]
    with pytest.raises(RecordError, match="stages.train.elapsed"):
        record.set_stage("train", StageState.DONE, "", "long", None)  # type: ignore[arg-type]


def test_run_record_reads_every_key_of_the_model() -> None:
    typed = {name: value for name, value in vars(RunRecord).items() if type(value).__name__ == "_Typed"}
    assert set(typed) == set(RunData.model_fields) - {"run_id"}  # run_id: a property (the folder's name if absent)
    hints = typing.get_type_hints(RunData)
    for name, descriptor in typed.items():
        (declared,) = typing.get_args(descriptor.__orig_class__)
        assert declared == hints[name], name


def test_run_status_names_every_status_written() -> None:
    written = {code.status for code in ExitCode} | {"running"}
    assert written == {s.value for s in RunStatus}
    # Statuses are written as RunStatus members (the stages, hooks and restore), never as literals.
    literals, members = set(), set()
    for source in sorted((ROOT / "backend").rglob("*.py")):
        text = source.read_text()
        literals |= set(re.findall(r"status=\"([a-z-]+)\"", text))
        members |= set(re.findall(r"status=RunStatus\.([A-Z_]+)", text))
    assert literals == set()
    assert {"RUNNING", "SUCCEEDED"} <= members <= set(RunStatus.__members__)
    assert {s for s in RunStatus if s.is_live} == {RunStatus.RUNNING, RunStatus.DETACHED}
    assert {s for s in RunStatus if s.has_result} == {RunStatus.SUCCEEDED, RunStatus.GATE_FAILED}


def test_every_status_has_a_mark() -> None:
    from trainboard.tui.widgets.marks import STATUS_MARKS

    assert set(STATUS_MARKS) == set(RunStatus)
    assert STATUS_MARKS.get("gate-failed") == STATUS_MARKS[RunStatus.GATE_FAILED]  # read back as a string

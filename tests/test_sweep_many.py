"""A sweep of 100 tiny members on the local runner, 8 at a time: each member a whole run whose
job prints its metric (no MLflow in the job); 100 records, 100 MLflow children of one parent,
the best picked; only the best member's report draws its plot."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import make_tiny_repo
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_record import SweepStore
from trainboard.backend.sweep_spec import plan
from trainboard.backend.tracking import Tracking

MEMBERS = 100

# The member's value of params.i, read from its params.yaml, printed as its F1 (and a loss).
JOB = textwrap.dedent("""\
    i=$(sed -n 's/^i: //p' params.yaml)
    echo "member $i"
    echo "trainboard:metric f1=0.$(printf %03d "$i") loss=$((1000 - i)) step=1"
    """)

CONFIG = textwrap.dedent("""\
    name: many
    runner:
      kind: local
    job:
      command: bash job.sh
    mlflow:
      tracking_uri: sqlite:///.trainboard/mlflow.db
      experiment: many
    metrics:
      f1: {display: F1, goal: max}
      loss: {display: Loss, goal: min}
    compare:
      base: main
    params:
      i: 0
    sweep:
      params: {params.i: "range(0,100)"}
      max_parallel: 8
    """)


@pytest.fixture
def many_repo(tmp_path: Path, empty_mlflow_db: Path) -> Path:
    repo = make_tiny_repo(tmp_path / "repo", {"job.sh": JOB, "tb.yaml": CONFIG})
    (repo / ".trainboard").mkdir()
    shutil.copy(empty_mlflow_db, repo / ".trainboard" / "mlflow.db")
    return repo


async def test_a_sweep_of_100_members(many_repo: Path) -> None:
    loaded = load_config(many_repo / "tb.yaml")
    members, configs = plan(loaded, [], many_repo)
    assert len(members) == MEMBERS
    sweep = Sweep(loaded, members, configs, root=many_repo)
    assert await sweep.run() is ExitCode.OK

    data = SweepStore(many_repo / ".trainboard").load(sweep.sweep_id)
    assert [m.status for m in data.members] == ["succeeded"] * MEMBERS
    assert data.best == MEMBERS - 1 and data.members[-1].values == {"params.i": str(MEMBERS - 1)}
    assert [m.objective for m in data.members] == [pytest.approx(i / 1000) for i in range(MEMBERS)]
    assert data.verdict.startswith(f"best: params.i={MEMBERS - 1} · f1 0.0990")

    runs = sorted((many_repo / ".trainboard" / "runs").iterdir())
    records = [json.loads((run / "record.json").read_text()) for run in runs]
    assert len(records) == MEMBERS
    assert sorted(r["sweep"]["index"] for r in records) == list(range(MEMBERS))
    assert {r["sweep"]["id"] for r in records} == {sweep.sweep_id}
    assert all(r["status"] == "succeeded" for r in records)

    client = Tracking(f"sqlite:///{many_repo / '.trainboard' / 'mlflow.db'}", "many").client
    experiment = client.get_experiment_by_name("many").experiment_id
    kids = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{data.parent_run_id}'",
                              max_results=1000)
    assert len(kids) == MEMBERS
    by_index = {int(k.data.tags["trainboard.sweep.index"]): k for k in kids}
    assert sorted(by_index) == list(range(MEMBERS))
    assert all(k.info.status == "FINISHED" for k in kids)
    assert {i: k.data.metrics["f1"] for i, k in by_index.items()} == {i: pytest.approx(i / 1000)
                                                                       for i in range(MEMBERS)}
    best = [i for i, k in by_index.items() if k.data.tags.get("trainboard.sweep.best") == "true"]
    assert best == [MEMBERS - 1]
    parent = client.get_run(data.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_f1"] == pytest.approx(0.099)

    # A member's plot is drawn only for the sweep's best: the others' reports have none.
    plotted = sorted(r["sweep"]["index"] for run, r in zip(runs, records, strict=True)
                     if (run / "metrics.png").exists())
    assert plotted == [MEMBERS - 1]
    best_run = next(run for run, r in zip(runs, records, strict=True) if r["sweep"]["index"] == MEMBERS - 1)
    assert "![metrics per step](metrics.png)" in (best_run / "report.md").read_text()
    other = next(run for run, r in zip(runs, records, strict=True) if r["sweep"]["index"] == 0)
    assert "| F1 | — | 0.0000 |" in (other / "report.md").read_text()
    assert "metrics.png" not in (other / "report.md").read_text()


async def test_members_of_one_sweep_share_one_baseline(many_repo: Path) -> None:
    """The baseline is looked up once a sweep: a base-branch run that finishes while the sweep
    runs is not the baseline of its later members (every member compares with the same one)."""
    from trainboard.backend.session import Session
    from trainboard.backend.sweep_events import MemberChanged
    from trainboard.backend.tracking import BRANCH_TAG

    assert await Session(load_config(many_repo / "tb.yaml"), root=many_repo).run() is ExitCode.OK
    (first,) = [json.loads((run / "record.json").read_text()) for run in (many_repo / ".trainboard" / "runs").iterdir()]
    client = Tracking(f"sqlite:///{many_repo / '.trainboard' / 'mlflow.db'}", "many").client
    experiment = client.get_experiment_by_name("many").experiment_id
    newer: list[str] = []

    def base_run_finishes(event: object) -> None:  # after the first member: a newer run of main
        if isinstance(event, MemberChanged) and event.index == 0 and event.status == "succeeded" and not newer:
            run = client.create_run(experiment, tags={BRANCH_TAG: "main"})
            client.log_metric(run.info.run_id, "f1", 0.5)
            client.set_terminated(run.info.run_id, "FINISHED")
            newer.append(run.info.run_id)

    loaded = load_config(many_repo / "tb.yaml", ["sweep.max_parallel=1"])
    members, configs = plan(loaded, ["params.i=range(0,3)"], many_repo)
    sweep = Sweep(loaded, members, configs, root=many_repo)
    sweep.subscribe(base_run_finishes)
    assert await sweep.run() is ExitCode.OK
    assert newer
    records = [json.loads((many_repo / ".trainboard" / "runs" / m.run_id / "record.json").read_text())
               for m in sweep.data.members]
    assert [r["mlflow"]["baseline_run_id"] for r in records] == [first["mlflow"]["run_id"]] * 3
    assert [m.delta for m in sweep.data.members] == [pytest.approx(i / 1000) for i in range(3)]

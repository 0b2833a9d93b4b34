"""Snapshots of the Quick start's 1-epoch run caught mid-training: the job's progress under
the train stage (steps, throughput, ETA) and live metrics from the first evaluations.

The run is real: a job shaped like the example's (examples/intents: 1 epoch of 128 steps,
a ``trainboard:progress`` line and a ``loss`` point at step 5 and every 20 steps, an
evaluation logging F1, precision and recall every 32 steps), without torch, on the local
runner with MLflow's SQLite store, under the Quick start's metrics (sample_params.yaml).
Its events are recorded and normalised as in tests/snapshot_support.py; what that does not
fix here, the arrival times of the progress lines (and so the throughput and the ETA), is
set as if the job made 2.5 steps a second. The stream is cut at step 80 of 128.

The baselines live in tests/__snapshots__/test_snapshots_progress/.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from snapshot_support import (
    SCHEDULE,
    T0,
    FrozenClock,
    Normaliser,
    Recording,
    crashed,
    frozen_clock,
    local_branch_names,
    record,
    replaying_dashboard,
    settle,
)
from textual.pilot import Pilot

from tests.conftest import make_tiny_repo
from trainboard.backend import events as ev
from trainboard.backend.events import Stage, StageState
from trainboard.tui.widgets.stages import StageList

pytestmark = pytest.mark.xdist_group("snapshots")

SIZE = (100, 30)
TALL = (120, 48)  # roomy (44 rows and more): the history plot in the side column
RUN_ID = "20260101-090000-9a55"
STEPS = 128
RATE = 2.5  # steps a second, as the normalised stream has it
CUT = 80  # the step the dashboard is caught at
SnapCompare = Callable[..., bool]

QUICK_START_CONFIG = textwrap.dedent(
    """\
    name: intents-minilm
    runner:
      kind: local
    job:
      command: python train.py
      outputs: [metrics.json]
    mlflow:
      tracking_uri: sqlite:///.trainboard/mlflow.db
      experiment: intents-minilm
      poll_interval: 0.2
    metrics:
      f1: {display: F1, goal: max}
      precision: {display: Precision, goal: max}
      recall: {display: Recall, goal: max}
      loss: {display: Train loss, goal: min}
    compare:
      base: main
      gates:
        f1: {min_delta: -0.005}
        precision: {min: 0.5}
    params:
      epochs: 1
      log_every: 20
      evals_per_epoch: 4
    """
)

# The example job's outline: its log lines, progress lines and MLflow points, made-up numbers,
# a pause after each point so that the 0.2 s metric poll sees every one.
QUICK_START_JOB = textwrap.dedent(
    """
    import json, os, time
    import yaml
    from mlflow.tracking import MlflowClient
    params = yaml.safe_load(open("params.yaml"))
    epochs, per_epoch, log_every = int(params["epochs"]), 128, int(params["log_every"])
    total, eval_every = epochs * per_epoch, per_epoch // int(params["evals_per_epoch"])
    client, run_id = MlflowClient(), os.environ["MLFLOW_RUN_ID"]

    def point(step, **values):
        for key, value in values.items():
            client.log_metric(run_id, key, value, step=step)
        time.sleep(0.5)

    print(f"split: 1700 train / 300 test rows (stratified)", flush=True)
    print(f"training: {epochs} epoch(s) x {per_epoch} steps, batch 16, on cpu", flush=True)
    print(f"trainboard:progress step=0 total={total} epoch=1/{epochs}", flush=True)
    scores = {}
    for step in range(1, total + 1):
        epoch = (step - 1) // per_epoch + 1
        loss = 3.1 * 0.985 ** step
        if step == 5 or step % log_every == 0 or step % per_epoch == 0:
            print(f"trainboard:progress step={step} total={total} epoch={epoch}/{epochs} "
                  f"loss={loss:.4f} lr=9.80e-05 samples_per_s=40.0", flush=True)
            point(step, loss=loss)
        if step % eval_every == 0:
            f1 = round(0.93 - 0.8 * 0.975 ** step, 4)
            scores = dict(f1=f1, precision=round(f1 + 0.02, 4), recall=round(f1 - 0.01, 4))
            print(f"eval at step {step}/{total} (epoch {step / per_epoch:.2f}): "
                  + " ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
            point(step, **scores)
    json.dump({**scores, "loss": loss}, open("metrics.json", "w"))
    print("wrote metrics.json", flush=True)
    """
)


def quick_start_repo(repo: Path) -> Path:
    return make_tiny_repo(repo, {"train.py": QUICK_START_JOB, "tb.yaml": QUICK_START_CONFIG})


def progress_time(step: int) -> float:
    """When the normalised job reached ``step``: RATE steps a second from the train stage's start."""
    return T0 + SCHEDULE[Stage.TRAIN][0] + step / RATE


def normalised(repo: Path, recording: Recording) -> list[ev.Event]:
    """The events as snapshot_support normalises them; then progress and metric times from
    ``progress_time`` (the throughput and ETA a job making RATE steps a second would get)."""
    normaliser = Normaliser(repo)
    normaliser.learn(recording.events)
    out: list[ev.Event] = []
    for event in normaliser.events(recording.events):
        match event:
            case ev.JobProgress(step=step, total=total):
                rate = RATE if step > 0 else None
                eta = (total - step) / RATE if rate and total else None
                event = replace(event, rate=rate, eta=eta, at=progress_time(step))
            case ev.MetricPoints(points=points):
                event = replace(event, points=tuple(
                    replace(p, timestamp=int(progress_time(p.step) * 1000)) for p in points))
        out.append(event)
    return out


def until_progress(events: list[ev.Event], step: int) -> list[ev.Event]:
    """The stream as of the job's progress line at ``step``: the log up to that line, the
    progress and metric points up to that step, the rest up to the train stage's end (each
    cut on its own: the log tail and the metric poll race each other)."""
    out: list[ev.Event] = []
    log_done = beyond = False
    marker = f"trainboard:progress step={step} "
    for event in events:
        match event:
            case ev.StageChanged(stage=Stage.TRAIN, state=state) if state is not StageState.RUNNING:
                break
            case ev.LogLines(lines=lines):
                if log_done:
                    continue
                kept = []
                for line in lines:
                    kept.append(line)
                    if line.startswith(marker):
                        log_done = True
                        break
                dropped = lines[len(kept):]
                out.append(replace(event, lines=tuple(kept),
                                   offset=event.offset - sum(len(x.encode()) + 1 for x in dropped)))
            case ev.JobProgress(step=done) if done > step:
                continue
            case ev.MetricPoints(points=points):
                beyond = beyond or any(p.step > step for p in points)
                if kept_points := tuple(p for p in points if p.step <= step):
                    out.append(replace(event, points=kept_points))
            case ev.ComparisonReady() if beyond:
                continue  # made from values the job logged after ``step``
            case _:
                out.append(event)
    if not log_done:
        raise AssertionError(f"the recording has no progress line at step {step}")
    return out


def check_every_point_polled(events: list[ev.Event]) -> None:
    """The live metric poll saw every point the job logged (see the job's pauses)."""
    steps: dict[str, list[int]] = {}
    for event in events:
        if isinstance(event, ev.MetricPoints):
            for p in event.points:
                steps.setdefault(p.key, []).append(p.step)
    wanted = {"loss": [5, *range(20, STEPS, 20), STEPS], "f1": list(range(32, STEPS + 1, 32))}
    for key, want in wanted.items():
        if steps.get(key) != want:
            raise AssertionError(f"the metric poll saw {key} at steps {steps.get(key)}, not {want}: "
                                 "the machine was too slow for the job's 0.5 s pauses; run the test again")


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recording]:
    """The recorded run (about 15 s) in its repository, its events normalised."""
    repo = quick_start_repo(tmp_path_factory.mktemp("quickstart") / "repo")
    with local_branch_names():
        recording = record(repo, RUN_ID, ())
    check_every_point_polled(recording.events)
    recording.events = normalised(repo, recording)
    return repo, recording


@pytest.fixture
def clock(quick_start: tuple[Path, Recording], monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    monkeypatch.chdir(quick_start[0])
    monkeypatch.delenv("NO_COLOR", raising=False)
    with frozen_clock(T0) as frozen:
        yield frozen


def shot(snap_compare: SnapCompare, recording: Recording, clock: FrozenClock, size: tuple[int, int],
         keys: tuple[str, ...] = ()) -> bool:
    cut = until_progress(recording.events, CUT)
    # Seen one second after the progress line at step CUT arrived.
    app, replay = replaying_dashboard(recording, cut, clock, progress_time(CUT) + 1)

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot, replay, False)
        stages = str(app.query_one(StageList).visual)
        assert "80/128 · 2.5 step/s · ETA 18s" in stages, stages
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.3)

    matches: bool = snap_compare(app, terminal_size=size, run_before=run_before)
    crashed(app)
    return matches


def test_quick_start_mid_training_shows_progress_and_live_metrics(
    quick_start: tuple[Path, Recording], clock: FrozenClock, snap_compare: SnapCompare
) -> None:
    assert shot(snap_compare, quick_start[1], clock, SIZE)


def test_quick_start_mid_training_on_a_tall_terminal(
    quick_start: tuple[Path, Recording], clock: FrozenClock, snap_compare: SnapCompare
) -> None:
    """Tall enough for the side column's history plot: F1, precision, recall at steps 32 and 64."""
    assert shot(snap_compare, quick_start[1], clock, TALL)


def test_the_cut_stream_is_what_the_job_had_done_at_step_80(quick_start: tuple[Path, Recording]) -> None:
    cut = until_progress(quick_start[1].events, CUT)
    progress = [e for e in cut if isinstance(e, ev.JobProgress)]
    assert [p.step for p in progress][-1] == CUT and progress[-1].total == STEPS
    points = {(p.key, p.step) for e in cut if isinstance(e, ev.MetricPoints) for p in e.points}
    assert {("f1", 32), ("f1", 64), ("loss", 5), ("loss", 80)} <= points
    assert max(step for _, step in points) <= CUT

"""Dashboard states that look the same on every machine, made from real runs.

A real :class:`~trainboard.backend.session.Session` runs the tiny job of ``conftest`` on
the local runner, with its metrics in a real MLflow SQLite store, and every
event it publishes is recorded. What varies between runs and machines is then
replaced with fixed values (``dataclasses.replace``): the commit, the MLflow
run ids, the repository's absolute path, the clock (each event's time, each
stage's duration, the run's duration) and the runner's python and CPU count.
Trainboard's own run ids are fixed from the start: the recording sessions are
given them.

The dashboard under test is the real app from ``make_app``, for a real session
that is never started: its ``run`` is a :class:`Replay`, which publishes the
recorded events on the session's own bus, in order, then returns the recorded
outcome (or, for a run caught mid-way, waits). The app's wall clock (the
header's elapsed time, a running stage's seconds, the runner's uptime) reads
``time.time()`` in the ``tui`` modules: :func:`frozen_clock` fixes it.

Used by tests/test_snapshots.py and by docs/dashboard.py (the README's screenshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import pkgutil
import sys
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from trainboard.backend import events as ev
from trainboard.backend.config import load_config
from trainboard.backend.events import Stage, StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.backend.store import RECORD, RunStore
from trainboard.tui.app import TrainboardApp, make_app
from trainboard.tui.compat_textual import unhandled_exception

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:  # for docs/dashboard.py, which runs outside pytest
    sys.path.insert(0, str(TESTS))

from conftest import make_tiny_repo, run_cli  # noqa: E402

T0 = 1767258000.0  # 2026-01-01 09:00:00 UTC: every recorded run starts here
COMMIT = "c0ffee1d15ea5e5ca1ab1e0ddba11f00dfacade5"
RUNNER_DETAILS = (("python", "/usr/bin/python3"), ("cpus", "8"))
# When each stage starts (seconds after T0) and how long it takes: a plausible local run.
SCHEDULE: dict[Stage, tuple[float, float]] = {
    Stage.CHECK: (0.0, 0.3),
    Stage.PROVISION: (0.3, 0.2),
    Stage.SYNC: (0.5, 1.4),
    Stage.TRAIN: (1.9, 42.6),
    Stage.COLLECT: (44.5, 0.3),
    Stage.COMPARE: (44.8, 0.1),
    Stage.REPORT: (44.9, 0.9),
    Stage.TEARDOWN: (45.8, 0.2),
}
DURATION = 46.0  # the whole run

# The recorded runs, in the order they run (each one's baseline is the latest
# finished run before it). Each job sleeps 1 s an epoch so that the metric poll
# (every 0.2 s) sees every epoch: the trend sparklines hold every step.
BASELINE = ("20260101-083000-ba5e", ("params.sleep=0",))  # F1 0.80, loss 0.50
TRAINING = ("20260101-090000-7a1d", ("params.epochs=4", "params.sleep=1.0", "params.base_f1=0.55"))  # F1 0.95
GATE_FAILS = ("20260101-091500-9a7e", ("params.sleep=1.0", "params.base_f1=0.5"))  # F1 0.70 against 0.95
JOB_FAILS = ("20260101-093000-e770", ("params.sleep=1.0", "params.exit_code=3"))
# A run made by the CLI (its run id is its own), renamed to this id: the attach state.
ATTACHED_ID = "20260101-094500-a77a"
ATTACHED_OVERRIDES = ("params.sleep=1.0", "params.base_f1=0.65")  # F1 0.85 against 0.70


@dataclass
class Recording:
    """A real session's events, in the order it published them."""

    run_id: str
    overrides: tuple[str, ...]
    events: list[ev.Event]
    outcome: ExitCode

    def epochs(self) -> int:
        return next((int(o.split("=")[1]) for o in self.overrides if o.startswith("params.epochs=")), 2)


@dataclass
class Recorded:
    """Every recording, normalised, and the repository their runs live in."""

    repo: Path
    training: Recording
    gate_fails: Recording
    job_fails: Recording
    attached_id: str = ATTACHED_ID


# ---------------------------------------------------------------------- recording


def record(repo: Path, run_id: str, overrides: tuple[str, ...]) -> Recording:
    """Run a real session to its end and keep every event it published."""
    session = Session(load_config(repo / "tb.yaml", list(overrides)), root=repo, run_id=run_id)
    events: list[ev.Event] = []
    session.subscribe(events.append)
    outcome = asyncio.run(session.run())
    return Recording(run_id, overrides, events, outcome)


def check_every_epoch_polled(recording: Recording) -> None:
    """The live metric poll saw each epoch of each metric, in order (see the module's
    note on sleeping): otherwise the trend of this recording would differ from the next."""
    steps: dict[str, list[int]] = {}
    for event in recording.events:
        if isinstance(event, ev.MetricPoints):
            for point in event.points:
                steps.setdefault(point.key, []).append(point.step)
    wanted = list(range(1, recording.epochs() + 1))
    for key in ("f1", "loss"):
        if steps.get(key) != wanted:
            raise AssertionError(
                f"run {recording.run_id}: the metric poll saw {key} at steps {steps.get(key)}, not {wanted}: "
                "the machine was too slow for a 1 s epoch against a 0.2 s poll; run the tests again"
            )


@contextlib.contextmanager
def local_branch_names() -> Iterator[None]:
    """On GitHub Actions the branch comes from the event (trainboard.backend.gitinfo): record ``main``."""
    saved = os.environ.pop("GITHUB_ACTIONS", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["GITHUB_ACTIONS"] = saved


RECORDING_TRIES = 3  # a machine busy enough to miss a 1 s epoch records the set again, in a new repository


def record_runs(workdir: Path) -> Recorded:
    """Make the repository under ``workdir``, run every recorded run in it, normalise."""
    for attempt in range(1, RECORDING_TRIES + 1):
        repo = make_tiny_repo(workdir / f"try-{attempt}" / "repo")
        with local_branch_names():
            recordings = [
                record(repo, run_id, overrides) for run_id, overrides in (BASELINE, TRAINING, GATE_FAILS, JOB_FAILS)
            ]
        try:
            for recording in recordings[1:]:
                check_every_epoch_polled(recording)
            break
        except AssertionError:
            if attempt == RECORDING_TRIES:
                raise
    with local_branch_names():
        cli_args = ["run", "tb.yaml", "--no-tui"]
        for override in ATTACHED_OVERRIDES:
            cli_args += ["--set", override]
        done = run_cli(cli_args, cwd=repo)
    if done.returncode != 0:
        raise AssertionError(f"trainboard {' '.join(cli_args)} exited {done.returncode}:\n{done.stderr}")
    normaliser = Normaliser(repo)
    for recording in recordings:
        normaliser.learn(recording.events)
    (cli_run,) = [r for r in RunStore(repo / ".trainboard").all() if r.run_id not in {x.run_id for x in recordings}]
    normaliser.normalise_record(repo / ".trainboard" / "runs", cli_run.run_id, ATTACHED_ID)
    for recording in recordings:
        recording.events = normaliser.events(recording.events)
    _, training, gate_fails, job_fails = recordings
    return Recorded(repo, training, gate_fails, job_fails)


# ---------------------------------------------------------------------- normalising


def fake_mlflow_id(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


class Normaliser:
    """Replaces what varies between runs and machines with fixed values."""

    def __init__(self, repo: Path) -> None:
        self.swaps: dict[str, str] = {}
        for root in {str(repo), str(repo.resolve())}:
            self.swaps[root + os.sep] = ""  # paths become relative to the repository
            self.swaps[root] = "."

    def learn(self, events: list[ev.Event]) -> None:
        """The commit and the MLflow run id of a recorded run."""
        run_id = ""
        for event in events:
            if isinstance(event, ev.RunStarted) and event.commit:
                self.swaps[event.commit] = COMMIT
                self.swaps[event.commit[:7]] = COMMIT[:7]
                run_id = event.run_id
            elif isinstance(event, ev.TrackingReady):
                self.swaps[event.mlflow_run_id] = fake_mlflow_id(run_id)

    def text(self, text: str) -> str:
        for old in sorted(self.swaps, key=len, reverse=True):
            text = text.replace(old, self.swaps[old])
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string in it normalised: events, comparisons, JSON."""
        if type(value) is str:  # not a StrEnum such as Stage
            return self.text(value)
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if is_dataclass(value) and not isinstance(value, type):
            return replace(value, **{f.name: self.value(getattr(value, f.name)) for f in fields(value)})
        return value

    def events(self, events: list[ev.Event]) -> list[ev.Event]:
        """The events with fixed strings, and times from SCHEDULE: each event happens when
        the stage it came in started; a stage ends when SCHEDULE says."""
        out: list[ev.Event] = []
        stage = Stage.CHECK
        for event in events:
            event = self.value(event)
            if isinstance(event, ev.StageChanged):
                start, took = SCHEDULE[event.stage]
                if event.state is StageState.RUNNING:
                    stage = event.stage
                    event = replace(event, at=T0 + start)
                else:
                    event = replace(event, elapsed=took, at=T0 + start + took)
            else:
                event = replace(event, at=T0 + SCHEDULE[stage][0])  # type: ignore[call-arg]
                match event:
                    case ev.RunnerChanged(details=details) if details:
                        event = replace(event, details=RUNNER_DETAILS)
                    case ev.MetricPoints(points=points):
                        event = replace(event, points=tuple(replace(p, timestamp=metric_time(p.step)) for p in points))
                    case ev.JobFinished():
                        event = replace(event, duration=SCHEDULE[Stage.TRAIN][1])
                    case ev.RunFinished():
                        event = replace(event, duration=DURATION)
            out.append(event)
        return out

    def normalise_record(self, runs: Path, run_id: str, new_id: str) -> None:
        """A finished run on disk, as if it had run at T0 as ``new_id`` (for attach)."""
        (runs / run_id).rename(runs / new_id)
        path = runs / new_id / RECORD
        data = json.loads(path.read_text())
        self.swaps[run_id] = new_id
        self.swaps[data["commit"]] = COMMIT
        self.swaps[data["commit"][:7]] = COMMIT[:7]
        self.swaps[data["mlflow"]["run_id"]] = fake_mlflow_id(new_id)
        data = self.value(data)
        data.update(created_at=T0, finished_at=T0 + DURATION, duration=DURATION, job_seconds=SCHEDULE[Stage.TRAIN][1])
        data["trainboard_pid"] = 4242
        for name, info in data.get("stages", {}).items():
            start, took = SCHEDULE[Stage(name)]
            info.update(elapsed=took, started_at=T0 + start)
        for name, stage in (("setup", Stage.SYNC), ("job", Stage.TRAIN)):
            if name in data:
                data[name].update(pid=4242, started_at=T0 + SCHEDULE[stage][0])
        path.write_text(json.dumps(data, indent=2))
        history = runs / new_id / "metrics.jsonl"
        if history.exists():
            points = [json.loads(line) for line in history.read_text().splitlines()]
            history.write_text("".join(json.dumps({**p, "timestamp": metric_time(p["step"])}) + "\n" for p in points))


def metric_time(step: int) -> int:
    """An MLflow timestamp (ms) for a step: one epoch every 10 s of the training stage."""
    return int((T0 + SCHEDULE[Stage.TRAIN][0] + 10 * step) * 1000)


# ---------------------------------------------------------------------- choosing a state


def until_runner(events: list[ev.Event], state: str) -> list[ev.Event]:
    """The stream up to and including the runner's first ``state``."""
    for index, event in enumerate(events):
        if isinstance(event, ev.RunnerChanged) and event.state == state:
            return events[: index + 1]
    raise AssertionError(f"the runner never reported {state!r}")


def until_step(events: list[ev.Event], step: int) -> list[ev.Event]:
    """The stream as of the job's epoch ``step``: every event up to the comparison of
    that step's metrics, and the log up to its line "epoch STEP: ...".

    The log tail and the metric poll race each other (a poll can come before the
    epoch's line has been read), so each of the two is cut on its own.
    """
    out: list[ev.Event] = []
    log_done = metrics_done = False
    reached: dict[str, int] = {}
    for event in events:
        if isinstance(event, ev.LogLines):
            if log_done:
                continue
            kept: list[str] = []
            for line in event.lines:
                kept.append(line)
                if event.source == "job" and line.startswith(f"epoch {step}:"):
                    log_done = True
                    break
            if len(kept) < len(event.lines):  # the batch is cut: its offset moves back over what is dropped
                dropped = event.lines[len(kept) :]
                event = replace(
                    event, lines=tuple(kept), offset=event.offset - sum(len(x.encode()) + 1 for x in dropped)
                )
            out.append(event)
        elif not metrics_done:
            out.append(event)
            if isinstance(event, ev.MetricPoints):
                reached.update((p.key, p.step) for p in event.points)
            if isinstance(event, ev.ComparisonReady) and reached and min(reached.values()) >= step:
                metrics_done = True
        if log_done and metrics_done:
            return out
    raise AssertionError(f"the recording has no epoch {step}")


# ---------------------------------------------------------------------- the dashboard


class Replay:
    """Stands in for ``Session.run``: publishes recorded events on the session's own
    bus, in order, then returns the recorded outcome; with no outcome (a run caught
    mid-way) it waits until the app goes away."""

    def __init__(self, session: Session, events: list[ev.Event], outcome: ExitCode | None) -> None:
        self.session = session
        self.events = events
        self.outcome = outcome
        self.published = False

    async def __call__(self) -> ExitCode:
        for event in self.events:
            self.session.bus.emit(event)
        self.published = True
        if self.outcome is None:
            await asyncio.Event().wait()
        assert self.outcome is not None
        return self.outcome


class FrozenClock:
    """The ``time`` module as the ``tui`` modules see it: ``time()`` says ``now``, and
    local time is UTC; everything else is the real module's."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def localtime(self, secs: float | None = None) -> _time.struct_time:
        return _time.gmtime(self.now if secs is None else secs)

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


def tui_modules_with_time() -> list[Any]:
    """Every ``tui`` module (imported now) that holds the ``time`` module."""
    import trainboard.tui

    for info in pkgutil.walk_packages(trainboard.tui.__path__, "trainboard.tui."):
        importlib.import_module(info.name)
    names = [name for name in sys.modules if name == "trainboard.tui" or name.startswith("trainboard.tui.")]
    return [sys.modules[name] for name in names if getattr(sys.modules[name], "time", None) is _time]


@contextlib.contextmanager
def frozen_clock(now: float = T0) -> Iterator[FrozenClock]:
    clock = FrozenClock(now)
    modules = tui_modules_with_time()
    for module in modules:
        module.time = clock
    try:
        yield clock
    finally:
        for module in modules:
            module.time = _time


def replaying_dashboard(
    recording: Recording, cut: list[ev.Event] | None, clock: FrozenClock, now: float
) -> tuple[TrainboardApp, Replay]:
    """The dashboard (``make_app``) of a real session for ``recording``'s run, made in
    the working directory (the recording's repository) and never started: its run
    is a Replay of ``cut``, or of every event and the outcome when ``cut`` is None.
    The dashboard starts at T0; ``now`` is the time it is looked at."""
    root = Path(".")
    session = Session(load_config(root / "tb.yaml", list(recording.overrides)), root=root, run_id=recording.run_id)
    if cut is None:
        replay = Replay(session, recording.events, recording.outcome)
    else:
        replay = Replay(session, cut, None)
    session.run = replay  # type: ignore[method-assign]
    clock.now = T0
    app = make_app(session)
    clock.now = now
    return app, replay


async def settle(pilot: Any, replay: Replay | None, finished: bool, timeout: float = 30.0) -> None:
    """Until every event is published and shown, and the run has returned if ``finished``."""
    app = pilot.app
    deadline = _time.monotonic() + timeout
    while not ((replay is None or replay.published) and app.caught_up and (app.outcome is not None or not finished)):
        if _time.monotonic() > deadline:
            raise AssertionError(f"the dashboard did not settle in {timeout:g}s")
        await pilot.pause(0.05)
    await pilot.pause(0.3)  # a few ticks: the panels render what they have folded in
    # A DataTable measures its columns on its own Idle, after the cells are set;
    # a frame drawn in between is cached with the old widths and is shown until
    # the next update ("0.850" for "0.9500", "+" for "+0.1500"), so whether the
    # final frame is cut depends on timing. Rendering the tables once more (the
    # panels' invalidate(), as on a theme change) draws them at their measured widths.
    for table in app.query(DataTable):
        invalidate = getattr(table, "invalidate", None)
        if invalidate is not None:
            invalidate()
    await pilot.pause(0.3)
    crashed(app)


def crashed(app: Any) -> None:
    """Raise what the app died of, if it did (a screenshot of a dead app proves nothing)."""
    error = unhandled_exception(app)
    if error is not None:
        raise AssertionError(f"the dashboard crashed: {error!r}") from error

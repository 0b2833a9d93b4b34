"""What every stage gets: the run's context (config, state, hooks, events, record) and the Stage protocol.

A stage is an object with a ``stage`` (its name in the events) and ``async def run(ctx)``,
which returns the detail the views show next to it ("" for none). The session runs a
plan of them in order; stage modules never import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trainboard.backend import events as ev
from trainboard.backend.eventbus import EventBus
from trainboard.backend.events import Stage, StageState
from trainboard.backend.runstate import RunState

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig, RunConfig
    from trainboard.backend.hooks.base import Hook
    from trainboard.backend.redact import Redactor
    from trainboard.backend.runners import Runner
    from trainboard.backend.runners.base import Capabilities
    from trainboard.backend.store import RunStore
    from trainboard.backend.sweep_shared import Shared


class StageStep(Protocol):
    stage: Stage
    needs_job_success: bool  # the plan stops before it (exit 4) when the training job failed

    async def run(self, ctx: RunContext) -> str: ...


@dataclass
class RunContext:
    """One run's settings, shared state and ways to speak: the stages' only handle on the run."""

    loaded: LoadedConfig
    root: Path
    store: RunStore
    run_id: str
    redact: Redactor
    bus: EventBus = field(default_factory=EventBus)
    state: RunState = field(default_factory=RunState)
    hooks: list[Hook] = field(default_factory=list)
    stop: Callable[[str], bool] | None = None  # Session.cancel: the run stopped from inside (the cost cap)
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow run tags (a sweep member's parent, values)
    record_extra: dict[str, Any] = field(default_factory=dict)  # extra record keys at creation (its sweep)
    shared: Shared | None = None  # a sweep member's: what the sweep looks up once for all (sweep_shared)
    gate: Callable[[], Awaitable[None]] | None = None  # awaited before the train stage (sweep_slots)

    @property
    def config(self) -> RunConfig:
        return self.loaded.config

    @property
    def run_dir(self) -> Path:
        return self.store.runs / self.run_id

    @property
    def runner(self) -> Runner:
        """The runner as the stages after provision use it."""
        runner = self.state.runner.runner
        assert runner is not None
        return runner

    @property
    def capabilities(self) -> Capabilities:
        """What the configured runner can do (known from check on, before anything is created)."""
        made = self.state.runner.runner or self.state.runner.made
        if made is None:
            from trainboard.backend.runners import make_runner

            made = self.state.runner.made = make_runner(self.config.runner, self.run_dir, self.run_id)
        return made.capabilities

    # ------------------------------------------------------------------ events

    def emit(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunnerChanged) and event.state != "reconnecting":
            self.state.runner.shown_state = event.state
        self.bus.emit(event)

    def notice(self, text: str) -> None:
        self.emit(ev.Notice(text))

    def error(self, stage: Stage | None, message: str) -> None:
        message = self.redact(message)
        record = self.state.record
        if record is not None:
            record.add_error(stage.value if stage else None, message)
            self.save_record()
        self.emit(ev.ErrorRaised(stage, message))

    def crashed(self, stage: Stage | None, exc: BaseException, what: str = "unexpected error") -> None:
        """An exception nothing expected: one line on the views, the masked traceback in the run folder."""
        from trainboard.backend.crash import TRACEBACK_FILE, crash_file, one_line, save_traceback

        files = [self.run_dir / TRACEBACK_FILE] if self.state.record is not None else []
        path = save_traceback(exc, [*files, crash_file(self.store.root / "crashes")], self.redact)
        where = f"traceback in {path}" if path else "the traceback could not be saved"
        with contextlib.suppress(Exception):
            self.error(stage, f"{what}: {one_line(exc)} ({where})")

    # ------------------------------------------------------------------ the record

    def save_record(self, **fields: Any) -> bool:
        """Write the record; a failure (a full disk) is said once and never stops the run's end."""
        record = self.state.record
        if record is None:
            return False
        self.state.record_save_due = False  # this write takes every change
        try:
            record.update(**fields)
            return True
        except OSError as exc:
            if not self.state.record_unwritable:
                self.state.record_unwritable = True
                self.emit(ev.ErrorRaised(self.current_stage(), self.redact(
                    f"cannot write the run record {record.path / 'record.json'}: {exc}")))
            return False

    def update_record(self, **fields: Any) -> None:
        """Write the record; a failure stops the stage (where the record is the run's memory)."""
        assert self.state.record is not None
        self.state.record_save_due = False
        self.state.record.update(**fields)

    # ------------------------------------------------------------------ stage bookkeeping

    @contextlib.asynccontextmanager
    async def stage(self, stage: Stage, began: float | None = None) -> AsyncIterator[Callable[[str], None]]:
        detail = [""]
        started = self.state.stage_started
        started[stage] = began or time.time()
        self.emit(ev.StageChanged(stage, StageState.RUNNING, at=started[stage]))
        self.record_stage(stage, StageState.RUNNING)

        def note(text: str) -> None:
            detail[0] = text

        yield note
        self.end_stage(stage, StageState.DONE, detail[0])

    def current_stage(self) -> Stage | None:
        running = [s for s in self.state.stage_started if s not in self.state.ended]
        return running[-1] if running else None

    def end_stage(self, stage: Stage, state: StageState, detail: str = "") -> None:
        if stage in self.state.ended:
            return
        self.state.ended.add(stage)
        elapsed = time.time() - self.state.stage_started.get(stage, time.time())
        self.emit(ev.StageChanged(stage, state, detail, elapsed))
        self.record_stage(stage, state, detail, elapsed)

    def record_stage(self, stage: Stage, state: StageState, detail: str = "", elapsed: float = 0.0) -> None:
        record = self.state.record
        if record is None:
            return
        record.set_stage(stage.value, state, detail, round(elapsed, 3), self.state.stage_started.get(stage))
        self._save_soon()

    def _save_soon(self) -> None:
        """Write the record at the event loop's next turn: a stage's end and the next one's start
        (or a write of the stage's own) make one write, not two or three; outside a loop, now."""
        if self.state.record_save_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save_record()
            return
        self.state.record_save_due = True
        loop.call_soon(self._save_if_due)

    def _save_if_due(self) -> None:
        if self.state.record_save_due:
            self.save_record()

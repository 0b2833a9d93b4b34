"""A sweep: N members of one config, each a whole run, ``max_parallel`` at a time.

Each member is a :class:`~trainboard.backend.session.Session` of its own (its runner,
workspace, MLflow run, log, record and report), driven exactly as a single run.
The sweep only decides when each starts, folds what each says into a
:class:`MemberState` for the views, keeps the sweep record
(``trainboard.backend.sweep_record``), and at the end picks the best member
(``trainboard.backend.sweep_verdict``). In MLflow the sweep is a parent run and
each member a child (the ``mlflow.parentRunId`` tag), tagged with the sweep id
and its values.

A member that fails does not stop the others. :meth:`Sweep.cancel` (Ctrl-C,
SIGTERM, the dashboard) and the cost cap stop every member (each tears down
its runner) and launch no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend import sweep_events as sev
from trainboard.backend.compare import Comparison
from trainboard.backend.eventbus import EventBus
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.gitinfo import git_state, repo_root
from trainboard.backend.redact import Redactor, mask_overrides
from trainboard.backend.sweep_budget import CostCap
from trainboard.backend.sweep_member import member_hooks, on_host
from trainboard.backend.sweep_outputs import write_outputs
from trainboard.backend.sweep_parent import ParentRun
from trainboard.backend.sweep_record import QUEUED, RUNNING, SKIPPED, MemberInfo, SweepData, SweepStore, member_link
from trainboard.backend.sweep_shared import Shared
from trainboard.backend.sweep_slots import Slots
from trainboard.backend.sweep_verdict import RESULT_STATUSES, best_member, objective_of, sweep_exit, verdict_line
from trainboard.backend.tracking import TrackingError

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig
    from trainboard.backend.session import Session
    from trainboard.backend.sweep_spec import Member

SWEEP_TAG, INDEX_TAG, PARENT_TAG = "trainboard.sweep_id", "trainboard.sweep.index", "mlflow.parentRunId"
SAVE_EVERY = 0.5  # seconds: the sweep record is written at most this often while members change


class Sweep:
    def __init__(self, loaded: LoadedConfig, members: list[Member], member_configs: list[LoadedConfig],
                 root: Path | None = None, sweep_id: str | None = None) -> None:
        from trainboard.backend.sweep_record import new_sweep_id

        self.loaded, self.root = loaded, root or repo_root(loaded.path.resolve().parent)
        cfg = loaded.config
        self.store = SweepStore(self.root / ".trainboard")
        self.objective, self.goal = objective_of(cfg)
        params = list(dict.fromkeys(setting for m in members for setting, _ in m.values))
        self.data = SweepData(
            sweep_id=sweep_id or new_sweep_id(), config_path=str(loaded.path.resolve()),
            overrides=mask_overrides(loaded.overrides), name=cfg.name, params=params, mode=cfg.sweep.mode,
            max_parallel=cfg.sweep.max_parallel, objective=self.objective, goal=self.goal,
            max_cost_usd=cfg.budget.max_cost_usd, experiment=cfg.mlflow.experiment,
            members=[MemberInfo(index=m.index, values=dict(zip(params, _texts(m), strict=False)))
                     for m in members])
        self.members = [sev.MemberState(info=info, loaded=member_loaded)
                        for info, member_loaded in zip(self.data.members, member_configs, strict=True)]
        self.sweep_id = self.data.sweep_id
        self.bus = EventBus()
        self.redact = Redactor.for_config(loaded.raw)
        self.cap = CostCap(cfg.budget.max_cost_usd, self.members)
        self.parent = ParentRun(cfg, self.root)
        self._tasks: dict[int, asyncio.Task[ExitCode]] = {}
        self._stop_reason = ""  # set once: the sweep launches no more members
        self._cancelled_by_person = False
        self._slots: Slots | None = None  # when members may start (sweep_slots)
        self._orphans: set[int] = set()  # members made before the parent run existed
        self._adopting: set[asyncio.Future[None]] = set()
        self._save_handle: asyncio.TimerHandle | None = None
        self._shared = Shared()  # what the members look up once for all (sweep_shared)

    # ------------------------------------------------------------------ API for views

    def subscribe(self, callback: Callable[[ev.Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(callback)

    @property
    def stop_reason(self) -> str:
        return self._stop_reason

    def cancel(self, reason: str = "cancelled") -> bool:
        """Stop every member (each tears down) and launch no more. False if already stopping."""
        if self._stop_reason:
            return False
        self._cancelled_by_person = True
        self._stop_all(reason)
        return True

    def stop_member(self, index: int, reason: str = "stopped by you") -> bool:
        """Stop one member (it tears down); a queued one is skipped. False if it already ended."""
        state = self.members[index]
        if state.info.status == QUEUED:
            self._skip(state, reason)
            return True
        return self._cancel_member(state, reason)

    def _skip(self, state: sev.MemberState, reason: str) -> None:
        """A queued member will not run; one being prepared (sweep_slots) tears down what it made."""
        self._set_status(state, SKIPPED, reason=reason)
        if state.session is not None:
            state.session.cancel(reason)

    def _cancel_member(self, state: sev.MemberState, reason: str) -> bool:
        """Stop a running member (it tears down); its record says why."""
        if state.session is None or state.info.status != RUNNING or not state.session.cancel(reason):
            return False
        state.session.ctx.save_record(stopped_by=reason)
        return True

    @property
    def running(self) -> list[sev.MemberState]:
        return [m for m in self.members if m.info.status == RUNNING]

    # ------------------------------------------------------------------ the sweep

    async def run(self) -> ExitCode:
        git = git_state(self.root)
        self.data.branch, self.data.commit = git.branch, git.commit
        self.data.trainboard_pid = os.getpid()
        self.store.save(self.data)
        self._slots = self._make_slots()
        self.bus.emit(sev.SweepStarted(self.sweep_id, len(self.members), self._slots.parallel, self.data.max_cost_usd,
                                       tuple(self.data.params)))
        # The parent run is created meanwhile (MLflow's import alone takes seconds): members
        # created before it exists are made its children once it does (see _adopt).
        opening = asyncio.create_task(self._open_parent())
        try:
            await self._launch_all()
            await self._wait_members()
        except asyncio.CancelledError:
            self._cancelled_by_person = True
            self._stop_all("cancelled")
            await self._wait_members()
        await asyncio.wait({opening})
        if self._adopting:
            await asyncio.wait(self._adopting)
        return await self._finish()

    async def _open_parent(self) -> None:
        try:
            await self.parent.open(self.data, self.redact)
        except TrackingError as exc:
            self.bus.emit(ev.Notice(f"MLflow: the sweep's parent run was not created: {exc}"))
            return
        self.data.parent_run_id = self.parent.run_id
        for state in self.members:
            if state.session is not None:
                state.session.ctx.tags[PARENT_TAG] = self.parent.run_id  # for a member yet to make its run
                self._adopt(state)

    def _adopt(self, state: sev.MemberState) -> None:
        """Make the member's MLflow run a child of the parent, once both exist (set_tag is idempotent)."""
        if state.info.index in self._orphans and self.parent.run_id and state.info.mlflow_run_id:
            self._orphans.discard(state.info.index)
            assert state.session is not None
            if state.session.state.tracking.run_tags.get(PARENT_TAG) == self.parent.run_id:
                return  # the parent came before the member made its run: a child already
            self._adopting.add(asyncio.ensure_future(self.parent.adopt(state.info.mlflow_run_id)))

    def _make_slots(self) -> Slots:
        cfg = self.loaded.config
        hosts = list(getattr(cfg.runner, "hosts", None) or [])
        parallel = min(cfg.sweep.max_parallel, len(hosts)) if hosts else cfg.sweep.max_parallel
        return Slots(parallel, hosts, prepares_ahead=cfg.runner.kind == "local")

    async def _launch_all(self) -> None:
        assert self._slots is not None
        for state in self.members:
            index = state.info.index
            await self._slots.launch(index)
            if state.info.status != QUEUED:  # stopped while queued
                self._slots.leave(index)
                continue
            if self._stop_reason:
                self._slots.leave(index)
                self._set_status(state, SKIPPED, reason=self._stop_reason)
                continue
            if blocked := self.cap.blocks(state):
                self._slots.leave(index)
                self._set_status(state, SKIPPED, reason=blocked)
                continue
            state.projected = self.cap.projected(state)  # committed now: the next member's check counts it
            self._tasks[index] = asyncio.create_task(self._run_member(state))

    async def _wait_members(self) -> None:
        while pending := [t for t in self._tasks.values() if not t.done()]:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(pending)
        for state in self.members:
            if state.info.status == QUEUED:
                self._set_status(state, SKIPPED, reason=self._stop_reason or "not started")

    async def _run_member(self, state: sev.MemberState) -> ExitCode:
        from trainboard.backend.session import Session

        slots, info = self._slots, state.info
        assert slots is not None
        if info.status != QUEUED:  # skipped (a cancel, the cap) between its launch and its start
            state.projected = None  # nothing committed for it
            slots.leave(info.index)
            return ExitCode.INTERRUPTED
        ahead = slots.prepares_ahead and not slots.free  # prepared now, its slot taken at the gate
        host = "" if ahead else await slots.take(info.index)
        loaded = on_host(state.loaded, host) if host else state.loaded
        session = Session(loaded, root=self.root, run_id=self._member_run_id(), hooks=member_hooks(),
                          tags=self._member_tags(info), shared=self._shared,
                          record_extra={"sweep": member_link(self.sweep_id, info.index, info.values)},
                          gate=(lambda: self._gate(state)) if ahead else None)
        state.session, info.run_id, info.started_at = session, session.run_id, time.time()
        session.subscribe(lambda event: self._on_member_event(state, event))
        if not ahead:
            self._set_status(state, RUNNING)
        try:
            code = await session.run()
        finally:
            slots.give_back_slot(info.index)
        self._member_ended(state, session, code)
        return code

    async def _gate(self, state: sev.MemberState) -> None:
        """A prepared member's wait for its slot, before its job (the session's gate)."""
        assert self._slots is not None and state.session is not None
        await self._slots.take(state.info.index)
        if state.info.status != QUEUED or self._stop_reason:  # skipped meanwhile: its cancel lands now
            state.session.cancel(state.info.reason or self._stop_reason or "skipped")
            await asyncio.sleep(0)
            raise asyncio.CancelledError
        self._set_status(state, RUNNING)

    def _member_run_id(self) -> str:
        from trainboard.backend.store import new_run_id

        taken = {m.info.run_id for m in self.members}
        while (run_id := new_run_id()) in taken or (self.root / ".trainboard" / "runs" / run_id).exists():
            time.sleep(0.001)
        return run_id

    def _member_tags(self, info: MemberInfo) -> dict[str, str]:
        tags = {SWEEP_TAG: self.sweep_id, INDEX_TAG: str(info.index)}
        if self.parent.run_id:
            tags[PARENT_TAG] = self.parent.run_id
        else:
            self._orphans.add(info.index)
        tags.update({f"trainboard.sweep.{k}": v for k, v in info.values.items()})
        return tags

    # ------------------------------------------------------------------ what members say

    def _on_member_event(self, state: sev.MemberState, event: ev.Event) -> None:
        state.keep(event)
        info = state.info
        match event:
            case ev.StageChanged(stage=stage, state=stage_state) if stage_state is ev.StageState.RUNNING:
                if info.stage != stage.value and info.status == RUNNING:  # a prepared one is queued to the views
                    info.stage = stage.value
                    self._changed(state)
            case ev.JobProgress():
                state.progress = event
            case ev.MetricPoints(points=points):
                values = [p.value for p in points if p.key == self.objective]
                if values:
                    info.objective = values[-1]
                    state.history.extend(values)
                    del state.history[:-sev.HISTORY_POINTS]
                    self._update_delta(state)
            case ev.BaselineFound():
                self._update_delta(state)
            case ev.StageChanged(stage=ev.Stage.TRAIN, state=stage_state) if stage_state is not ev.StageState.RUNNING:
                assert self._slots is not None
                if self._slots.prepares_ahead:  # the job has ended: its slot to the next (sweep_slots)
                    self._slots.give_back_slot(info.index)
                return
            case ev.TrackingReady(mlflow_run_id=mlflow_run_id):
                info.mlflow_run_id = mlflow_run_id
                self._adopt(state)
            case ev.CostUpdated(cost=cost):
                info.cost = cost
                self._cost_moved()
            case _:
                return
        state.version += 1

    def _update_delta(self, state: sev.MemberState) -> None:
        session, info = state.session, state.info
        baseline = session.state.metrics.baseline if session is not None else None
        base = baseline.metrics.get(self.objective) if baseline is not None else None
        info.delta = None if base is None or info.objective is None else info.objective - base

    def _cost_moved(self) -> None:
        spent = self.cap.spent()
        self.data.cost = round(spent, 6)
        self.bus.emit(sev.SweepCost(spent, self.data.max_cost_usd))
        if (reached := self.cap.reached()) and not self._stop_reason:
            self._stop_all(reached)

    def _member_ended(self, state: sev.MemberState, session: Session, code: ExitCode) -> None:
        info, record = state.info, session.record
        if info.status == SKIPPED:  # skipped while prepared: it never ran (its record says cancelled)
            state.projected = None
            return
        info.exit_code, info.finished_at = int(code), time.time()
        status = code.status.value
        if record is not None:
            status = str(record.status or status)
            info.cost = record.cost if record.cost is not None else info.cost
            if record.comparison is not None:
                self._take_comparison(info, Comparison.from_dict(record.comparison))
            if record.stopped_by:
                info.reason = record.stopped_by
            elif record.errors and status not in RESULT_STATUSES:  # a result's teardown note is no reason
                info.reason = record.errors[-1].message
        if code is ExitCode.INTERRUPTED and not info.reason:
            info.reason = session.state.outcome.cancel_reason
        self._set_status(state, status, reason=info.reason)
        self._cost_moved()

    def _take_comparison(self, info: MemberInfo, comparison: Comparison) -> None:
        row = next((r for r in comparison.rows if r.key == self.objective), None)
        if row is not None:
            info.objective = row.after if row.after is not None else info.objective
            info.delta = row.delta
        info.passed = comparison.passed

    # ------------------------------------------------------------------ state changes

    def _set_status(self, state: sev.MemberState, status: str, reason: str = "") -> None:
        info = state.info
        info.status, info.reason = status, reason or info.reason
        if status == SKIPPED and info.finished_at is None:
            info.finished_at = time.time()
        self._changed(state, reason)

    def _changed(self, state: sev.MemberState, detail: str = "") -> None:
        state.version += 1
        info = state.info
        self._save_soon()
        self.bus.emit(sev.MemberChanged(info.index, info.status, info.stage, detail))

    def _save_soon(self) -> None:
        """Write the sweep record within SAVE_EVERY seconds (one write for a burst of changes)."""
        if self._save_handle is None:
            try:
                self._save_handle = asyncio.get_running_loop().call_later(SAVE_EVERY, self._save_now)
            except RuntimeError:  # no loop (a view's call outside it): now
                self._save_now()

    def _save_now(self) -> None:
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        with contextlib.suppress(OSError):
            self.store.save(self.data)

    def _stop_all(self, reason: str) -> None:
        self._stop_reason = self.data.reason = reason
        for state in self.members:
            if state.info.status == QUEUED:
                self._skip(state, reason)
            else:
                self._cancel_member(state, reason)

    async def _finish(self) -> ExitCode:
        data = self.data
        data.best = best_member(data.members, self.goal)
        code = sweep_exit(data.members, data.best, cancelled=self._cancelled_by_person)
        data.exit_code, data.status, data.finished_at = int(code), code.status.value, time.time()
        data.verdict = verdict_line(data.members, data.best, self.objective, self.loaded.config.compare.base)
        with contextlib.suppress(Exception):  # the sweep's outcome does not hang on MLflow
            await self.parent.close(data)
        best = self.members[data.best].session if data.best is not None else None
        await write_outputs(data, self.root, self.loaded, self.redact, best, self.bus.emit)
        self._save_now()
        self.bus.emit(sev.SweepFinished(int(code), data.status, data.best, data.reason))
        return code


def _texts(member: Member) -> list[str]:
    from trainboard.backend.sweep_spec import render_value

    return [render_value(value) for _, value in member.values]


__all__ = ["RUNNING", "RunStatus", "Sweep"]

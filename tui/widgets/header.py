"""The one-line header: run id, branch @ commit, runner, elapsed time, and the
stage in progress ("stage 4/8 train") or, at the end, the run's status."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.backend.events import STAGES, StageState
from trainboard.tui.widgets.marks import STATUS_MARKS, clock


class RunHeader(Static):
    DEFAULT_CSS = """
    RunHeader {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, name: str, run_id: str, runner_kind: str, started: float, dirty: bool = False) -> None:
        super().__init__(id="run-header")
        self._drawn = False  # layout once, when the first content arrives
        self.config_name = name
        self.run_id = run_id
        self.runner_kind = runner_kind
        self.branch = ""
        self.commit = ""
        self.dirty = dirty
        self.started = started
        self.duration: float | None = None
        self.activity = "starting"
        self.status = ""  # the run's final status, once finished
        self._shown: tuple[object, ...] | None = None

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted():
                self.started = min(self.started, event.at)  # earlier when attached to a run
                self.run_id = event.run_id
                self.branch = event.branch
                self.commit = event.commit
                self.runner_kind = event.runner_kind
            case ev.StageChanged(stage=stage, state=StageState.RUNNING):
                self.activity = f"stage {STAGES.index(stage) + 1}/{len(STAGES)} {stage.value}"
            case ev.RunFinished(status=status, duration=duration):
                self.status = status
                self.duration = duration

    def refresh_view(self, now: float) -> None:
        elapsed = self.duration if self.duration is not None else now - self.started
        key = (int(elapsed), self.run_id, self.branch, self.commit, self.runner_kind, self.activity, self.status)
        if key == self._shown:
            return
        self._shown = key
        self.update(self._content(elapsed), layout=not self._drawn)  # one line: a layout pass once
        self._drawn = True

    def invalidate(self) -> None:
        self._shown = None

    def _content(self, elapsed: float) -> Content:
        sep = (" · ", "$text-muted")
        commit = (self.commit[:7] or "(no commit)") + ("*" if self.dirty else "")
        where = f"{self.branch} @ {commit}" if self.branch else "…"
        if self.status:
            mark, style = STATUS_MARKS.get(self.status, ("■", "$warning"))
            state = (f"{mark} {self.status}", f"bold {style}")
        else:
            state = (f"● {self.activity}", "bold $warning")
        # What changes comes first: on a narrow terminal the run id is cut, not the stage.
        return Content.assemble(
            (self.config_name, "bold $accent"),
            sep,
            state,
            " ",
            (clock(elapsed), "bold"),
            sep,
            where,
            sep,
            self.runner_kind,
            sep,
            self.run_id,
        )

"""The stages checklist: check … teardown, each with its mark and duration; while the job
trains, its progress (steps, throughput, ETA) on a line under the train stage."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.backend.events import STAGES, Stage, StageState
from trainboard.backend.progress import final_text, short_text
from trainboard.tui.render import format_seconds
from trainboard.tui.widgets.marks import STAGE_MARKS


class StageList(Static):
    DEFAULT_CSS = """
    StageList {
        height: auto;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="stages")
        self._drawn = False  # layout once, when the first content arrives
        self.border_title = "Stages"
        self.states: dict[Stage, StageState] = dict.fromkeys(STAGES, StageState.PENDING)
        self.began: dict[Stage, float] = {}
        self.took: dict[Stage, float] = {}
        self.details: dict[Stage, str] = {}
        self.run_over = False
        self.gates_failed = False
        self.progress: ev.JobProgress | None = None  # the job's latest, from its progress lines
        self._shown: tuple[object, ...] | None = None
        self._lines = 0  # lines drawn: a layout pass when their number changes

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.StageChanged(stage=stage, state=state, detail=detail, elapsed=elapsed, at=at):
                self.states[stage] = state
                if state is StageState.RUNNING:
                    self.began[stage] = at
                else:
                    self.took[stage] = elapsed
                if detail:
                    self.details[stage] = detail
            case ev.ErrorRaised(stage=stage, message=message) if stage is not None:
                self.details[stage] = message.splitlines()[0] if message else "failed"
            case ev.ComparisonReady(comparison=comp) if comp.final:
                self.gates_failed = not comp.passed
            case ev.JobProgress():
                self.progress = event
            case ev.RunFinished():
                self.run_over = True

    def refresh_view(self, now: float) -> None:
        running = tuple(int(now - self.began.get(s, now)) for s, st in self.states.items() if st is StageState.RUNNING)
        progress = self._progress_line(now)
        key = (
            tuple(self.states.values()),
            tuple(self.took.items()),
            tuple(self.details.items()),
            running,
            self.run_over,
            self.gates_failed,
            progress,
            self.size.width,
        )
        if key == self._shown:
            return
        self._shown = key
        lines = [self._line(stage, now) for stage in STAGES]
        if progress:
            lines.insert(STAGES.index(Stage.TRAIN) + 1, Content.styled(progress, "$text-muted"))
        # One line per stage (and one for the progress while the job trains): a layout
        # pass the first time and when the progress line comes or goes.
        self.update(Content("\n").join(lines), layout=not self._drawn or len(lines) != self._lines)
        self._drawn, self._lines = True, len(lines)

    def _progress_line(self, now: float) -> str:
        """``  40/128 · 2.4 step/s · ETA 36s`` while the job trains and reports progress."""
        if self.progress is None or self.states[Stage.TRAIN] is not StageState.RUNNING or self.run_over:
            return ""
        width = (self.size.width or 36) - 2
        return "  " + short_text(self.progress, now, width)

    def invalidate(self) -> None:
        self._shown = None

    def _line(self, stage: Stage, now: float) -> Content:
        state = self.states[stage]
        if state is StageState.PENDING and self.run_over:
            mark, style, took = "–", "$text-muted", "not run"
        else:
            mark, style = STAGE_MARKS[state]
            if state is StageState.RUNNING:
                took = f"{int(now - self.began.get(stage, now))}s"
            elif stage in self.took:
                took = format_seconds(self.took[stage])
            else:
                took = ""
        name_style = "bold" if state is StageState.RUNNING else ("$text-muted" if style == "$text-muted" else "")
        detail = self.details.get(stage, "")
        if stage is Stage.TRAIN and not detail and self.progress is not None and state is not StageState.RUNNING:
            detail = final_text(self.progress)  # the steps done, when the stage did not say
        failed = state is StageState.FAILED or (stage is Stage.COMPARE and self.gates_failed)
        detail_style = "$error" if failed else "$text-muted"
        return Content.assemble(
            (mark, f"bold {style}"),
            " ",
            (f"{stage.value:<9}", name_style),
            (f"{took:>8}", "$text-muted" if state is not StageState.RUNNING else "$warning"),
            ("  " + detail if detail else "", detail_style),
        )

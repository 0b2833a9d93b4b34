"""The stages checklist: check … teardown, each with its mark and duration."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.backend.events import STAGES, Stage, StageState
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
        self._shown: tuple[object, ...] | None = None

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
            case ev.RunFinished():
                self.run_over = True

    def refresh_view(self, now: float) -> None:
        running = tuple(int(now - self.began.get(s, now)) for s, st in self.states.items() if st is StageState.RUNNING)
        key = (
            tuple(self.states.values()),
            tuple(self.took.items()),
            tuple(self.details.items()),
            running,
            self.run_over,
            self.gates_failed,
        )
        if key == self._shown:
            return
        self._shown = key
        # One line per stage, always: a layout pass the first time only.
        self.update(Content("\n").join(self._line(stage, now) for stage in STAGES), layout=not self._drawn)
        self._drawn = True

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
        failed = state is StageState.FAILED or (stage is Stage.COMPARE and self.gates_failed)
        detail_style = "$error" if failed else "$text-muted"
        return Content.assemble(
            (mark, f"bold {style}"),
            " ",
            (f"{stage.value:<9}", name_style),
            (f"{took:>8}", "$text-muted" if state is not StageState.RUNNING else "$warning"),
            ("  " + detail if detail else "", detail_style),
        )

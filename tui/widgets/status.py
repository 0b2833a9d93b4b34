"""The status line: what the run is doing now, the latest error, and at the end
the outcome, the verdict and where the report is."""

from __future__ import annotations

from pathlib import Path

from textual.content import Content
from textual.widgets import Static

from trainboard.backend import events as ev
from trainboard.backend.events import StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.tui.leaving import short_path
from trainboard.tui.render import format_seconds
from trainboard.tui.widgets.marks import STATUS_MARKS


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
        background: $surface;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__(id="status")
        self._drawn = False  # layout once, when the first content arrives
        self.run_dir = run_dir
        self.activity = "starting"
        self.notice = ""
        self.error = ""
        self.stopping = ""
        self.verdict = ""
        self.verdict_passed = True
        self.report = ""
        self.finished: ev.RunFinished | None = None
        self.tracking = ""  # the MLflow run and the baseline, once known
        self.baseline = ""
        self._shown: tuple[object, ...] | None = None

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.StageChanged(stage=stage, state=StageState.RUNNING):
                self.activity = f"{stage.value} …"
                self.notice = ""
            case ev.Notice(message=message):
                self.notice = message
            case ev.TrackingReady(experiment=experiment, mlflow_run_id=run_id):
                self.tracking = f"mlflow run {run_id[:8]} in {experiment!r}"
            case ev.BaselineFound(branch=branch, mlflow_run_id=run_id):
                self.baseline = f"baseline {branch} run {run_id[:8]}" if run_id else f"no baseline on {branch} yet"
            case ev.ErrorRaised(stage=stage, message=message):
                first = message.splitlines()[0] if message else "failed"
                self.error = f"{stage.value}: {first}" if stage else first
            case ev.ComparisonReady(comparison=comp) if comp.final:
                self.verdict = comp.verdict
                self.verdict_passed = comp.passed
            case ev.ReportWritten(path=path):
                self.report = path
            case ev.RunFinished():
                self.finished = event
                if not self.report and (self.run_dir / "report.md").exists():
                    self.report = str(self.run_dir / "report.md")

    def show_stopping(self, text: str) -> None:
        """The app asked the session to stop: say so until the run has finished."""
        self.stopping = text

    def refresh_view(self, now: float) -> None:
        key = (
            self.activity,
            self.notice,
            self.error,
            self.stopping,
            self.verdict,
            self.report,
            self.finished,
            self.tracking,
            self.baseline,
        )
        if key == self._shown:
            return
        self._shown = key
        self.update(self._content(), layout=not self._drawn)  # one line: a layout pass once
        self._drawn = True

    def invalidate(self) -> None:
        self._shown = None

    def _content(self) -> Content:
        sep = (" · ", "$text-muted")
        if self.finished is not None:
            done = self.finished
            mark, style = STATUS_MARKS.get(done.status, ("■", "$warning"))
            try:
                code = ExitCode(done.outcome).name
            except ValueError:
                code = str(done.outcome)
            parts: list[str | tuple[str, str]] = [
                (f"{mark} {done.status}", f"bold {style}"),
                f" (exit {done.outcome} {code}) in {format_seconds(done.duration)}",
            ]
            if self.verdict:
                parts += [sep, (self.verdict, "$success" if self.verdict_passed else "$error")]
            elif self.error:
                parts += [sep, (self.error, "$error")]
            if self.report:
                parts += [sep, "report ", (short_path(self.report), "underline")]
            return Content.assemble(*parts)
        if self.error:
            return Content.assemble(
                ("✗ ", "bold $error"),
                (self.error, "$error"),
                *([sep, (self.stopping, "$warning")] if self.stopping else []),
            )
        if self.stopping:
            return Content.styled(f"■ {self.stopping}", "bold $warning")
        if self.notice:
            return Content.styled(self.notice, "$warning")
        context: list[str | tuple[str, str]] = []
        for piece in (self.tracking, self.baseline):
            if piece:
                context += [sep, piece]
        return Content.assemble((f"● {self.activity}", "$warning"), *context)

"""One run's dashboard body, as a screen: the panels of one session, fed by its events.

:class:`RunScreen` is what ``trainboard run`` shows: :class:`trainboard.tui.app.TrainboardApp`
makes it its main screen for the session it runs itself (``owned``). The sweep
dashboard pushes one for a member the sweep runs (not owned): that screen
replays the member's events kept so far, then follows its session; it never
runs, cancels or detaches the session (leaving it with escape leaves the member
running), and its log pane starts with the end of the member's log files.

Data flow: the session's callback only appends (log lines to the log pane's
buffer, other events to an inbox); a timer at 15 Hz drains both, folds the
events into the panels' state and renders each changed panel once, inside one
``batch_update``. A burst of log lines or metric polls costs one render.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button

from trainboard.backend import events as ev
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.record import RunStatus
from trainboard.backend.session import Session
from trainboard.tui.leaving import short_path
from trainboard.tui.widgets import (
    ComparisonTable,
    EventPanel,
    FailurePanel,
    LogPane,
    MetricsPanel,
    MetricsPlot,
    RunHeader,
    RunnerPanel,
    StageList,
    StatusLine,
)
from trainboard.tui.widgets.footer import SteadyFooter
from trainboard.tui.widgets.log_index import LogFiles
from trainboard.tui.widgets.marks import FAILED_STATUSES

TICK_SECONDS = 1 / 15
TAIL_BYTES = 256 * 1024  # how much of a member's log a screen opened mid-run starts with
_NOTIFY_SEVERITY: dict[str, SeverityLevel] = {
    RunStatus.SUCCEEDED: "information",
    RunStatus.CANCELLED: "warning",
    RunStatus.DETACHED: "information",
}


def log_tail(path: Path, limit: int = TAIL_BYTES) -> list[str]:
    """The last whole lines of the log file at ``path`` (at most ``limit`` bytes); [] when absent."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - limit))
            data = file.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > limit else lines  # the first may be cut


class RunScreen(Screen[None]):
    """The panels of one session. ``owned``: the app that shows it runs the session;
    otherwise (a sweep's member) ``replay`` holds the session's events so far."""

    def __init__(self, session: Session, owned: bool = True, replay: Sequence[ev.Event] = ()) -> None:
        super().__init__()
        self.session = session
        self.owned = owned
        self.outcome: ExitCode | None = None  # the session's, once it has finished
        self.on_pull_request: Callable[[], None] = lambda: None  # told when a pull request opened
        self._inbox: deque[ev.Event] = deque(replay)
        self._quiet = len(self._inbox)  # replayed events: shown, not announced again
        self._unsubscribe: Callable[[], None] | None = None
        self._ticker: Timer | None = None
        config = session.config
        self.header = RunHeader(config.name, session.run_id, config.runner.kind, time.time())
        self.stages = StageList()
        self.metrics = MetricsPanel(config)
        self.plot = MetricsPlot(config)
        self.runner = RunnerPanel(config.runner.kind)
        self.log_pane = LogPane()
        self.log_files = LogFiles(session.run_dir, session.redact)  # indexed by the full-log screen
        self.comparison = ComparisonTable(config)
        self.failure = FailurePanel(session.run_dir, session.redact.lines)
        self.status = StatusLine(session.run_dir)
        self.pr_button = Button("Open PR (p)", id="open-pr", compact=True)
        self._focus_before_plot: Widget | None = None  # given back when the maximised plot goes back
        self.panels: tuple[EventPanel, ...] = (
            self.header,
            self.stages,
            self.metrics,
            self.plot,
            self.runner,
            self.comparison,
            self.failure,
            self.status,
        )

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield self.header
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield self.stages
                yield self.metrics
                yield self.plot
                yield self.runner
            yield self.log_pane
        yield self.failure
        yield self.comparison
        with Horizontal(id="status-bar"):
            yield self.status
            if self.owned:
                yield self.pr_button  # a member's pull request is the sweep's
        yield SteadyFooter()

    def on_mount(self) -> None:
        if not self.owned:
            self._read_log_files()
        self._unsubscribe = self.session.subscribe(self._on_event)
        self._ticker = self.set_interval(TICK_SECONDS, self._tick)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.invalidate())
        self.log_pane.focus()
        self.watch(self, "maximized", self._maximized_changed, init=False)

    def on_screen_suspend(self) -> None:
        """Hidden (a member's, kept by the sweep screen): its panels wait; the log pane's buffer,
        bounded, keeps taking lines. The app's own run screen keeps going, as it always has."""
        if not self.owned and self._ticker is not None:
            self._ticker.pause()

    def on_screen_resume(self) -> None:
        if not self.owned and self._ticker is not None:
            self._ticker.resume()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        # The app's signal holds its subscribers' callbacks, and ours holds this screen: a member's
        # dashboard the sweep screen let go of would live, with its log pane, as long as the app.
        self.app.theme_changed_signal.unsubscribe(self)

    def _read_log_files(self) -> None:
        """Opened mid-run: the pane starts with the end of what the member has logged."""
        for source in LogFiles.SOURCES:
            lines = log_tail(self.log_files.path(source))
            if lines:
                self.log_pane.feed(source, lines)

    # ------------------------------------------------------------------ events in

    def _on_event(self, event: ev.Event) -> None:
        """The session's subscriber: append only, no UI work (see the module docstring)."""
        if isinstance(event, ev.LogLines):
            self.log_pane.feed(event.source, event.lines)
        else:
            self._inbox.append(event)

    def _tick(self) -> None:
        events: list[ev.Event] = []
        while self._inbox:
            events.append(self._inbox.popleft())
        now = time.time()
        with self.app.batch_update():
            self.log_pane.flush()
            for event in events:
                for panel in self.panels:
                    panel.apply(event)
                if self._quiet:
                    self._quiet -= 1
                    self._fold(event)
                else:
                    self._announce(event)
            for panel in self.panels:
                panel.refresh_view(now)

    def _fold(self, event: ev.Event) -> None:
        """What the screen keeps of an event, announced or not."""
        match event:
            case ev.RunStarted(dirty=dirty):
                self.header.dirty = dirty
            case ev.RunFinished(status=status, outcome=outcome):
                self.set_class(status in FAILED_STATUSES, "-run-failed")
                if not self.owned:  # the owner (the app, the sweep) says when its run has ended
                    self.outcome = ExitCode(outcome)
                    self.status.show_stopping("")

    def _announce(self, event: ev.Event) -> None:
        """Notify what must not be missed."""
        self._fold(event)
        match event:
            case ev.ErrorRaised(stage=stage, message=message):
                title = f"error in {stage.value}" if stage else "error"
                self.notify(message, title=title, severity="error", timeout=15, markup=False)
            case ev.PullRequestOpened(number=number, url=url, created=created):
                what = "opened" if created else "updated"
                self.notify(f"#{number} {what}: {url}", title="Pull request", timeout=15, markup=False)
                self.on_pull_request()
            case ev.RunFinished(status=status, outcome=outcome):
                lines = [self.status.verdict or f"exit {outcome} ({ExitCode(outcome).name})"]
                if status == RunStatus.DETACHED:
                    lines = [f"the job runs on: `trainboard attach {self.session.run_id}` comes back to it"]
                if self.status.report:
                    lines.append(f"report: {short_path(self.status.report)}")
                self.notify(
                    "\n".join(lines),
                    title=f"run {status}",
                    markup=False,
                    timeout=12,
                    severity=_NOTIFY_SEVERITY.get(status, "error"),
                )

    def invalidate(self) -> None:
        for panel in self.panels:
            panel.invalidate()

    @property
    def caught_up(self) -> bool:
        """Whether every event received so far has been shown."""
        return not self._inbox and not self.log_pane.pending

    # ------------------------------------------------------------------ views

    def show_full_log(self) -> None:
        """l: the whole log, scrolled from disk (l again comes back)."""
        from trainboard.tui.screens.log_view import FullLogScreen

        if not isinstance(self.app.screen, FullLogScreen):
            self.app.push_screen(FullLogScreen(self.log_files, self.log_pane.source or "job"))

    def show_runs(self) -> None:
        """r: every recorded run, this one included."""
        from trainboard.tui.screens.runs import RunsScreen

        if not isinstance(self.app.screen, RunsScreen):
            self.app.push_screen(RunsScreen(self.session.store))

    def toggle_plot(self) -> None:
        """m: the metrics plot. Tall terminals show it in the side column (m hides
        it); elsewhere m shows it maximised, and m or escape puts it back."""
        plot = self.plot
        if self.maximized is plot:
            self.minimize()
        elif self.has_class("-roomy"):
            plot.toggle_class("-hidden")
        else:
            if self.app.screen is not self:
                return
            self._focus_before_plot = self.focused
            self.maximize(plot, container=False)
        plot.invalidate()

    def _maximized_changed(self, maximized: object) -> None:
        """The maximised plot hides the focused panel, and Textual hands the focus on: when the
        plot goes back (m, or escape), the focus goes back to where it was."""
        if maximized is not None:
            return
        before, self._focus_before_plot = self._focus_before_plot, None
        if before is not None and before.is_attached:
            self.call_after_refresh(before.focus)

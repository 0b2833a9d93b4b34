"""`trainboard run`: the Textual dashboard.

The app is a view of one :class:`~trainboard.backend.session.Session`. It runs
``session.run()`` in a worker on its own event loop, subscribes to the
session's events with a plain callback and sends back two commands, cancel and
detach. It holds no run logic.

Every action has a key, an entry in the command palette (``palette_commands``,
listed by :class:`trainboard.tui.commands.TrainboardCommands`) and, for the pull request,
a button; all three run the same ``action_*`` method.

Data flow: the callback only appends (log lines to the log pane's buffer,
other events to an inbox); a timer at 15 Hz drains both, folds the events into
the panels' state and renders each changed panel once, inside one
``batch_update``. A burst of log lines or metric polls costs one render.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.widget import Widget
from textual.widgets import Button, Footer
from textual.worker import Worker, WorkerState

from trainboard.backend import events as ev
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.record import RunStatus
from trainboard.backend.session import Session
from trainboard.tui.commands import PaletteCommand, TrainboardCommands
from trainboard.tui.firstframe import record_first_frame
from trainboard.tui.interruptions import Interruptions
from trainboard.tui.leaving import short_path
from trainboard.tui.log_keys import LogKeys
from trainboard.tui.pull_request_keys import PullRequestKeys
from trainboard.tui.quit_keys import QuitKeys
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
from trainboard.tui.widgets.log_index import LogFiles
from trainboard.tui.widgets.marks import FAILED_STATUSES

TICK_SECONDS = 1 / 15
_NOTIFY_SEVERITY: dict[str, SeverityLevel] = {
    RunStatus.SUCCEEDED: "information",
    RunStatus.CANCELLED: "warning",
    RunStatus.DETACHED: "information",
}


class TrainboardApp(LogKeys, PullRequestKeys, QuitKeys, Interruptions):
    """The dashboard: its layout and the events it shows; the keys that act on the run
    live in its bases (pull_request_keys, quit_keys, interruptions, dashboard_base), and
    the log pane's keys, which work wherever the focus is, in log_keys (first in the footer)."""

    CSS_PATH = "app.tcss"
    TITLE = "trainboard"
    HELP_TITLE = "Run dashboard"
    COMMANDS = App.COMMANDS | {TrainboardCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help"),  # early: the footer is cut on narrow terminals
        Binding("c", "cancel_run", "Cancel run"),
        Binding("p", "open_pr", "Open PR", show=False),  # the button beside the status line shows it
        Binding("r", "show_runs", "Runs"),
        Binding("m", "toggle_plot", "Plot"),
        Binding("l", "toggle_log", "Full log"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall"), (44, "-roomy")]
    # The app's keys that act on the dashboard itself: all but quit and help.
    _dashboard_actions = frozenset(b.action for b in Binding.make_bindings(BINDINGS)) - {"quit", "help"}

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self._inbox: deque[ev.Event] = deque()
        self._unsubscribe: Any = None
        self._run: Worker[ExitCode] | None = None  # the worker that runs session.run()
        self._started = time.time()
        config = session.config
        self._header = RunHeader(config.name, session.run_id, config.runner.kind, self._started)
        self._stages = StageList()
        self._metrics = MetricsPanel(config)
        self._plot = MetricsPlot(config)
        self._runner = RunnerPanel(config.runner.kind)
        self._log_pane = LogPane()
        self._log_files = LogFiles(session.run_dir, session.redact)  # indexed by the full-log screen
        self._comparison = ComparisonTable(config)
        self._failure = FailurePanel(session.run_dir, session.redact.lines)
        self._status = StatusLine(session.run_dir)
        self._pr_button = Button("Open PR (p)", id="open-pr", compact=True)
        self._focus_before_plot: Widget | None = None  # given back when the maximised plot goes back
        self._panels: tuple[EventPanel, ...] = (
            self._header,
            self._stages,
            self._metrics,
            self._plot,
            self._runner,
            self._comparison,
            self._failure,
            self._status,
        )

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield self._header
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield self._stages
                yield self._metrics
                yield self._plot
                yield self._runner
            yield self._log_pane
        yield self._failure
        yield self._comparison
        with Horizontal(id="status-bar"):
            yield self._status
            yield self._pr_button
        yield Footer()

    def on_mount(self) -> None:
        self._unsubscribe = self.session.subscribe(self._on_event)
        self.set_interval(TICK_SECONDS, self._tick)
        self.theme_changed_signal.subscribe(self, lambda _theme: self._invalidate())
        self._install_signal_handlers()
        self._log_pane.focus()
        self.watch(self.screen, "maximized", self._maximized_changed, init=False)
        self._show_pr_state()
        # The session starts once the first frame is on screen: its first step
        # imports mlflow in a thread, which would compete with that frame.
        self.call_after_refresh(self._start_session)

    def _start_session(self) -> None:
        record_first_frame()
        self._run = self.run_worker(self.session.run(), name="session", group="session", exit_on_error=False)

    async def on_unmount(self) -> None:
        self._remove_signal_handlers()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self.outcome is None:
            # The app is going away mid-run (it crashed, or was told to exit): cancel, and
            # wait here for the session's teardown, which the closing event loop would cut short.
            self.session.cancel("the dashboard closed")
        await self.session.wait_finished()

    # ------------------------------------------------------------------ events in

    def _on_event(self, event: ev.Event) -> None:
        """The session's subscriber: append only, no UI work (see the module docstring)."""
        if isinstance(event, ev.LogLines):
            self._log_pane.feed(event.source, event.lines)
        else:
            self._inbox.append(event)

    def _tick(self) -> None:
        events: list[ev.Event] = []
        while self._inbox:
            events.append(self._inbox.popleft())
        now = time.time()
        with self.batch_update():
            self._log_pane.flush()
            for event in events:
                for panel in self._panels:
                    panel.apply(event)
                self._announce(event)
            for panel in self._panels:
                panel.refresh_view(now)

    def _announce(self, event: ev.Event) -> None:
        """What the app itself does on an event: mostly, notify what must not be missed."""
        match event:
            case ev.RunStarted(dirty=dirty):
                self._header.dirty = dirty
            case ev.ErrorRaised(stage=stage, message=message):
                title = f"error in {stage.value}" if stage else "error"
                self.notify(message, title=title, severity="error", timeout=15, markup=False)
            case ev.PullRequestOpened(number=number, url=url, created=created):
                what = "opened" if created else "updated"
                self.notify(f"#{number} {what}: {url}", title="Pull request", timeout=15, markup=False)
                self._show_pr_state()
            case ev.RunFinished(status=status, outcome=outcome):
                self.screen_stack[0].set_class(status in FAILED_STATUSES, "-run-failed")
                lines = [self._status.verdict or f"exit {outcome} ({ExitCode(outcome).name})"]
                if status == RunStatus.DETACHED:
                    lines = [f"the job runs on: `trainboard attach {self.session.run_id}` comes back to it"]
                if self._status.report:
                    lines.append(f"report: {short_path(self._status.report)}")
                self.notify(
                    "\n".join(lines),
                    title=f"run {status}",
                    markup=False,
                    timeout=12,
                    severity=_NOTIFY_SEVERITY.get(status, "error"),
                )

    def _invalidate(self) -> None:
        for panel in self._panels:
            panel.invalidate()

    # ------------------------------------------------------------------ the run's end

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = self._run
        if event.worker is not worker or event.state not in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            return
        if event.state is WorkerState.SUCCESS and worker.result is not None:
            self.outcome = ExitCode(worker.result)
        elif event.state is WorkerState.ERROR:
            self.outcome = ExitCode.INFRA_ERROR
            self.notify(
                f"{type(worker.error).__name__}: {worker.error}",
                title="trainboard failed",
                severity="error",
                timeout=30,
                markup=False,
            )
        else:
            self.outcome = ExitCode.INTERRUPTED
        self._status.show_stopping("")
        self.refresh_bindings()
        self._show_pr_state()
        if self._exit_when_done:
            self._exit_with_outcome()

    @property
    def caught_up(self) -> bool:
        """Whether every event received so far has been shown."""
        return not self._inbox and not self._log_pane.pending

    # ------------------------------------------------------------------ commands out

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "log":
            return self.log_key_state(str(parameters[0]) if parameters else "")
        if action in self._dashboard_actions and self.screen is not self.screen_stack[0]:
            return False  # the dashboard's own keys do nothing over the runs or help screens
        if action == "cancel_run":
            if not self.running:
                return False  # hidden once the run has ended
            return None if self._stop_requested else True  # greyed while stopping
        if action == "open_pr":
            return None if self.pull_request_blocker() else True  # greyed, with its reason on p (key_p)
        return True

    # Screens and views ---------------------------------------------------------

    def action_toggle_log(self) -> None:
        """l: the whole log, scrolled from disk (l again comes back)."""
        from trainboard.tui.screens.log_view import FullLogScreen

        if not isinstance(self.screen, FullLogScreen):
            self.push_screen(FullLogScreen(self._log_files, self._log_pane.source or "job"))

    def action_show_runs(self) -> None:
        """r: every recorded run, this one included."""
        from trainboard.tui.screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen(self.session.store))

    def action_help(self) -> None:
        from trainboard.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_plot(self) -> None:
        """m: the metrics plot. Tall terminals show it in the side column (m hides
        it); elsewhere m shows it maximised, and m or escape puts it back."""
        screen = self.screen_stack[0]
        plot = self._plot
        if screen.maximized is plot:
            screen.minimize()
        elif screen.has_class("-roomy"):
            plot.toggle_class("-hidden")
        else:
            if self.screen is not screen:
                return
            self._focus_before_plot = self.focused
            screen.maximize(plot, container=False)
        plot.invalidate()

    def _maximized_changed(self, maximized: object) -> None:
        """The maximised plot hides the focused panel, and Textual hands the focus on: when the
        plot goes back (m, or escape), the focus goes back to where it was."""
        if maximized is not None:
            return
        before, self._focus_before_plot = self._focus_before_plot, None
        if before is not None and before.is_attached:
            self.call_after_refresh(before.focus)

    def palette_commands(self) -> list[PaletteCommand]:
        """The command palette's entries (see trainboard.tui.commands)."""
        pr = self.pull_request_blocker()
        detach = self.detach_blocker()
        return [
            PaletteCommand(
                "Cancel run",
                "stop the job and tear down; the dashboard stays open"
                if self.running
                else "the run has finished: nothing to cancel",
                self.action_cancel_run,
            ),
            PaletteCommand(
                "Open pull request", f"unavailable: {pr}" if pr else "open or update it", self.action_open_pr
            ),
            PaletteCommand(
                "Detach",
                f"unavailable: {detach}" if detach else "quit and leave the job running; trainboard attach returns",
                self.action_detach,
            ),
            PaletteCommand("Stop and quit", "stop the job, tear down, then exit", self.action_stop_and_quit),
            PaletteCommand("Show runs", "every recorded run: log, metrics, comparison", self.action_show_runs),
            PaletteCommand(
                "Toggle metrics plot", "each metric to maximise per step, with the baseline", self.action_toggle_plot
            ),
            PaletteCommand("Help", "every key, grouped", self.action_help),
        ]


def make_app(session: Session) -> TrainboardApp:
    """The one factory: the CLI and the tests build the dashboard here."""
    return TrainboardApp(session)

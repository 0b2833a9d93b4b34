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

import asyncio
import os
import signal
import time
from collections import deque
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.widgets import Button, Footer
from textual.worker import Worker, WorkerState

from trainboard.backend import events as ev
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.tui.commands import PaletteCommand, TrainboardCommands
from trainboard.tui.firstframe import record_first_frame
from trainboard.tui.screens.quit import DETACH, STOP, QuitScreen
from trainboard.tui.widgets import (
    ComparisonTable,
    ConfirmScreen,
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
from trainboard.tui.widgets.status import short_path

TICK_SECONDS = 1 / 15
# Signals that stop the run cleanly: teardown runs, then the app exits.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_NOTIFY_SEVERITY: dict[str, SeverityLevel] = {
    "succeeded": "information",
    "cancelled": "warning",
    "detached": "information",
}
class TrainboardApp(App[int]):
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
        super().__init__()
        self.session = session
        self.outcome: ExitCode | None = None  # set when session.run() has returned
        self.exited_with: int | None = None  # the return code this app asked for; another one is a crash
        self._inbox: deque[ev.Event] = deque()
        self._exit_when_done = False
        self._stop_requested = ""
        self._unsubscribe: Any = None
        self._signals: list[signal.Signals] = []
        self._quiet_input: int | None = None  # see _leave_terminal
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

    def _handle_exception(self, error: Exception) -> None:
        """Textual's hook for an exception nothing in the app caught (a bug): the traceback,
        masked, goes to the run's folder before Textual exits; the CLI then says exit 3.
        (A private hook of Textual's: tests/test_faults_crash.py fails if it stops being called.)"""
        from trainboard.backend.crash import TRACEBACK_FILE, save_traceback

        self.session.cancel("the dashboard failed", failed=True)  # before Textual cancels the session's worker
        if self.session.run_dir.is_dir():
            save_traceback(error, [self.session.run_dir / TRACEBACK_FILE], self.session.redact)
        super()._handle_exception(error)

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
                if status == "detached":
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

    def _exit_with_outcome(self) -> None:
        """Exit with the session's ExitCode as the app's return code."""
        if self._quiet_input is not None:
            # After a hang-up: EOF on the quiet input lets Textual's input thread end.
            os.close(self._quiet_input)
            self._quiet_input = None
            self._revive_writer()
        self.exited_with = int(self.outcome if self.outcome is not None else ExitCode.INTERRUPTED)
        self.exit(return_code=self.exited_with)

    @property
    def running(self) -> bool:
        return self.outcome is None

    @property
    def caught_up(self) -> bool:
        """Whether every event received so far has been shown."""
        return not self._inbox and not self._log_pane.pending

    # ------------------------------------------------------------------ commands out

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._dashboard_actions and self.screen is not self.screen_stack[0]:
            return False  # the dashboard's own keys do nothing over the runs or help screens
        if action == "cancel_run":
            if not self.running:
                return False  # hidden once the run has ended
            return None if self._stop_requested else True  # greyed while stopping
        if action == "open_pr":
            return None if self.pull_request_blocker() else True  # greyed, with its reason on p (key_p)
        return True

    # The pull request ------------------------------------------------------------

    def pull_request_blocker(self) -> str:
        """Why the pull request cannot be opened now; "" when it can."""
        if self.running:
            return "the pull request opens once the run has finished"
        if self.outcome not in (ExitCode.OK, ExitCode.GATE_FAILED):
            return f"the run {self._status.finished.status if self._status.finished else 'ended'}: no result to propose"
        return self.session.pull_request_blocker

    def _show_pr_state(self) -> None:
        blocker = self.pull_request_blocker()
        self._pr_button.set_class(bool(blocker), "-blocked")
        self._pr_button.tooltip = blocker or "open the pull request, or update the one already open"

    def action_open_pr(self) -> None:
        """p, the button and the palette: open or update the pull request, or say why not."""
        blocker = self.pull_request_blocker()
        if blocker:
            self.notify(blocker, title="Pull request", severity="warning", markup=False)
            return
        self.run_worker(self._open_pull_request(), name="pull-request", exit_on_error=False)

    async def _open_pull_request(self) -> None:
        self._pr_button.set_class(True, "-blocked")  # while it publishes
        try:
            await self.session.open_pull_request()  # its outcome arrives as events
        finally:
            self._show_pr_state()

    def key_p(self) -> None:
        """p while the action is disabled: its binding is greyed out, so say why here."""
        if self.screen is self.screen_stack[0]:
            self.action_open_pr()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button is self._pr_button:
            event.stop()
            self.action_open_pr()

    # Quit, detach, stop ----------------------------------------------------------

    def action_quit(self) -> None:  # type: ignore[override]
        """q, Ctrl+C, Ctrl+Q: exit; while the run goes on, ask: detach, stop, or back."""
        if not self.running:
            self._exit_with_outcome()
            return
        top = self.screen
        if isinstance(top, ConfirmScreen):
            if top.purpose == "quit":
                top.action_answer(STOP)  # Ctrl+C twice: stop and quit
                return
            top.action_answer_safe()
        if self._stop_requested:
            self._exit_when_done = True
            self.notify("Teardown in progress: trainboard exits when it has finished.", title="Quitting")
            return
        self.push_screen(QuitScreen(self.session.run_id, self.detach_blocker()), self._quit_answered)

    def _quit_answered(self, answer: str | None) -> None:
        if answer == DETACH:
            self.action_detach()
        elif answer == STOP:
            self.action_stop_and_quit()

    def detach_blocker(self) -> str:
        """Why the dashboard cannot detach now; "" when it can."""
        if not self.running:
            return "the run has finished"
        return str(getattr(self.session, "detach_blocker", ""))

    def action_detach(self) -> None:
        """Leave: the job keeps running and `trainboard attach RUN` comes back to it."""
        if not self.running:
            self._exit_with_outcome()
            return
        blocker = self.detach_blocker()
        if blocker or self._stop_requested or not self.session.detach():
            self.notify(blocker or "the run is already stopping", title="Cannot detach", severity="warning")
            return
        self._exit_when_done = True
        self._stop_requested = "detach"
        self._status.show_stopping(f"detaching: the job runs on; trainboard attach {self.session.run_id}")
        self.refresh_bindings()

    def action_stop_and_quit(self) -> None:
        """Stop the job, tear down, then exit (at once when the run is over)."""
        self._exit_when_done = True
        self._stop("quit from the dashboard")

    def action_cancel_run(self) -> None:
        if not self.running:
            self.notify("The run has finished: nothing to cancel.")
            return
        if self._stop_requested or isinstance(self.screen, ConfirmScreen):
            return
        self.push_screen(
            ConfirmScreen[bool](
                "cancel",
                "Cancel the run?",
                "The job is stopped and the runner torn down; the dashboard stays open.",
                yes="Cancel run",
            ),
            self._cancel_answered,
        )

    def _cancel_answered(self, yes: bool | None) -> None:
        if yes:
            self._stop("cancelled from the dashboard")

    def action_toggle_log(self) -> None:
        """l: the whole log, scrolled from disk (l again comes back)."""
        from trainboard.tui.screens.log_view import FullLogScreen

        if not isinstance(self.screen, FullLogScreen):
            self.push_screen(FullLogScreen(self._log_files, self._log_pane.source or "job"))

    # Screens and views ---------------------------------------------------------

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
            screen.maximize(plot, container=False)
        plot.invalidate()

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

    def _stop(self, reason: str) -> None:
        """Ask the session to stop; the worker's end decides when (and whether) to exit."""
        if not self.running:
            if self._exit_when_done:
                self._exit_with_outcome()
            return
        if not self._stop_requested:
            self._stop_requested = reason
            self.session.cancel(reason)
            self._status.show_stopping(f"{reason}: stopping the job and tearing down …")
            self.refresh_bindings()

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread, or no signals on this platform
            self._signals.append(sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM (and SIGHUP, SIGINT): stop the job, tear down, then exit."""
        if sig is signal.SIGHUP:
            self._leave_terminal()
        self._exit_when_done = True
        if not self.running:
            self._exit_with_outcome()
            return
        self._stop(f"interrupted by {sig.name}")

    def _leave_terminal(self) -> None:
        """The terminal hung up: point the app's input and output at quiet files.

        Writing to a hung-up terminal fails with EIO, which kills Textual's writer
        thread; its bounded queue then fills and the next write blocks the event
        loop, teardown included. /dev/null takes the output; an empty pipe, never
        written, takes the input (no EOF, so the input thread does not spin).
        """
        if self._quiet_input is not None:
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        read_end, self._quiet_input = os.pipe()
        os.dup2(read_end, 0)
        os.close(read_end)
        self._revive_writer()

    def _revive_writer(self) -> None:
        """Restart Textual's output thread if a write to the dead terminal killed it."""
        driver = self._driver
        writer = getattr(driver, "_writer_thread", None)
        if writer is None or writer.is_alive():
            return
        from textual.drivers._writer_thread import WriterThread

        fresh = WriterThread(writer._file)
        fresh.start()
        driver._writer_thread = fresh  # type: ignore[union-attr]


def make_app(session: Session) -> TrainboardApp:
    """The one factory: the CLI and the tests build the dashboard here."""
    return TrainboardApp(session)

"""`trainboard run` of a sweep: the sweep dashboard.

The app is a view of one :class:`~trainboard.backend.sweep.Sweep`. It runs
``sweep.run()`` in a worker and sends back the sweep's commands (stop a member,
cancel all); it holds no sweep logic. Its main screen is
:class:`~trainboard.tui.screens.sweep.SweepScreen`; enter there pushes a member's
run dashboard. The exit conventions are the run dashboard's (see
``trainboard.tui.cli._show``): the return code is the sweep's ExitCode,
``exited_with`` says the app chose it, and quitting while the sweep goes on
cancels it and waits for every member's teardown.
"""

from __future__ import annotations

import signal
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.sweep import Sweep
from trainboard.tui.compat_textual import UnhandledErrorHook
from trainboard.tui.heap import SETTLE_SECONDS, HeapSettler
from trainboard.tui.interruptions import install_stop_signals, leave_terminal, release_terminal, remove_stop_signals
from trainboard.tui.screens.sweep import SweepScreen
from trainboard.tui.widgets import ConfirmScreen
from trainboard.tui.widgets.kept_background import KeptBackgroundConfirm


class SweepApp(UnhandledErrorHook, App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # the members' run dashboards (absolute: for subclasses too)
    TITLE = "trainboard"
    HELP_TITLE = "Sweep"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall"), (44, "-roomy")]

    def __init__(self, sweep: Sweep) -> None:
        super().__init__()
        self.sweep = sweep
        self.main = SweepScreen(sweep)
        self.outcome: ExitCode | None = None  # set when sweep.run() has returned
        self.exited_with: int | None = None  # the return code this app asked for; another one is a crash
        self._run: Worker[ExitCode] | None = None
        self._exit_when_done = False
        self._signals: list[signal.Signals] = []
        self._quiet_input: int | None = None  # after a hang-up (see interruptions.leave_terminal)
        self.heap = HeapSettler()  # short garbage-collector pauses (see trainboard.tui.heap)

    @property
    def running(self) -> bool:
        return self.outcome is None

    def get_default_screen(self) -> Screen[None]:
        return self.main

    def on_mount(self) -> None:
        install_stop_signals(self._on_signal, self._signals)
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        self._run = self.run_worker(self.sweep.run(), name="sweep", group="sweep", exit_on_error=False)
        self.heap.settle()
        self.set_interval(SETTLE_SECONDS, self.heap.settle)  # again once the members' imports are done

    async def on_unmount(self) -> None:
        remove_stop_signals(self._signals)
        self.heap.release()
        if self.outcome is None:
            # Going away mid-sweep (a crash, or told to exit): cancel, and wait for each member's
            # teardown here, which the closing event loop would cut short.
            self.sweep.cancel("the dashboard closed")
        for state in self.sweep.members:
            if state.session is not None:
                await state.session.wait_finished()

    def on_unhandled_error(self, error: Exception) -> None:
        """A bug in the app: every member is stopped (and torn down) before Textual exits."""
        self.sweep.cancel("the dashboard failed")

    def _on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM, SIGHUP, SIGINT: stop every member, tear down, then exit."""
        if sig is signal.SIGHUP and self._quiet_input is None:
            self._quiet_input = leave_terminal(self)
        self._exit_when_done = True
        if not self.running:
            self._exit_with_outcome()
            return
        self.sweep.cancel(f"interrupted by {sig.name}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = self._run
        if event.worker is not worker or event.state not in (
                WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        if event.state is WorkerState.SUCCESS and worker.result is not None:
            self.outcome = ExitCode(worker.result)
        elif event.state is WorkerState.ERROR:
            self.outcome = ExitCode.INFRA_ERROR
            self.notify(f"{type(worker.error).__name__}: {worker.error}", title="trainboard failed",
                        severity="error", timeout=30, markup=False)
        else:
            self.outcome = ExitCode.INTERRUPTED
        self.refresh_bindings()
        if self._exit_when_done:
            self._exit_with_outcome()

    def _exit_with_outcome(self) -> None:
        if self._quiet_input is not None:
            release_terminal(self, self._quiet_input)
            self._quiet_input = None
        self.exited_with = int(self.outcome if self.outcome is not None else ExitCode.INTERRUPTED)
        self.exit(return_code=self.exited_with)

    # ------------------------------------------------------------------ keys

    def action_quit(self) -> None:  # type: ignore[override]
        """q, Ctrl+C: exit; while the sweep goes on, ask first: every member is stopped and torn down."""
        if not self.running:
            self._exit_with_outcome()
            return
        top = self.screen
        if isinstance(top, ConfirmScreen):
            if top.purpose == "quit":
                top.action_answer("yes")  # Ctrl+C twice: stop and quit
                return
            top.action_answer_safe()
        if self._exit_when_done:
            self.notify("Teardown in progress: trainboard exits when every member has finished.", title="Quitting")
            return
        self.push_screen(
            KeptBackgroundConfirm[bool](
                "quit",
                "Quit trainboard while the sweep goes on?",
                "Every running member is stopped and its runner torn down, the queued ones never start; "
                "then trainboard exits. Ctrl+C again also stops.",
                yes="Stop and quit",
            ),
            self._quit_answered,
        )

    def _quit_answered(self, yes: bool | None) -> None:
        if yes:
            self.action_stop_and_quit()

    def action_stop_and_quit(self) -> None:
        """Stop every member, tear down, then exit (at once when the sweep is over)."""
        self._exit_when_done = True
        if not self.running:
            self._exit_with_outcome()
            return
        self.sweep.cancel("quit from the dashboard")
        self.main.refresh_bindings()

    def action_help(self) -> None:
        from trainboard.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def make_sweep_app(sweep: Sweep) -> SweepApp:
    """The one factory: the CLI and the tests build the sweep dashboard here."""
    return SweepApp(sweep)

"""What stops the dashboard from outside: signals, a terminal that hangs up, and a crash.

SIGTERM, SIGHUP and SIGINT stop the run cleanly (teardown runs, then the app
exits). An exception nothing in the app caught (a bug) cancels the run as
failed and leaves its masked traceback in the run's folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from textual.app import App

from trainboard.tui.compat_textual import revive_writer_thread
from trainboard.tui.dashboard_base import DashboardBase

# Signals that stop the run cleanly: teardown runs, then the app exits.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def install_stop_signals(handler: Callable[[signal.Signals], None], installed: list[signal.Signals]) -> None:
    """``handler(sig)`` on each of STOP_SIGNALS, in the running loop; those installed go into ``installed``."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread, or no signals on this platform
        installed.append(sig)


def remove_stop_signals(installed: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for sig in installed:
        loop.remove_signal_handler(sig)
    installed.clear()


class Interruptions(DashboardBase):
    def on_unhandled_error(self, error: Exception) -> None:
        """An exception nothing in the app caught (a bug): the traceback, masked, goes to the
        run's folder before Textual exits; the CLI then says exit 3. (Called from Textual's
        private hook, see compat_textual: tests/test_faults_crash.py fails if it stops being called.)"""
        from trainboard.backend.crash import TRACEBACK_FILE, save_traceback

        self.session.cancel("the dashboard failed", failed=True)  # before Textual cancels the session's worker
        if self.session.run_dir.is_dir():
            save_traceback(error, [self.session.run_dir / TRACEBACK_FILE], self.session.redact)

    def _install_signal_handlers(self) -> None:
        install_stop_signals(self._on_signal, self._signals)

    def _remove_signal_handlers(self) -> None:
        remove_stop_signals(self._signals)

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
        if self._quiet_input is None:
            self._quiet_input = leave_terminal(self)


def leave_terminal(app: App[Any]) -> int:
    """The terminal hung up: point the app's input and output at quiet files; the quiet input's
    write end, which :func:`release_terminal` closes when the app exits.

    Writing to a hung-up terminal fails with EIO, which kills Textual's writer
    thread; its bounded queue then fills and the next write blocks the event
    loop, teardown included. /dev/null takes the output; an empty pipe, never
    written, takes the input (no EOF, so the input thread does not spin).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    read_end, quiet_input = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)
    revive_writer_thread(app)
    return quiet_input


def release_terminal(app: App[Any], quiet_input: int) -> None:
    """Before exiting after a hang-up: EOF on the quiet input lets Textual's input thread end."""
    os.close(quiet_input)
    revive_writer_thread(app)

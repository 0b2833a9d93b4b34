"""Helpers for pilot-driven dashboard tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from trainboard.tui.app import TrainboardApp

RUN_TIMEOUT = 60.0


async def wait_until(pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        await pilot.pause(0.05)


async def wait_for_end(pilot: Pilot, app: TrainboardApp) -> None:
    """Until the run has returned and the dashboard has shown its last events."""
    await wait_until(pilot, lambda: app.outcome is not None and app.caught_up, "the run to finish")
    await pilot.pause(0.1)

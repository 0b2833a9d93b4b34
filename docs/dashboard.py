"""Make docs/dashboard.svg, the README's screenshot of the dashboard mid-run.

    .venv/bin/python docs/dashboard.py

The dashboard is the real app (``make_app``) replaying the events of real runs
of the tests' tiny job, recorded and normalised as for the snapshot tests (see
tests/snapshot_support.py): caught in the training stage at epoch 3 of 4, with
live metrics and their deltas against the baseline run, at 120x36. The same
dashboard gives the same file. Takes about 30 s (it records five runs).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from snapshot_support import (  # noqa: E402
    SCHEDULE,
    T0,
    Recorded,
    frozen_clock,
    record_runs,
    replaying_dashboard,
    settle,
    until_step,
)

from trainboard.backend.events import Stage  # noqa: E402

SIZE = (120, 36)
OUT = DOCS / "dashboard.svg"


async def screenshot(recorded: Recorded) -> None:
    with frozen_clock(T0) as clock:
        cut = until_step(recorded.training.events, 3)
        now = T0 + SCHEDULE[Stage.TRAIN][0] + 30.4
        app, replay = replaying_dashboard(recorded.training, cut, clock, now)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, replay, finished=False)
            app.save_screenshot(filename=OUT.name, path=str(OUT.parent))


def main() -> None:
    os.environ.pop("NO_COLOR", None)  # Textual honours it: the screenshot is in colour
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        recorded = record_runs(Path(tmp))
        os.chdir(recorded.repo)  # the paths the dashboard shows are relative to the repository
        try:
            asyncio.run(screenshot(recorded))
        finally:
            os.chdir(cwd)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

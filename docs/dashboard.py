"""Make docs/dashboard.svg, the README's screenshot of the dashboard mid-run.

    .venv/bin/python docs/dashboard.py

The dashboard is the real app (``make_app``) replaying the events of a real run of a
job shaped like the Quick start's (the one tests/test_snapshots_progress.py records: 1
epoch of 128 steps with ``trainboard:progress`` lines, train loss every 20 steps and an
evaluation every 32), normalised as for the snapshot tests: caught at step 80, with the
progress under the train stage and live metrics, at 120x36. The same dashboard gives
the same file. Takes about 20 s (it records one run).
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
    Recording,
    frozen_clock,
    local_branch_names,
    record,
    replaying_dashboard,
    settle,
)
from test_snapshots_progress import (  # noqa: E402
    CUT,
    RUN_ID,
    T0,
    normalised,
    progress_time,
    quick_start_repo,
    until_progress,
)

SIZE = (120, 36)
OUT = DOCS / "dashboard.svg"


async def screenshot(recording: Recording) -> None:
    with frozen_clock(T0) as clock:
        cut = until_progress(recording.events, CUT)
        app, replay = replaying_dashboard(recording, cut, clock, progress_time(CUT) + 1)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, replay, False)
            app.save_screenshot(filename=OUT.name, path=str(OUT.parent))


def main() -> None:
    os.environ.pop("NO_COLOR", None)  # Textual honours it: the screenshot is in colour
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        repo = quick_start_repo(Path(tmp) / "repo")
        with local_branch_names():
            recording = record(repo, RUN_ID, ())
        recording.events = normalised(repo, recording)
        os.chdir(repo)  # the paths the dashboard shows are relative to the repository
        try:
            asyncio.run(screenshot(recording))
        finally:
            os.chdir(cwd)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

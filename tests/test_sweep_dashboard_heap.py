"""The sweep dashboard keeps the garbage collector's full passes short (``trainboard.tui.heap``):
what is alive once it started (and again after its members' imports) is frozen out of the
collector's sight; when the app ends, everything is handed back."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.pilot_support import wait_until
from tests.test_sweep_dashboard import SIZE, make_sweep
from trainboard.tui.sweep_app import make_sweep_app


async def test_the_dashboard_freezes_the_settled_heap_and_hands_it_back_at_the_end(repo: Path) -> None:
    sweep = make_sweep(repo, "params.base_f1=0.5,0.7", overrides=("params.sleep=0.3", "params.epochs=2"))
    app = make_sweep_app(sweep)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.heap.settled >= 1, "the first settling", timeout=30)
        assert gc.get_freeze_count() > 1000
        await wait_until(pilot, lambda: any(m.history for m in sweep.members), "a member's first value", timeout=60)
        assert gc.get_freeze_count() > 1000  # frozen while the members run (settled again after their imports)
        await wait_until(pilot, lambda: not app.running, "the sweep's end", timeout=120)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit", timeout=30)
    assert gc.get_freeze_count() == 0

"""What a sweep leaves when it ends: the best member's plot (members leave theirs out),
the sweep report, and the pull request when the config publishes at the end
(see ``trainboard.backend.sweep_report`` and ``trainboard.backend.sweep_publish``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.backend import events as ev

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig
    from trainboard.backend.redact import Redactor
    from trainboard.backend.session import Session
    from trainboard.backend.sweep_record import SweepData


async def write_outputs(data: SweepData, root: Path, config: LoadedConfig, redact: Redactor,
                        best: Session | None, emit: Callable[[ev.Event], None]) -> None:
    """The best member's plot, the sweep report (its path into ``data.report``), then the pull request."""
    from trainboard.backend.runreport import draw_deferred_plot
    from trainboard.backend.sweep_publish import publish_sweep_at_end
    from trainboard.backend.sweep_report import write_sweep_report

    if best is not None:
        await draw_deferred_plot(best.ctx)
    try:
        data.report = str(await asyncio.to_thread(write_sweep_report, data, root, redact))
    except Exception as exc:  # noqa: BLE001 - a report that fails is said, the verdict stands
        emit(ev.Notice(f"sweep report not written: {type(exc).__name__}: {exc}"))
        return
    said: list[str] = []  # the bus is not for threads: said once back on the loop
    try:
        await asyncio.to_thread(publish_sweep_at_end, data, root, config.config, redact, said.append)
    finally:
        for line in said:
            emit(ev.Notice(line))


def check_publishing(data: SweepData, root: Path, loaded: LoadedConfig) -> str:
    """Before anything starts: a sweep that must publish (github.publish: always) and cannot
    raises a ConfigError; one that publishes in CI and cannot gets a note ("" when none)."""
    from trainboard.backend.publish import publishes_at_the_end
    from trainboard.backend.sweep_publish import sweep_publish_blocker

    cfg = loaded.config
    if not publishes_at_the_end(cfg):
        return ""
    problem = sweep_publish_blocker(data, root, cfg)
    if problem and cfg.github.publish == "always":
        raise loaded.error("github.publish", f"the sweep's pull request cannot be published: {problem}",
                           fix="set GITHUB_TOKEN and github.repo (or a GitHub remote), or set github.publish: ci")
    return f"no pull request for this sweep: {problem}" if problem else ""

"""The one interface of a run's integrations.

The session calls every configured hook at the same points of its plan:

- ``check``: before anything is spent (raise ``ConfigError`` to stop the run);
- ``setup_commands``: commands added to the setup job on the runner;
- ``after_collect``: once the job's outputs are back (a note for the collect stage);
- ``baseline_source``: where a baseline comes from when MLflow has none (consulted in order);
- ``after_report``: once the report is written (a note for the report stage).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from trainboard.backend.stages.base import RunContext
    from trainboard.backend.tracking import Baseline


class BaselineLookup(Protocol):
    """A baseline lookup a hook started (perhaps in the background)."""

    async def result(self) -> Baseline | None: ...

    def cancel(self) -> None: ...


class Hook:
    """An integration; every method's default does nothing."""

    def check(self, ctx: RunContext) -> None:
        return None

    def setup_commands(self, ctx: RunContext) -> list[str]:
        return []

    async def after_collect(self, ctx: RunContext, code: int) -> str:
        return ""

    def baseline_source(self, ctx: RunContext) -> BaselineLookup | None:
        return None

    async def after_report(self, ctx: RunContext) -> str:
        return ""

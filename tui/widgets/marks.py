"""Marks and theme-aware styles shared by the panels."""

from __future__ import annotations

from rich.console import JustifyMethod
from rich.style import Style as RichStyle
from rich.text import Text
from textual.markup import parse_style

from trainboard.backend.events import StageState
from trainboard.backend.record import RunStatus

# Icon and theme variable for each state of a stage.
STAGE_MARKS: dict[StageState, tuple[str, str]] = {
    StageState.PENDING: ("○", "$text-muted"),
    StageState.RUNNING: ("●", "$warning"),
    StageState.DONE: ("✓", "$success"),
    StageState.FAILED: ("✗", "$error"),
    StageState.SKIPPED: ("–", "$text-muted"),
}

# How a finished run's status reads, with the theme variable that colours it.
# Keyed by RunStatus, a StrEnum: a status read as a plain string finds its mark too.
STATUS_MARKS: dict[str, tuple[str, str]] = {
    RunStatus.SUCCEEDED: ("✓", "$success"),
    RunStatus.GATE_FAILED: ("✗", "$error"),
    RunStatus.JOB_FAILED: ("✗", "$error"),
    RunStatus.CONFIG_ERROR: ("✗", "$error"),
    RunStatus.ERROR: ("✗", "$error"),
    RunStatus.CANCELLED: ("■", "$warning"),
    RunStatus.DETACHED: ("◆", "$accent"),  # the job runs on: `trainboard attach RUN` comes back
    RunStatus.RUNNING: ("●", "$warning"),
}
# Statuses of a run whose job may still be going.
LIVE_STATUSES = tuple(s for s in RunStatus if s.is_live)
# Statuses of a run that failed: the dashboard shows the end of its log.
FAILED_STATUSES = tuple(s for s in RunStatus if s.is_failure)


def rich_style(spec: str) -> RichStyle:
    """A Rich style from a Textual style string that may name theme variables.

    DataTable cells render through Rich, which knows nothing of ``$success``;
    this resolves the variables against the running app's theme.
    """
    # "$text-muted" is "auto 60%" in Textual's themes: it has no colour of its own
    # outside a widget (Rich would draw it black), so it is Rich's dim here.
    return parse_style(spec.replace("$text-muted", "dim")).rich_style


def styled(text: str, spec: str = "", justify: JustifyMethod | None = None) -> Text:
    """Plain text (never parsed as markup) in a theme-aware style."""
    return Text(text, style=rich_style(spec) if spec else "", justify=justify)


def clock(seconds: float) -> str:
    """Whole seconds as m:ss or h:mm:ss, for times that tick."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

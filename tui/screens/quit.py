"""Quit while the run goes on: detach (the job keeps running), stop it and tear
down, or go back to the dashboard."""

from __future__ import annotations

from dataclasses import replace

from trainboard.tui.widgets.confirm import Answer, ConfirmScreen

DETACH, STOP, BACK = "detach", "stop", "back"


class QuitScreen(ConfirmScreen[str]):
    """Dismisses with "detach", "stop" or "back"."""

    HELP_ORDER = 30  # its place in the help screen
    HELP_TITLE = "Quit dialog (q while the run goes on)"
    ANSWERS = (
        Answer(DETACH, DETACH, "Detach", "d", "primary"),
        Answer(STOP, STOP, "Stop and quit", "s", "error"),
        Answer(BACK, BACK, "Back", "b"),
    )

    def __init__(self, run_id: str, detach_blocker: str = "") -> None:
        detach, stop, back = self.ANSWERS
        super().__init__(
            "quit",
            "Quit trainboard while the run goes on?",
            f"Detach: the job keeps running; `trainboard attach {run_id}` comes back to it.\n"
            "Stop: the job is stopped and the runner torn down, then trainboard exits.\n"
            "Ctrl+C again also stops.",
            answers=(replace(detach, disabled=detach_blocker), stop, back),
        )

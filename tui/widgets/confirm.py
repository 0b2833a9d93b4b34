"""A question in a modal screen: one button per answer, each with its key.

``ConfirmScreen`` dismisses with the chosen answer's value. The default answers
are yes/no (``True``/``False``); :class:`trainboard.tui.screens.quit.QuitScreen` asks
detach / stop / back with the same screen. Escape always picks the last answer,
which is the safe one ("no", "back").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label
from textual.widgets.button import ButtonVariant

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Answer(Generic[ResultT]):
    id: str  # the button's id and the name ``action_answer`` takes
    value: ResultT  # what the screen dismisses with
    label: str
    key: str  # shown on the button; the screen's BINDINGS bind it
    variant: ButtonVariant = "default"
    disabled: str = ""  # why this answer cannot be chosen now ("" when it can)


def yes_no(yes: str = "Yes") -> tuple[Answer[bool], Answer[bool]]:
    return (Answer("yes", True, yes, "y", "error"), Answer("no", False, "No", "n", "primary"))


class ConfirmScreen(ModalScreen[ResultT]):
    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
        background: $background 60%;
    }
    ConfirmScreen > Vertical {
        width: 64;
        max-width: 95%;
        height: auto;
        padding: 1 2;
        border: thick $warning;
        background: $surface;
    }
    ConfirmScreen Label {
        width: 100%;
    }
    ConfirmScreen #question {
        text-style: bold;
        margin-bottom: 1;
    }
    ConfirmScreen #explain {
        color: $text-muted;
        margin-bottom: 1;
    }
    ConfirmScreen Horizontal {
        height: auto;
        align-horizontal: right;
    }
    ConfirmScreen Button {
        margin-left: 1;
        min-width: 10;
    }
    """

    # Each answer's key is handled in on_key (answers vary by question); escape is the safe answer.
    BINDINGS = [Binding("escape", "answer_safe", "Back")]

    def __init__(
        self,
        purpose: str,
        question: str,
        explain: str = "",
        yes: str = "Yes",
        answers: Sequence[Answer[Any]] | None = None,
    ) -> None:
        super().__init__()
        self.purpose = purpose  # what the question is for: "quit", "cancel"
        self.question = question
        self.explain = explain
        self.answers: tuple[Answer[Any], ...] = tuple(answers) if answers else yes_no(yes)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, id="question", markup=False)
            if self.explain:
                yield Label(self.explain, id="explain", markup=False)
            with Horizontal():
                for answer in self.answers:
                    button = Button(
                        f"{answer.label} ({answer.key})",
                        variant=answer.variant,
                        id=answer.id,
                        disabled=bool(answer.disabled),
                    )
                    if answer.disabled:
                        button.tooltip = answer.disabled
                    yield button

    def on_mount(self) -> None:
        self.query_one(f"#{self.answers[-1].id}", Button).focus()  # the safe answer

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer(str(event.button.id))

    def on_key(self, event: events.Key) -> None:
        for answer in self.answers:
            if event.key == answer.key:
                event.stop()
                event.prevent_default()
                self.action_answer(answer.id)
                return

    def action_answer_safe(self) -> None:
        self.action_answer(self.answers[-1].id)

    def action_answer(self, answer_id: str) -> None:
        for answer in self.answers:
            if answer.id == answer_id:
                if answer.disabled:
                    self.notify(answer.disabled, severity="warning", markup=False)
                    return
                self.dismiss(answer.value)
                return

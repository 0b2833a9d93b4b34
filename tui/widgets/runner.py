"""The runner panel: its state, kind, address and the details it reported."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from backend import events as ev

_STATE_STYLES = {
    "ready": "$success",
    "training": "$success",
    "provisioning": "$warning",
    "setting up": "$warning",
    "stopped": "$text-muted",
}


class RunnerPanel(Static):
    DEFAULT_CSS = """
    RunnerPanel {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, kind: str) -> None:
        super().__init__(id="runner")
        self.border_title = "Runner"
        self.state = "waiting"
        self.kind = kind
        self.address = ""
        self.details: tuple[tuple[str, str], ...] = ()
        self._shown: tuple[object, ...] | None = None

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.RunnerChanged(state=state, kind=kind, address=address, details=details):
                self.state = state
                self.kind = kind or self.kind
                # Later events (training, stopped) repeat only the state: keep what we know.
                self.address = address or self.address
                self.details = details or self.details

    def refresh_view(self, now: float) -> None:
        key = (self.state, self.kind, self.address, self.details)
        if key == self._shown:
            return
        self._shown = key
        rows = [
            ("state", Content.styled(self.state, f"bold {_STATE_STYLES.get(self.state, '$warning')}")),
            ("kind", Content(self.kind)),
            ("address", Content(self.address or "—")),
        ]
        rows += [(name, Content(value)) for name, value in self.details]
        width = max(len(name) for name, _ in rows) + 1
        self.update(
            Content("\n").join(Content.assemble((f"{name:<{width}}", "$text-muted"), value) for name, value in rows)
        )

    def invalidate(self) -> None:
        self._shown = None

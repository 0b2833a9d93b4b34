"""The runner panel: state, instance, type, region, market, address, uptime and cost.

Every field comes from ``RunnerChanged`` events: their ``kind`` and ``address``,
and the ``details`` the runner reports. Remote runners report ``instance_id``,
``instance_type``, ``region``, ``market`` ("spot" or "on-demand") and
``hourly_price`` (USD an hour); the cost so far is that price times the uptime,
shown against ``budget.max_cost_usd`` when the run has a cap (its CostUpdated events say it).
Other details (the local runner's python and cpus) follow them. Uptime counts
from the first "ready" state and stops at "stopped".

With room for a line per field the panel lists them; with less (80x24) it packs
them into as few lines as its width allows.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from trainboard.backend import budget
from trainboard.backend import events as ev
from trainboard.tui.widgets.marks import clock

_STATE_STYLES = {
    "ready": "$success",
    "training": "$success",
    "provisioning": "$warning",
    "setting up": "$warning",
    "stopped": "$text-muted",
    "reconnecting": "$error",
    "interrupted": "$error",
}
# The fields named by the runner's details: (label, key).
DETAIL_FIELDS = (
    ("instance", "instance_id"),
    ("type", "instance_type"),
    ("region", "region"),
    ("market", "market"),
)
KNOWN_KEYS = {key for _, key in DETAIL_FIELDS} | {"hourly_price"}
# Packed into a few lines, what changes and what costs comes first.
PACKED_FIRST = ("state", "uptime", "cost", "address")
NONE = "—"


def hourly_price(details: dict[str, str]) -> float | None:
    try:
        return float(details["hourly_price"])
    except (KeyError, ValueError):
        return None


def cost_text(kind: str, details: dict[str, str], uptime: float | None, cap: float | None = None) -> str:
    """The cost so far: ``hourly_price`` times the uptime, against the cap when the run has one
    (``$0.04 of $0.10 cap``); nothing to pay on this machine."""
    price = hourly_price(details)
    if price is None:
        return "$0.00 (local)" if kind == "local" else NONE
    spent = price * (uptime or 0.0) / 3600
    shown = f"${spent:.2f}" if cap is None else budget.cap_text(spent, cap)
    return f"{shown} (${price:g}/h)"


class RunnerPanel(Static):
    DEFAULT_CSS = """
    RunnerPanel {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, kind: str) -> None:
        super().__init__(id="runner")
        self._shown_lines = -1  # lines last drawn: a change of count needs a layout pass
        self.border_title = "Runner"
        self.state = "waiting"
        self.kind = kind
        self.address = ""
        self.details: dict[str, str] = {}
        self.ready_at: float | None = None  # the first "ready": uptime counts from here
        self.stopped_at: float | None = None
        self.cap: float | None = None  # budget.max_cost_usd, told by the run's cost figures
        self._shown: tuple[object, ...] | None = None

    def apply(self, event: ev.Event) -> None:
        match event:
            case ev.RunnerChanged(state=state, kind=kind, address=address, details=details, at=at):
                self.state = state
                self.kind = kind or self.kind
                # Later events (training, stopped) repeat only the state: keep what we know.
                self.address = address or self.address
                self.details.update(details)
                if state == "ready" and self.ready_at is None:
                    self.ready_at = at
                if state == "stopped" and self.ready_at is not None and self.stopped_at is None:
                    self.stopped_at = at
            case ev.CostUpdated(cap=cap):
                self.cap = cap

    def uptime(self, now: float) -> float | None:
        if self.ready_at is None:
            return None
        return max(0.0, (self.stopped_at or now) - self.ready_at)

    def fields(self, now: float) -> list[tuple[str, Content]]:
        """(label, value) for each field, in the order shown."""
        uptime = self.uptime(now)
        rows = [("state", Content.styled(self.state, f"bold {_STATE_STYLES.get(self.state, '$warning')}"))]
        # A Ray cluster has no instance, type, region nor market of its own: its rows would push
        # the job's id and status out of sight.
        rows += [(label, Content(self.details.get(key) or NONE)) for label, key in DETAIL_FIELDS
                 if self.kind != "ray" or self.details.get(key)]
        rows += [
            ("address", Content(self.address or NONE)),
            ("uptime", Content(NONE if uptime is None else clock(uptime))),
            ("cost", Content(cost_text(self.kind, self.details, uptime, self.cap))),
            ("kind", Content(self.kind)),
        ]
        rows += [(name, Content(value)) for name, value in self.details.items() if name not in KNOWN_KEYS]
        return rows

    def refresh_view(self, now: float) -> None:
        uptime = self.uptime(now)
        size = self.content_size
        key = (self.state, self.kind, self.address, tuple(self.details.items()), uptime and int(uptime), size,
               self.cap)
        if key == self._shown:
            return
        self._shown = key
        rows = self.fields(now)
        if self._auto_height or size.height >= len(rows) or size.height == 0:
            width = max(len(name) for name, _ in rows) + 1
            lines = [Content.assemble((f"{name:<{width}}", "$text-muted"), value) for name, value in rows]
        else:
            first = [row for name in PACKED_FIRST for row in rows if row[0] == name]
            lines = self._packed(first + [row for row in rows if row[0] not in PACKED_FIRST], size.width)
        # Relayout only when the number of lines changes (uptime ticks every second).
        self.update(Content("\n").join(lines), layout=len(lines) != self._shown_lines)
        self._shown_lines = len(lines)

    @property
    def _auto_height(self) -> bool:
        height = self.styles.height
        return height is None or height.is_auto

    @staticmethod
    def _packed(rows: list[tuple[str, Content]], width: int) -> list[Content]:
        """The fields side by side, as many to a line as fit in ``width``."""
        lines: list[Content] = []
        line = Content("")
        for name, value in rows:
            pair = Content.assemble((name, "$text-muted"), " ", value)
            if line.cell_length and line.cell_length + 2 + pair.cell_length > width:
                lines.append(line)
                line = Content("")
            line = Content.assemble(line, "  ", pair) if line.cell_length else pair
        if line.cell_length:
            lines.append(line)
        return lines

    def invalidate(self) -> None:
        self._shown = None

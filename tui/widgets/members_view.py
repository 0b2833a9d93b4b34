"""The sweep's members, one line each, with a cursor: a table that redraws only the rows that changed.

Textual's ``DataTable`` renders every visible row again on any ``update_cell``:
with eight members streaming, the sweep screen's tick would redraw the whole
table several times a second and delay key presses. :class:`MembersView` keeps
one rendered :class:`~textual.strip.Strip` per member and, when a member's
cells change, renders that row alone and refreshes its line. The first line is
the column labels, pinned while the rows scroll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cells = Mapping[str, Text | str]
GAP = 2  # spaces between columns


class MembersView(ScrollView, can_focus=True):
    """Rows keyed by member index, in ``order``; ``columns`` are (key, label)."""

    DEFAULT_CSS = """
    MembersView > .members-view--cursor {
        background: $block-cursor-blurred-background;
    }
    MembersView:focus > .members-view--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    MembersView > .members-view--header {
        color: $text-muted;
        text-style: bold;
    }
    """
    COMPONENT_CLASSES = {"members-view--cursor", "members-view--header"}
    BINDINGS = [
        Binding("enter", "select", "Open member"),
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor(-1000000)", "First", show=False),
        Binding("end", "cursor(1000000)", "Last", show=False),
    ]

    class Selected(Message):
        """Enter on a member's row."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, columns: Sequence[tuple[str, str]], id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = list(columns)
        self.widths = {key: len(label) for key, label in self.columns}
        self.order: list[int] = []
        self.cells: dict[int, Cells] = {}
        self.cursor = 0
        self._position: dict[int, int] = {}
        self._strips: dict[int, Strip] = {}
        self._header: Strip | None = None

    # ------------------------------------------------------------------ data in

    def show(self, order: Sequence[int], cells: Mapping[int, Cells]) -> None:
        """Every row at once (a new order, filter or sort): the cursor stays on its member."""
        selected = self.selected
        self.order = list(order)
        self._position = {index: row for row, index in enumerate(self.order)}
        self.cells.update(cells)
        for index in self.order:
            self._widen(self.cells[index])
        self._invalidate()
        self.virtual_size = Size(self.size.width, len(self.order) + 1)
        self.move_cursor(self._position.get(selected, 0) if selected is not None else 0)
        self.refresh()

    def update(self, index: int, cells: Cells) -> None:
        """One member's row changed: render that row alone (all, when a column must widen)."""
        if self.cells.get(index) == cells:
            return
        self.cells[index] = cells
        self._strips.pop(index, None)
        if index not in self._position:
            return
        if self._widen(cells):
            self._invalidate()
            self.refresh()
        else:
            self.refresh_line(self._position[index] + 1)

    def _widen(self, cells: Cells) -> bool:
        wider = False
        for key, cell in cells.items():
            length = Text(cell).cell_len if isinstance(cell, str) else cell.cell_len
            if length > self.widths.get(key, 0):
                self.widths[key] = length
                wider = True
        return wider

    def _invalidate(self) -> None:
        self._strips.clear()
        self._header = None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._invalidate()

    def on_resize(self) -> None:
        self._invalidate()
        self.virtual_size = Size(self.size.width, len(self.order) + 1)

    # ------------------------------------------------------------------ what it shows

    @property
    def selected(self) -> int | None:
        """The member under the cursor."""
        return self.order[self.cursor] if 0 <= self.cursor < len(self.order) else None

    def row_text(self, row: int) -> list[str]:
        """The plain text of each cell on the row at ``row`` (tests, and what ``/`` is about)."""
        cells = self.cells[self.order[row]]
        return [str(cells.get(key, "")).strip() for key, _ in self.columns]

    def _line(self, cells: Mapping[str, Text | str], style: Style | None = None) -> Strip:
        text = Text(no_wrap=True, overflow="crop", style=style or "")
        for key, _ in self.columns:
            cell = cells.get(key, "")
            part = Text(cell) if isinstance(cell, str) else cell.copy()
            part.truncate(self.widths[key], overflow="ellipsis", pad=True)
            text.append_text(part)
            text.append(" " * GAP)
        segments = list(text.render(self.app.console, end=""))
        width = max(1, self.size.width)
        return Strip(segments).extend_cell_length(width).crop(0, width)

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        if y == 0:
            if self._header is None:
                labels = {key: label for key, label in self.columns}
                self._header = self._line(labels, self.get_component_rich_style("members-view--header"))
            return self._header.apply_style(base)
        row = self.scroll_offset.y + y - 1
        if row >= len(self.order):
            return Strip.blank(self.size.width, base)
        index = self.order[row]
        strip = self._strips.get(index)
        if strip is None:
            strip = self._strips[index] = self._line(self.cells.get(index, {}))
        if row == self.cursor:
            cursor = self.get_component_rich_style("members-view--cursor")
            return Strip(list(Segment.apply_style(strip, base, cursor)))
        return strip.apply_style(base)

    # ------------------------------------------------------------------ the cursor

    def move_cursor(self, row: int) -> None:
        before = self.cursor
        self.cursor = max(0, min(row, len(self.order) - 1))
        self.refresh_line(before + 1)
        self.refresh_line(self.cursor + 1)
        visible = max(1, self.size.height - 1)  # rows below the labels
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * max(1, self.size.height - 2))

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self.selected))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(self.scroll_offset.y + event.y - 1)
            if event.chain >= 2:
                self.action_select()

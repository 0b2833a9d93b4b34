"""A question over the sweep dashboard that renders the dimmed screen below it once, not at every repaint.

Textual draws a modal screen with a translucent background (``ConfirmScreen``'s
``$background 60%``) by rendering the whole screen below it again and tinting
every segment, each time the modal repaints: opening a question repaints it
five or six times (its layout, the focus given to a button, the footer below
that follows the new bindings), some 8 ms each, more under load.
:class:`KeptBackgroundConfirm` keeps the tinted lines and renders them again
only when the screen below changed (Textual then refreshes the modal's regions
where it did) or the size or the tint did, as Textual's lines (``Strip``), so
that even splitting the segments into lines is done once. It looks the same as a
:class:`~trainboard.tui.widgets.confirm.ConfirmScreen`.
"""

from __future__ import annotations

from typing import Any, Self

from rich.console import RenderableType
from textual.geometry import Region
from textual.renderables.background_screen import BackgroundScreen
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, RichVisual

from trainboard.tui.widgets.confirm import ConfirmScreen, ResultT


class _Kept(RichVisual):
    """The background's lines, rendered once per ``owner.below_version`` (and size, tint, style)."""

    def __init__(self, owner: KeptBackgroundConfirm[Any], background: BackgroundScreen) -> None:
        super().__init__(owner, background)
        self.owner = owner
        self.background = background

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        owner, background = self.owner, self.background
        key = (owner.below_version, id(background.screen), background.color, owner.app.size, width, height, style)
        if owner.kept is None or owner.kept[0] != key:
            owner.kept = (key, super().render_strips(width, height, style, options))
            owner.renders += 1
        return owner.kept[1]


class KeptBackgroundConfirm(ConfirmScreen[ResultT]):
    """A :class:`ConfirmScreen` whose dimmed background is rendered once per change below it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.below_version = 0  # moves when the screen below repaints a region
        self.kept: tuple[tuple[object, ...], list[Strip]] | None = None
        self.renders = 0  # how many times the background was rendered (the tests read it)

    def render(self) -> RenderableType:
        renderable = super().render()
        if isinstance(renderable, BackgroundScreen):
            return _Kept(self, renderable)  # type: ignore[return-value]  # a Visual: Textual takes it as is
        return renderable

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Self:
        if regions:  # how Textual says that the screen below changed there
            self.below_version += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

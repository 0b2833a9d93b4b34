"""The one door to Textual's internals: every private of Textual that trainboard touches.

Written against Textual 8.2 (checked with 8.2.8). Each name below reaches into
something Textual does not promise to keep: the app's driver and its writer
thread (``App._driver``, ``LinuxDriver._writer_thread``, ``WriterThread._file``,
``textual.drivers._writer_thread``), the hook for an unhandled exception
(``App._handle_exception``), the exception a test run ended with
(``App._exception``), the ``Log`` widget's cache of rendered lines
(``Log._render_line_cache``), a node's watcher lists (``__watchers``, kept by
``textual.reactive``) and the cache of widgets' style caches
(``StylesCache.get_inner_outer`` in ``textual._styles_cache``).
tests/test_compat_textual.py fails, naming the missing piece, when an upgrade
of Textual moves one of them.
"""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.widgets import Log

TEXTUAL_VERSION_CHECKED = "8.2"


class UnhandledErrorHook:
    """Mixin for an App: ``on_unhandled_error`` runs on an exception nothing caught (a bug),
    before Textual's own handling (which exits the app). Put it before ``App`` in the bases."""

    def on_unhandled_error(self, error: Exception) -> None:
        """Override: what to do before Textual exits."""

    def _handle_exception(self, error: Exception) -> None:  # Textual's private hook
        self.on_unhandled_error(error)
        super()._handle_exception(error)  # type: ignore[misc]


def unhandled_exception(app: App[Any]) -> BaseException | None:
    """The exception the app died of (kept by Textual for test runs), or None."""
    error: BaseException | None = app._exception
    return error


def revive_writer_thread(app: App[Any]) -> bool:
    """Restart the driver's output thread if a write to a dead terminal killed it.

    True when a fresh thread was started; False when there is none to restart
    (a headless driver, no driver yet) or the one there is alive.
    """
    driver = app._driver
    writer = getattr(driver, "_writer_thread", None)
    if writer is None or writer.is_alive():
        return False
    from textual.drivers._writer_thread import WriterThread

    fresh = WriterThread(writer._file)
    fresh.start()
    driver._writer_thread = fresh  # type: ignore[union-attr]
    return True


def clear_log_render_cache(log: Log) -> None:
    """Drop a ``Log``'s rendered lines, so the next frame renders them (with new styles) again."""
    log._render_line_cache.clear()


def forget_detached_watchers(node: Any) -> None:
    """Drop the watchers of ``node``'s reactives that belong to nodes no longer in the DOM
    (Textual keeps them in the node's ``__watchers`` until the watched value changes)."""
    watchers = getattr(node, "__watchers", None)
    if not isinstance(watchers, dict):
        return
    for entries in watchers.values():
        entries[:] = [(watcher, callback) for watcher, callback in entries if watcher.is_attached]


def forget_styles_caches() -> None:
    """Empty Textual's cache that keeps the last 1,024 widgets' style caches (and their rendered
    lines) alive after the widgets are gone (an ``lru_cache`` on a method, keyed by the instance)."""
    from textual._styles_cache import StylesCache

    kept = getattr(StylesCache, "get_inner_outer", None)
    if kept is not None and hasattr(kept, "cache_clear"):
        kept.cache_clear()

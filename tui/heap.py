"""Short pauses from Python's garbage collector in a dashboard that runs for hours.

A full collection scans every container object alive. MLflow and SQLAlchemy,
imported when the first run starts, leave some 230,000 of them (modules,
functions, classes) that live as long as the process: each full pass then
took 150 ms on an idle machine and 300-400 ms under a log flood, every second
or two, and a key press that waited behind one showed that late.
:class:`HeapSettler` collects once and moves what survives out of the
collector's sight (``gc.freeze``) whenever modules were imported since it
last did, so the later passes scan only what the dashboard allocates as it runs.
``release`` hands everything back to the collector (the app's end: a test that
runs many apps in one process frees each one's cycles).

Each call also empties a cache of Textual's that keeps the last 1,024 widgets'
style caches (and their rendered lines) alive after the widgets are gone
(``StylesCache.get_inner_outer``, an ``lru_cache`` on a method, keyed by the
instance): every question and every member's dashboard opened adds its widgets.
"""

from __future__ import annotations

import gc
import sys

from trainboard.tui.compat_textual import forget_styles_caches

SETTLE_SECONDS = 2.0  # how often an app asks whether modules were imported since it last settled


class HeapSettler:
    def __init__(self) -> None:
        self._modules = 0  # len(sys.modules) when it last settled
        self.settled = 0  # how many times it did

    def settle(self) -> bool:
        """When modules were imported since the last call (the first call too): collect, then
        freeze what survives; whether it did."""
        forget_styles_caches()
        modules = len(sys.modules)
        if modules == self._modules:
            return False
        self._modules = modules
        gc.collect()
        gc.freeze()
        self.settled += 1
        return True

    def release(self) -> None:
        """Everything frozen goes back to the collector."""
        if self.settled:
            gc.unfreeze()
            self.settled = 0
            self._modules = 0


"""Fault injection for tests/test_faults_crash.py: the real CLI and dashboard, with the
metrics panel raising on the first metric points (a stand-in for any bug in a widget)."""

from __future__ import annotations

import sys

from trainboard.backend import events as ev
from trainboard.tui import cli
from trainboard.tui.widgets.metrics import MetricsPanel

_apply = MetricsPanel.apply


def _broken_apply(self: MetricsPanel, event: ev.Event) -> None:
    if isinstance(event, ev.MetricPoints):
        raise RuntimeError("the metrics panel broke")
    _apply(self, event)


if __name__ == "__main__":
    MetricsPanel.apply = _broken_apply  # type: ignore[method-assign]
    sys.argv[0] = "trainboard"
    cli.entry()

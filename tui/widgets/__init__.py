"""The dashboard's widgets, one module per area of the screen.

Every panel follows the same two-step contract (see :class:`EventPanel`): the
app hands it session events with ``apply`` (state only, no UI work), then calls
``refresh_view`` once per timer tick, and the panel renders only if what it
shows has changed. Bursts of events therefore cost one render per tick.
"""

from trainboard.tui.widgets.comparison import ComparisonTable
from trainboard.tui.widgets.confirm import Answer, ConfirmScreen
from trainboard.tui.widgets.failure import FailurePanel
from trainboard.tui.widgets.header import RunHeader
from trainboard.tui.widgets.log import LogPane
from trainboard.tui.widgets.metrics import MetricsPanel
from trainboard.tui.widgets.panel import EventPanel
from trainboard.tui.widgets.plot import MetricsPlot
from trainboard.tui.widgets.runner import RunnerPanel
from trainboard.tui.widgets.stages import StageList
from trainboard.tui.widgets.status import StatusLine

__all__ = [
    "Answer",
    "ComparisonTable",
    "ConfirmScreen",
    "EventPanel",
    "FailurePanel",
    "LogPane",
    "MetricsPanel",
    "MetricsPlot",
    "RunHeader",
    "RunnerPanel",
    "StageList",
    "StatusLine",
]

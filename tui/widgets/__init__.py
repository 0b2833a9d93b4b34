"""The dashboard's widgets, one module per area of the screen.

Every panel follows the same two-step contract (see :class:`EventPanel`): the
app hands it session events with ``apply`` (state only, no UI work), then calls
``refresh_view`` once per timer tick, and the panel renders only if what it
shows has changed. Bursts of events therefore cost one render per tick.
"""

from tui.widgets.comparison import ComparisonTable
from tui.widgets.confirm import Answer, ConfirmScreen
from tui.widgets.failure import FailurePanel
from tui.widgets.header import RunHeader
from tui.widgets.log import LogPane
from tui.widgets.metrics import MetricsPanel
from tui.widgets.panel import EventPanel
from tui.widgets.plot import MetricsPlot
from tui.widgets.runner import RunnerPanel
from tui.widgets.stages import StageList
from tui.widgets.status import StatusLine

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

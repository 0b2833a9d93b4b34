"""One recorded run: its log (the last lines, from disk), its metric history and
its comparison, in three tabs under a one-line summary."""

from __future__ import annotations

from collections import defaultdict

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from trainboard.backend.session import METRICS_FILE
from trainboard.backend.store import RunRecord
from trainboard.tui import run_files
from trainboard.tui.render import plural
from trainboard.tui.widgets.comparison import COLUMNS as COMPARISON_COLUMNS
from trainboard.tui.widgets.comparison import column_label, row_cells
from trainboard.tui.widgets.marks import STATUS_MARKS
from trainboard.tui.widgets.plot import draw_history, history_title, plotted_keys

HISTORY_ROWS = 200  # steps shown in the metric table (the plot has them all)


def took_text(record: RunRecord) -> str:
    """"took 42.0s", or "running 13m05s" while the run goes on."""
    text = run_files.duration_text(record)
    return text if run_files.running_for(record) is not None else f"took {text}"


def no_log_text(record: RunRecord) -> str:
    if run_files.is_live(record):
        return "no log yet: the job has not started"
    return f"no log: {run_files.what_happened(record)} before the job started"


class RunDetailScreen(Screen[None]):
    """A run's log, metrics and comparison."""

    HELP_ORDER = 20  # its place in the help screen
    HELP_TITLE = "A run (from the runs screen)"
    DEFAULT_CSS = """
    RunDetailScreen #run-summary {
        height: auto;
        padding: 0 1;
        background: $panel;
    }
    RunDetailScreen TabbedContent { height: 1fr; }
    RunDetailScreen TabbedContent > ContentSwitcher { height: 1fr; }
    RunDetailScreen TabPane { padding: 0; height: 1fr; }
    RunDetailScreen #detail-log, RunDetailScreen #detail-history, RunDetailScreen #detail-plot,
    RunDetailScreen #detail-comparison {
        border: round $primary 60%;
        border-title-color: $primary;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    RunDetailScreen #detail-log { height: 1fr; }
    RunDetailScreen #tab-metrics > Vertical { height: 1fr; }
    RunDetailScreen #detail-history { height: auto; max-height: 45%; }
    RunDetailScreen #detail-plot { height: 1fr; min-height: 8; }
    RunDetailScreen #detail-comparison { height: auto; }
    RunDetailScreen .empty {
        padding: 1 2;
        color: $text-muted;
    }
    RunDetailScreen #verdict { padding: 0 1; text-style: bold; }
    RunDetailScreen #verdict.-passed { color: $success; }
    RunDetailScreen #verdict.-failed { color: $error; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("1", "show_tab('tab-log')", "Log"),
        Binding("2", "show_tab('tab-metrics')", "Metrics"),
        Binding("3", "show_tab('tab-comparison')", "Comparison"),
    ]

    def __init__(self, record: RunRecord) -> None:
        super().__init__()
        self.record = record
        self.config = run_files.config_of(record)
        self.saved = run_files.saved_comparison(record)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(self._summary(), id="run-summary")
        with TabbedContent(initial="tab-log"):
            with TabPane("Log", id="tab-log"):
                yield from self._log_pane()
            with TabPane("Metrics", id="tab-metrics"):
                yield from self._metrics_pane()
            with TabPane("Comparison", id="tab-comparison"):
                yield from self._comparison_pane()
        yield Footer()

    def _summary(self) -> Content:
        record = self.record
        status = run_files.status(record)
        mark, style = STATUS_MARKS.get(status, ("?", "$text-muted"))
        commit = record.commit[:7] + ("*" if record.dirty else "")
        runner = record.runner.kind or "?"
        sep = (" · ", "$text-muted")
        lines = [
            Content.assemble((f"run {record.run_id}", "bold $accent"), sep, (f"{mark} {status}", f"bold {style}")),
            Content.assemble(
                f"{record.branch or '?'} @ {commit or '?'}",
                sep,
                f"runner {runner}",
                sep,
                took_text(record),
                sep,
                f"cost {run_files.cost_text(record)}",
            ),
        ]
        if (link := record.info.sweep) is not None:  # a sweep's member: its sweep and values
            values = " ".join(f"{key}={value}" for key, value in link.values.items())
            lines.append(Content.assemble((f"sweep {link.id}", "$accent"), sep, f"member #{link.index}", sep, values))
        if run_files.watched_here(record):
            lines.append(Content.styled("● running in this dashboard", "bold $warning"))
        elif run_files.is_live(record):
            lines.append(Content.styled(f"● {run_files.live_text(record)}", "bold $warning"))
        return Content("\n").join(lines)

    def _log_pane(self) -> ComposeResult:
        path = run_files.log_path(self.record)
        if path is None:
            yield Static(no_log_text(self.record), classes="empty", markup=False)
            return
        log = Log(id="detail-log", max_lines=run_files.LOG_LINES)
        log.border_title = path.name
        log.border_subtitle = str(path)
        yield log

    def _metrics_pane(self) -> ComposeResult:
        with Vertical():
            history = DataTable[Text](id="detail-history", cursor_type="row", zebra_stripes=True)
            history.border_title = "Metric history"
            yield history
            yield PlotextPlot(id="detail-plot")
            yield Static("", id="history-empty", classes="empty")

    def _comparison_pane(self) -> ComposeResult:
        comp = self.saved.comparison
        if comp is None:
            yield Static(self.saved.problem, id="comparison-empty", classes="empty", markup=False)
            return
        table = DataTable[Text](id="detail-comparison", cursor_type="none", show_cursor=False)
        base = comp.baseline_label if comp.has_baseline else f"{comp.base_branch} (no baseline yet)"
        table.border_title = escape(f"Comparison with {base}")
        yield table
        verdict = Static(comp.verdict, id="verdict", markup=False)
        verdict.add_class("-passed" if comp.passed else "-failed")
        yield verdict

    # ------------------------------------------------------------------ filling

    def on_mount(self) -> None:
        self._fill_log()
        self._fill_metrics()
        self._fill_comparison()

    def _fill_log(self) -> None:
        logs = self.query(Log)
        if not logs:
            return
        lines = run_files.log_tail(self.record)
        log = logs.first()
        log.write_lines(lines)
        count = ("last " if len(lines) >= run_files.LOG_LINES else "") + plural(len(lines), "line")
        log.border_title = f"{log.border_title} · {count}"

    def _fill_metrics(self) -> None:
        points = run_files.metric_history(self.record)
        table = self.query_one("#detail-history", DataTable)
        plot = self.query_one("#detail-plot", PlotextPlot)
        empty = self.query_one("#history-empty", Static)
        if not points:
            table.display = False
            plot.display = False
            empty.update(f"no metric history: {METRICS_FILE} is missing or empty in {self.record.path}")
            return
        empty.display = False
        keys = list(dict.fromkeys(p.key for p in points))
        if self.config is not None:
            keys = [k for k in self.config.metrics if k in keys] + [k for k in keys if k not in self.config.metrics]
        names = {k: self.config.display_name(k) if self.config else k for k in keys}
        by_step: dict[int, dict[str, float]] = defaultdict(dict)
        series: dict[str, list[tuple[int, float]]] = {}
        for point in points:
            by_step[point.step][point.key] = point.value
            series.setdefault(point.key, []).append((point.step, point.value))
        digits = {k: (self.config.metrics[k].digits if self.config and k in self.config.metrics else 4) for k in keys}
        table.add_column(Text("step", justify="right"), key="step")
        for key in keys:
            table.add_column(Text(names[key], justify="right"), key=key)
        steps = sorted(by_step)
        for step in steps[-HISTORY_ROWS:]:
            values = by_step[step]
            table.add_row(
                Text(str(step), justify="right"),
                *(Text("—" if k not in values else f"{values[k]:.{digits[k]}f}", justify="right") for k in keys),
                key=str(step),
            )
        shown = f", the last {HISTORY_ROWS} shown" if len(steps) > HISTORY_ROWS else ""
        table.border_subtitle = plural(len(steps), "step") + shown
        plotted = plotted_keys(self.config, keys)
        comp = self.saved.comparison
        baseline = {r.key: r.before for r in comp.rows if r.before is not None} if comp else {}
        plot.border_title = escape(history_title([names[k] for k in plotted]))
        plot.border_subtitle = "flat lines: the baseline" if baseline else ""
        draw_history(plot, {k: series.get(k, []) for k in plotted}, names, baseline)

    def _fill_comparison(self) -> None:
        comp = self.saved.comparison
        if comp is None:
            return
        table = self.query_one("#detail-comparison", DataTable)
        for key, label in COMPARISON_COLUMNS:
            table.add_column(column_label(key, label), key=key)
        for row in comp.rows:
            cells = row_cells(row)
            table.add_row(*(cells[key] for key, _ in COMPARISON_COLUMNS), key=row.key)

    # ------------------------------------------------------------------ actions

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_back(self) -> None:
        self.app.pop_screen()


"""`trainboard run --no-tui` for a sweep: one line per member state change, prefixed
with the member's varied values, the spend against the cost cap, then a table of
the members, the best member's line (``best: params.x=4 · f1 0.8123 ...``), the
report's path and the exit code. Under GitHub Actions the table and the best
member's report also go to the job's summary page.

The members' own logs stay in their run folders (``.trainboard/runs/<id>/``):
interleaving N logs on one stdout would help nobody.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table

from trainboard.backend import ci
from trainboard.backend import events as ev
from trainboard.backend import sweep_events as sev
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_record import SweepData
from trainboard.tui.console import output_console
from trainboard.tui.render import format_seconds

COST_EVERY = 30.0  # seconds between spend lines (and at each tenth of the cap)


class SweepHeadless:
    def __init__(self, sweep: Sweep, github_actions: bool = False) -> None:
        self.sweep, self.github_actions = sweep, github_actions
        self.console = output_console()
        self._cost_said: tuple[float, float] = (0.0, -1.0)  # (when, what)
        self._started = time.time()

    def __call__(self, event: ev.Event) -> None:
        match event:
            case sev.SweepStarted():
                self._started_line(event)
            case sev.MemberChanged():
                self._member(event)
            case sev.SweepCost(spent=spent, cap=cap):
                self._cost(spent, cap)
            case ev.Notice(message=message):
                self._say(f"note: {message}", "dim")
            case sev.SweepFinished():
                self._finished(event)
        sys.stdout.flush()

    def _started_line(self, event: sev.SweepStarted) -> None:
        data = self.sweep.data
        cap = f", cost cap ${event.cap:.2f}" if event.cap is not None else ""
        self._say(f"sweep {event.sweep_id}: {event.members} members of {data.name} on {data.branch}, "
                  f"{event.max_parallel} at a time; objective {data.objective} ({data.goal}){cap}", "bold")
        self._say(f"  varied: {', '.join(event.params)}", "dim")

    def _member(self, event: sev.MemberChanged) -> None:
        state = self.sweep.members[event.index]
        info = state.info
        prefix = f"[{state.label or f'member {info.index}'}]"
        match event.status:
            case "running" if not event.stage:
                text, style = f"started: run {info.run_id}", "cyan"
            case "running":
                if event.stage != "train":
                    return
                text, style = "training", "cyan"
            case "succeeded" | "gate-failed":
                value = f"{self.sweep.objective} {info.objective:.4f}" if info.objective is not None else "no value"
                delta = f" ({info.delta:+.4f})" if info.delta is not None else ""
                text = f"{event.status}: {value}{delta}"
                style = "green" if event.status == "succeeded" else "yellow"
            case _:
                reason = f": {info.reason}" if info.reason else ""
                text, style = f"{event.status}{reason}", "red" if event.status != "skipped" else "dim"
        self._say(f"{prefix} {text}", style)

    def _cost(self, spent: float, cap: float | None) -> None:
        said_at, said = self._cost_said
        now = time.time()
        tenth = (cap or 0.0) / 10
        jumped = bool(tenth) and spent - said >= tenth
        if spent == said or (not spent and cap is None) or (now - said_at < COST_EVERY and not jumped):
            return
        self._cost_said = (now, spent)
        self._say(f"cost: ${spent:.2f}" + (f" of ${cap:.2f} cap" if cap is not None else ""), "dim")

    def _finished(self, event: sev.SweepFinished) -> None:
        print_ending(self.console, self.sweep.data, time.time() - self._started)
        if self.github_actions:
            self._summarise()

    def _summarise(self) -> None:
        """The member table and the best member's report on the job's summary page."""
        from trainboard.backend.sweep_report import append_sweep_step_summary

        append_sweep_step_summary(self.sweep.data, self.sweep.root, self.sweep.redact)

    def _say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False)


def print_ending(console: Console, data: SweepData, took: float) -> None:
    """The member table and the last lines: why it stopped, the best member, the report, the exit."""
    console.print(member_table(data))
    code = ExitCode(data.exit_code if data.exit_code is not None else ExitCode.INFRA_ERROR)
    lines = [f"stopped: {data.reason}"] if data.reason else []
    lines += [data.verdict or "no verdict", f"report: {data.report}" if data.report else "report: none written"]
    cost = f", cost ${data.cost:.2f}" + (f" of ${data.max_cost_usd:.2f} cap" if data.max_cost_usd else "") \
        if data.cost or data.max_cost_usd else ""
    lines.append(f"finished: sweep {data.status} in {format_seconds(took)}{cost} (exit {int(code)}, {code.name})")
    for line in lines:
        console.print(line, style="bold", markup=False)


def member_table(data: SweepData) -> Table:
    """One row a member: its varied values, status, objective, Δ against the base, cost, run."""
    table = Table(title=f"sweep {data.sweep_id}", title_justify="left")
    for setting in data.params:
        table.add_column(setting.removeprefix("params."))
    for name in ("status", data.objective, "Δ", "cost", "run"):
        table.add_column(name, justify="right" if name in (data.objective, "Δ", "cost") else "left")
    for m in data.members:
        best = data.best == m.index
        row = [m.values.get(s, "") for s in data.params] + [
            m.status + (" ★" if best else ""),
            f"{m.objective:.4f}" if m.objective is not None else "—",
            f"{m.delta:+.4f}" if m.delta is not None else "—",
            f"${m.cost:.2f}" if m.cost else "—",
            m.run_id or "—",
        ]
        table.add_row(*row, style="bold green" if best else None)
    return table


async def run_sweep_headless(sweep: Sweep) -> ExitCode:
    from trainboard.tui.headless import until_signalled

    sweep.subscribe(SweepHeadless(sweep, github_actions=ci.in_github_actions()))
    return await until_signalled(sweep.run(), sweep.cancel, "every member is tearing down")

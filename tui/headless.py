"""`trainboard run --no-tui`: the run as Rich output, for CI and pipes.

On a terminal it is coloured; otherwise plain lines. The job's log goes to
stdout as it arrives; errors go to stderr. The exit code is an ExitCode.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from rich.console import Console

from backend import events as ev
from backend.events import StageState
from backend.exitcodes import ExitCode
from backend.session import Session
from tui.render import comparison_table, format_seconds, verdict_text

_MARK = {StageState.RUNNING: "…", StageState.DONE: "✓", StageState.FAILED: "✗", StageState.SKIPPED: "-"}


class HeadlessView:
    """Prints every event of a session; holds no run logic."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, follow: set[str] | None = None
    ) -> None:
        self.follow = follow  # metric keys to print; None prints every key the job logs
        self.out = out or sys.stdout
        tty = self.out.isatty()
        self.console = Console(file=self.out, highlight=False, soft_wrap=True, force_terminal=tty,
                               no_color=not tty, width=None if tty else 120)
        self.err = Console(file=err or sys.stderr, highlight=False, soft_wrap=True)

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.LogLines(lines=lines):
                self.out.write("\n".join(lines) + "\n")
            case ev.StageChanged(stage=stage, state=state, detail=detail, elapsed=elapsed):
                took = f" ({format_seconds(elapsed)})" if state in (StageState.DONE, StageState.FAILED) else ""
                extra = f": {detail}" if detail else ""
                style = "red" if state is StageState.FAILED else "cyan"
                self._say(f"{_MARK.get(state, ' ')} {stage.value} {state.value}{took}{extra}", style)
            case ev.RunStarted():
                self._say(f"run {event.run_id} · branch {event.branch} @ {event.commit[:7] or '(none)'} "
                          f"· runner {event.runner_kind} · files in {event.run_dir}", "bold")
            case ev.RunnerChanged(state=state, kind=kind, address=address, details=details):
                step = dict(details).get("step", "")
                self._say(f"  runner {kind}: {state}" + (f": {step}" if step else "")
                          + (f" ({address})" if address else ""), "dim")
            case ev.TrackingReady():
                self._say(f"  mlflow run {event.mlflow_run_id} in {event.experiment!r}", "dim")
            case ev.BaselineFound(branch=branch, mlflow_run_id=run_id):
                text = f"baseline: {branch} run {run_id}" if run_id else f"baseline: none yet on {branch}"
                self._say(f"  {text}", "dim")
            case ev.MetricPoints(points=points):
                points = tuple(p for p in points if self.follow is None or p.key in self.follow)
                by_step: dict[int, list[str]] = {}
                for p in points:  # a poll can bring several steps: one line each
                    by_step.setdefault(p.step, []).append(f"{p.key}={p.value:.4f}")
                for number in sorted(by_step):
                    self._say(f"  metrics @ step {number}: {', '.join(sorted(by_step[number]))}", "magenta")
            case ev.JobFinished(exit_code=code, duration=duration):
                self._say(f"  job exited {code} after {format_seconds(duration)}", "green" if code == 0 else "red")
            case ev.ComparisonReady(comparison=comp):
                if comp.final:
                    self.console.print(comparison_table(comp))
                    self.console.print(verdict_text(comp))
            case ev.ReportWritten(path=path):
                self._say(f"report: {path}", "bold")
            case ev.CostUpdated(cost=cost, uptime=uptime, hourly_price=price, final=True):
                self._say(f"  runner cost ${cost:.2f} ({format_seconds(uptime)} at ${price:.3f}/h)", "dim")
            case ev.Notice(message=message):
                self._say(f"  {message}", "yellow")
            case ev.ErrorRaised(stage=stage, message=message):
                where = f"{stage.value}: " if stage else ""
                self.err.print(f"error: {where}{message}", style="bold red", markup=False)
            case ev.RunFinished(outcome=outcome, status=status, duration=duration):
                name = ExitCode(outcome).name
                self._say(f"finished: {status} in {format_seconds(duration)} (exit {outcome}, {name})", "bold")
        self.out.flush()

    def _say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False)


async def run_headless(session: Session) -> ExitCode:
    session.subscribe(HeadlessView(follow=set(session.config.metrics)))
    loop = asyncio.get_running_loop()

    def stop(name: str) -> None:
        if not session.cancel(f"interrupted by {name}"):
            print(f"{name}: already stopping, teardown in progress", file=sys.stderr)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        return await session.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)

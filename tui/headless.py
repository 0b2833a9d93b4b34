"""`trainboard run --no-tui`: the run as Rich output, for CI and pipes.

On a terminal it is coloured; otherwise plain lines. The job's log goes to
stdout as it arrives; errors go to stderr. The exit code is an ExitCode.
Under GitHub Actions each stage is a collapsible group, errors are
annotations, and the report goes to the job's summary page.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TextIO

from rich.console import Console

from trainboard.backend import ci
from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison
from trainboard.backend.events import StageState
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.session import Session
from trainboard.tui.render import clock, comparison_table, format_seconds, verdict_text

_MARK = {StageState.RUNNING: "…", StageState.DONE: "✓", StageState.FAILED: "✗", StageState.SKIPPED: "-"}


class HeadlessView:
    """Prints every event of a session; holds no run logic."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, follow: set[str] | None = None,
        github_actions: bool = False,
    ) -> None:
        self.follow = follow  # metric keys to print; None prints every key the job logs
        self.github_actions = github_actions
        self._group_open = False
        self._report = ""
        self.out = out or sys.stdout
        tty = self.out.isatty()
        self.console = Console(file=self.out, highlight=False, soft_wrap=True, force_terminal=tty,
                               no_color=not tty, width=None if tty else 120)
        self.err = Console(file=err or sys.stderr, highlight=False, soft_wrap=True)

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.LogLines(lines=lines):
                self.out.write("\n".join(lines) + "\n")
            case ev.StageChanged():
                self._stage(event)
            case ev.RunStarted():
                self._say(f"run {event.run_id} · branch {event.branch} @ {event.commit[:7] or '(none)'} "
                          f"· runner {event.runner_kind} · files in {event.run_dir}", "bold")
            case ev.RunnerChanged(state=state, kind=kind, address=address, details=details):
                step = dict(details).get("step", "")
                self._say(f"  runner {kind}: {state}" + (f": {step}" if step else "")
                          + (f" ({address})" if address else ""), "dim")
            case ev.TrackingReady():
                self._say(f"  mlflow run {event.mlflow_run_id} in {event.experiment!r}", "dim")
            case ev.BaselineFound():
                self._baseline(event)
            case ev.MetricPoints(points=points):
                self._metrics(points)
            case ev.MetricsStale(since=since, reason=reason):  # once per outage, not once per poll
                self._say(f"  metrics stale since {clock(since)} ({reason}): polling on", "yellow")
            case ev.MetricsFresh(stale_since=since, at=at):
                self._say(f"  metrics current again: MLflow answers (stale for {format_seconds(at - since)})", "green")
            case ev.JobFinished(exit_code=code, duration=duration):
                self._say(f"  job exited {code} after {format_seconds(duration)}", "green" if code == 0 else "red")
            case ev.ComparisonReady(comparison=comp):
                self._comparison(comp)
            case ev.ReportWritten(path=path):
                self._say(f"report: {path}", "bold")
                self._report = path
            case ev.CostUpdated(cost=cost, uptime=uptime, hourly_price=price, final=True):
                self._say(f"  runner cost ${cost:.2f} ({format_seconds(uptime)} at ${price:.3f}/h)", "dim")
            case ev.PullRequestOpened(number=number, url=url, comment_url=comment, created=created):
                self._say(f"pull request #{number} {'opened' if created else 'updated'}: {url}", "bold")
                if comment:
                    self._say(f"  report comment: {comment}", "dim")
            case ev.Notice(message=message):
                self._say(f"  {message}", "yellow")
            case ev.ErrorRaised():
                self._error(event)
            case ev.RunFinished():
                self._finished(event)
        self.out.flush()

    def _stage(self, event: ev.StageChanged) -> None:
        stage, state, detail = event.stage, event.state, event.detail
        took = f" ({format_seconds(event.elapsed)})" if state in (StageState.DONE, StageState.FAILED) else ""
        extra = f": {detail}" if detail else ""
        style = "red" if state is StageState.FAILED else "cyan"
        if self.github_actions and state is StageState.RUNNING:
            self._end_group()
            self._raw(ci.group(f"trainboard: {stage.value}"))
            self._group_open = True
        self._say(f"{_MARK.get(state, ' ')} {stage.value} {state.value}{took}{extra}", style)
        if self.github_actions and state is not StageState.RUNNING:
            self._end_group()

    def _baseline(self, event: ev.BaselineFound) -> None:
        branch, run_id, label = event.branch, event.mlflow_run_id, event.label
        if label:
            text = f"baseline: {label}" + (f", mlflow run {run_id}" if run_id else "")
        else:
            text = f"baseline: {branch} run {run_id}" if run_id else f"baseline: none yet on {branch}"
        self._say(f"  {text}", "dim")

    def _metrics(self, points: tuple[ev.MetricPoint, ...]) -> None:
        points = tuple(p for p in points if self.follow is None or p.key in self.follow)
        by_step: dict[int, list[str]] = {}
        for p in points:  # a poll can bring several steps: one line each
            by_step.setdefault(p.step, []).append(f"{p.key}={p.value:.4f}")
        for number in sorted(by_step):
            self._say(f"  metrics @ step {number}: {', '.join(sorted(by_step[number]))}", "magenta")

    def _comparison(self, comp: Comparison) -> None:
        if comp.final:
            self.console.print(comparison_table(comp))
            self.console.print(verdict_text(comp))
            if self.github_actions and not comp.passed:
                self._raw(ci.error(comp.verdict, "trainboard: gate"))

    def _error(self, event: ev.ErrorRaised) -> None:
        stage, message = event.stage, event.message
        where = f"{stage.value}: " if stage else ""
        self.err.print(f"error: {where}{message}", style="bold red", markup=False)
        if self.github_actions:
            self._raw(ci.error(message, f"trainboard: {stage.value}" if stage else "trainboard"))

    def _finished(self, event: ev.RunFinished) -> None:
        outcome, status = event.outcome, event.status
        name = ExitCode(outcome).name
        self._end_group()
        self._say(f"finished: {status} in {format_seconds(event.duration)} (exit {outcome}, {name})", "bold")
        if self.github_actions:
            self._summarise(status, outcome)

    def _say(self, text: str, style: str = "") -> None:
        self.console.print(text, style=style or None, markup=False)

    def _raw(self, line: str) -> None:
        """A workflow command: a line of its own on stdout, never wrapped or styled."""
        self.out.write(line + "\n")

    def _end_group(self) -> None:
        if self._group_open:
            self._raw(ci.endgroup())
            self._group_open = False

    def _summarise(self, status: str, outcome: int) -> None:
        """The report (already masked) on the job's summary page."""
        from pathlib import Path

        try:
            report = Path(self._report).read_text() if self._report else ""
        except OSError:
            report = ""
        import re

        # Plots are files next to the report, not reachable from the summary page.
        report = re.sub(r"!\[[^\]]*\]\((?!https?:)[^)]*\)", "", report)
        head = f"**trainboard: {status}** (exit {outcome}, {ExitCode(outcome).name})"
        ci.append_step_summary(f"{head}\n\n{report}" if report else head)


async def run_headless(session: Session) -> ExitCode:
    session.subscribe(HeadlessView(follow=set(session.config.metrics), github_actions=ci.in_github_actions()))
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

"""`trainboard run --no-tui`: the run as Rich output, for CI and pipes.

On a terminal it is coloured; otherwise plain lines. The job's log goes to
stdout as it arrives; errors go to stderr. The exit code is an ExitCode.
Under GitHub Actions each stage is a collapsible group, errors are
annotations, and the report goes to the job's summary page.

The job's progress (its ``trainboard:progress`` lines, as JobProgress events) is
printed as ``progress: 40/128 steps (31%) · 2.4 steps/s · ETA 36s`` lines, throttled
(:class:`ProgressPrinter`, docs/progress.md). The last lines say the verdict, the
report's path and the exit code with its name.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from trainboard.backend import budget, ci
from trainboard.backend import events as ev
from trainboard.backend.compare import Comparison
from trainboard.backend.events import StageState
from trainboard.backend.exitcodes import ExitCode, RunStatus
from trainboard.backend.progress import headless_text
from trainboard.backend.session import Session
from trainboard.backend.statuswords import what_happened
from trainboard.tui.console import output_console
from trainboard.tui.render import clock, comparison_table, format_seconds, verdict_text

_MARK = {StageState.RUNNING: "…", StageState.DONE: "✓", StageState.FAILED: "✗", StageState.SKIPPED: "-"}

# Why a run that ended this way has no comparison.


class ProgressPrinter:
    """Which of the job's progress events headless prints: the first; then one when
    ``interval`` seconds have passed since the last printed (15 s, growing to 1/20 of the
    time the job has reported progress, at most 5 min: about 20 lines for a job of any
    length), or when a quarter (25/50/75/100 %) is crossed and MIN_GAP seconds have passed;
    never two within MIN_GAP. At the job's end, the latest one if it was not printed."""

    MIN_GAP = 10.0
    INTERVAL = 15.0
    MAX_INTERVAL = 300.0

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.printed: ev.JobProgress | None = None
        self.latest: ev.JobProgress | None = None

    def due(self, progress: ev.JobProgress) -> bool:
        """Whether to print ``progress`` (timed by its ``at``); if so, it counts as printed."""
        self.latest = progress
        if self.first_at is None:
            self.first_at = progress.at
        last = self.printed
        if last is not None:
            gap = progress.at - last.at
            interval = min(self.MAX_INTERVAL, max(self.INTERVAL, (progress.at - self.first_at) / 20))
            crossed = _quarter(progress) > _quarter(last)
            if gap < self.MIN_GAP or (gap < interval and not crossed):
                return False
        self.printed = progress
        return True

    def pending(self) -> ev.JobProgress | None:
        """The latest progress when it was not printed (at the job's end); then none."""
        latest, self.latest = self.latest, None
        if latest is None or latest is self.printed:
            return None
        self.printed = latest
        return latest


def _quarter(progress: ev.JobProgress) -> int:
    """0 to 4: the quarters of the total done."""
    if not progress.total:
        return 0
    return min(4, 4 * progress.step // progress.total)


class HeadlessView:
    """Prints every event of a session; holds no run logic."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, follow: set[str] | None = None,
        github_actions: bool = False, stopped_by: Callable[[], str] | None = None,
    ) -> None:
        self.follow = follow  # metric keys to print; None prints every key the job logs
        self.github_actions = github_actions
        self.stopped_by = stopped_by  # why the run was stopped from inside (the cost cap); "" when it was not
        self._cost_quarter = 0  # the quarters of the cost cap said so far
        self._group_open = False
        self._report = ""
        self._progress = ProgressPrinter()
        self._final: Comparison | None = None  # the run's comparison, for the last lines
        self._job_code: int | None = None
        self._run_id = ""
        self._runner_line = ""
        self.out = out or sys.stdout
        self.console = output_console(self.out)  # the width rule `compare` follows too
        self.err = Console(file=err or sys.stderr, highlight=False, soft_wrap=True)

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.LogLines(lines=lines):
                self.out.write("\n".join(lines) + "\n")
            case ev.StageChanged():
                self._stage(event)
            case ev.JobProgress():
                if self._progress.due(event):
                    self._say(f"  {headless_text(event)}", "blue")
            case ev.RunStarted():
                self._run_id = event.run_id
                self._say(f"run {event.run_id} · branch {event.branch} @ {event.commit[:7] or '(none)'} "
                          f"· runner {event.runner_kind} · files in {event.run_dir}", "bold")
            case ev.RunnerChanged(state=state, kind=kind, address=address, details=details):
                told = dict(details)
                step = told.get("step", "")
                # a runner that names its job (the Ray runner: the job's id on the cluster, and its status)
                job = f"{kind} job {told['job']}: {told.get('job status', '')}" if "job" in told else ""
                line = (f"  runner {kind}: {state}" + (f": {step}" if step else "") + (f" ({job})" if job else "")
                        + (f" ({address})" if address else ""))
                if line != self._runner_line:  # a runner's report that changes nothing shown is not repeated
                    self._runner_line = line
                    self._say(line, "dim")
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
                if (pending := self._progress.pending()) is not None:
                    self._say(f"  {headless_text(pending)}", "blue")
                self._job_code = code
                self._say(f"  job exited {code} after {format_seconds(duration)}", "green" if code == 0 else "red")
            case ev.ComparisonReady(comparison=comp):
                self._comparison(comp)
            case ev.ReportWritten(path=path):
                self._report = path  # said among the last lines
            case ev.CostUpdated():
                self._cost(event)
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

    def _cost(self, event: ev.CostUpdated) -> None:
        """The final cost; with a cap, the spend against it too as each quarter of it is crossed."""
        cost, cap = event.cost, event.cap
        spent = f"${cost:.2f}" if cap is None else budget.cap_text(cost, cap)
        if event.final:
            self._say(f"  runner cost {spent} ({format_seconds(event.uptime)} at ${event.hourly_price:.3f}/h)", "dim")
        elif cap is not None and (quarter := min(4, int(4 * cost / cap))) > self._cost_quarter:
            self._cost_quarter = quarter
            self._say(f"  runner cost {spent} so far ({format_seconds(event.uptime)} at "
                      f"${event.hourly_price:.3f}/h)", "yellow" if quarter >= 3 else "dim")

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
            self._final = comp
            self.console.print(comparison_table(comp))  # the verdict comes among the last lines
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
        self._verdict(status)
        self._say(f"report: {self._report}" if self._report else "report: none written", "bold")
        self._say(f"finished: {status} in {format_seconds(event.duration)} (exit {outcome}, {name})", "bold")
        if self.github_actions:
            self._summarise(status, outcome)

    def _verdict(self, status: str) -> None:
        """The verdict again among the last lines; or why there is none."""
        comp = self._final
        if comp is not None:
            self.console.print(Text("verdict: ").append_text(verdict_text(comp)))
            return
        if status == RunStatus.DETACHED:
            why = f"none yet: the job runs on (`trainboard attach {self._run_id}` comes back to it)"
        else:
            why = f"no comparison, {what_happened(status, self._job_code)}"
            if reason := (self.stopped_by() if self.stopped_by else ""):
                why += f" ({reason})"
        self._say(f"verdict: {why}", "bold")

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
    session.subscribe(HeadlessView(follow=set(session.config.metrics), github_actions=ci.in_github_actions(),
                                   stopped_by=lambda: session.record.info.stopped_by if session.record else ""))
    return await until_signalled(session.run(), session.cancel, "teardown in progress")


async def until_signalled(run: Coroutine[Any, Any, ExitCode], cancel: Callable[[str], bool],
                          stopping: str) -> ExitCode:
    """Await ``run``; SIGINT, SIGTERM and SIGHUP meanwhile ``cancel("interrupted by SIGTERM")``
    (a second one is said on stderr: ``stopping``)."""
    loop = asyncio.get_running_loop()

    def stop(name: str) -> None:
        if not cancel(f"interrupted by {name}"):
            print(f"{name}: already stopping, {stopping}", file=sys.stderr)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        return await run
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)

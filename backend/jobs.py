"""Jobs on the runner: their spec, starting one (recorded for teardown and attach), and
following its log into LogLines events until it exits (the training job's progress lines
also into JobProgress events, see ``trainboard.backend.progress``, and its metric lines into
MetricPoints logged to MLflow, see ``trainboard.backend.metriclines``)."""

from __future__ import annotations

import asyncio
import time
from typing import IO, TYPE_CHECKING

from trainboard.backend import events as ev
from trainboard.backend.exitcodes import JobFailed
from trainboard.backend.logtail import CHUNK_SIZE, LineSplitter
from trainboard.backend.progress import PREFIX, ProgressLine, ProgressTracker, parse_line
from trainboard.backend.runners import JobHandle, JobSpec, RunnerError
from trainboard.backend.stages.base import RunContext
from trainboard.backend.tracking import job_http_env

if TYPE_CHECKING:
    from trainboard.backend.metriclines import MetricLines

TAIL_IDLE = 0.05  # seconds between reads of a log that has nothing new


def job_spec(ctx: RunContext, name: str, commands: tuple[str, ...], extra: dict[str, str] | None = None) -> JobSpec:
    env = job_http_env()  # the job's MLflow client keeps its long retries (trainboard's own are short)
    env.update(ctx.config.job.env)
    env.update(extra or {})
    return JobSpec(name=name, commands=commands, workdir=ctx.config.job.workdir, env=env,
                   outputs=tuple(ctx.config.job.outputs))


async def start_job(ctx: RunContext, spec: JobSpec) -> JobHandle:
    """Start a detached job and record it: teardown stops it, attach finds it."""
    handle = await ctx.runner.start(spec)
    ctx.state.job.handle = handle
    ctx.update_record(**{spec.name: {"pid": handle.pid, "log": handle.log_path,
                                     "exit_path": handle.exit_path, "started_at": handle.started_at}})
    return handle


async def run_job(ctx: RunContext, spec: JobSpec) -> int:
    """Start a job and follow it to its end; its exit code."""
    return await follow(ctx, await start_job(ctx, spec), spec.name)


async def follow(ctx: RunContext, handle: JobHandle, source: str, progress: ProgressTracker | None = None,
                 metrics: MetricLines | None = None) -> int:
    """Stream a job's log into LogLines events until it exits; its exit code.

    The lines, masked, also go to ``<run_dir>/<source>.log``: the log kept here
    (rewritten from the start, as the runner's log is read from its start).
    With a ``progress`` tracker (the training job's), its progress lines become
    JobProgress events, each after its LogLines; with ``metrics`` (the training job's),
    its metric lines become MetricPoints (and go to MLflow).
    """
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.run_dir / f"{source}.log", "w", encoding="utf-8", errors="replace") as kept:
        return await _follow_into(ctx, handle, _Out(source, kept, progress, metrics))


class _Out:
    """Where a followed job's lines go: the kept log, LogLines events, progress and metric events."""

    def __init__(self, source: str, kept: IO[str], progress: ProgressTracker | None,
                 metrics: MetricLines | None = None) -> None:
        self.source, self.kept, self.progress, self.metrics = source, kept, progress, metrics

    def send(self, ctx: RunContext, lines: list[str], offset: int) -> None:
        """Masked lines: into the kept log and out as one LogLines event (and a JobProgress
        when one of them reports progress). A flood's batch is joined once and split never:
        the masking scans the joined text, and the progress line is looked for from the end."""
        text = "\n".join(lines)
        masked = lines
        if ctx.redact(text) is not text:  # rare: mask line by line (a secret may span lines)
            masked = ctx.redact.lines(lines)
            text = "\n".join(masked)
        self.kept.write(text + "\n")
        ctx.emit(ev.LogLines(self.source, tuple(masked), offset))
        if self.progress is not None and PREFIX in text and (line := last_progress_line(masked)) is not None:
            ctx.emit(self.progress.add(line, time.time()))
        if self.metrics is not None:
            self.metrics.feed(text)


def last_progress_line(lines: list[str]) -> ProgressLine | None:
    """The last well-formed progress line among ``lines`` (as ``progress.last_progress``),
    read from the end: a batch of a flood has its progress line near its end."""
    for line in reversed(lines):
        if line.startswith(PREFIX) and (found := parse_line(line)) is not None:
            return found
    return None


async def _follow_into(ctx: RunContext, handle: JobHandle, out: _Out) -> int:
    runner, kept = ctx.runner, out.kept
    splitter = LineSplitter()
    while True:
        chunk = await runner.tail(handle, splitter.read_pos, CHUNK_SIZE)
        if chunk:
            lines = splitter.feed(chunk)
            if lines:
                out.send(ctx, lines, splitter.offset)
            if len(chunk) == CHUNK_SIZE:
                await asyncio.sleep(0)  # let the views breathe, then read on
                continue
        status = await runner.status(handle)
        if status.interruption and not ctx.state.runner.interruption:
            ctx.state.runner.interruption = status.interruption
            ctx.error(ctx.current_stage(), f"the runner is being interrupted: {status.interruption}")
        if not status.running:
            return await _drain(ctx, handle, out, splitter, status.exit_code)
        if not chunk:
            kept.flush()  # the full-log view reads it while the job runs
            await runner.idle(handle, TAIL_IDLE)  # the local runner wakes at the job's end


async def _drain(ctx: RunContext, handle: JobHandle, out: _Out, splitter: LineSplitter, exit_code: int | None) -> int:
    """The exit code is written after the log is closed: drain what is left."""
    source = out.source
    while chunk := await ctx.runner.tail(handle, splitter.read_pos, CHUNK_SIZE):
        lines = splitter.feed(chunk)
        if lines:
            out.send(ctx, lines, splitter.offset)
    rest = splitter.flush()
    if rest:
        out.send(ctx, rest, splitter.offset)
    if ctx.state.runner.interruption:
        if source == "job":
            ctx.state.job.exit_code = exit_code
            if ctx.state.record is not None:
                ctx.state.record.update(job_exit_code=exit_code)
        raise RunnerError(f"the {source} was stopped by an interruption of the runner "
                          f"(exit code {exit_code}): {ctx.state.runner.interruption}")
    if exit_code is None:
        raise JobFailed(f"the {source} vanished without an exit code", None)
    return exit_code

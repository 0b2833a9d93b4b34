"""Log tailing: LineSplitter at every chunk boundary, and the local runner's detached jobs."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import time
from pathlib import Path

import pytest

from trainboard.backend.logtail import MAX_PARTIAL, LineSplitter
from trainboard.backend.runners import JobHandle, JobSpec
from trainboard.backend.runners.local import LocalRunner, read_exit_code

# Complete lines, an empty one, CRLF, a progress bar's \r redraws, multibyte UTF-8
# (2-, 3- and 4-byte characters), and an unterminated last line.
SAMPLE = (
    "alpha\n\nbeta\r\nprogress 10%\rprogress 55%\rprogress 100%\nnaïve café\n"
    "日本語 ログ\n🚀 launch\nlast without newline"
).encode()
SAMPLE_LINES = [
    "alpha", "", "beta", "progress 100%", "naïve café", "日本語 ログ", "🚀 launch",
    "last without newline",
]


def split_all(data: bytes, cuts: list[int]) -> tuple[list[str], list[tuple[int, int]]]:
    """Feed ``data`` cut at ``cuts``; the lines, and (offset, expected offset) after each feed."""
    splitter = LineSplitter()
    lines: list[str] = []
    offsets = []
    bounds = [0, *cuts, len(data)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        lines += splitter.feed(data[start:end])
        expected = data.rfind(b"\n", 0, end) + 1  # bytes of the complete lines so far
        offsets.append((splitter.offset, expected))
        assert splitter.read_pos == end
    lines += splitter.flush()
    assert splitter.offset == len(data)
    return lines, offsets


def test_one_chunk() -> None:
    lines, _ = split_all(SAMPLE, [])
    assert lines == SAMPLE_LINES


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_every_single_cut_point(cut: int) -> None:
    lines, offsets = split_all(SAMPLE, [cut])
    assert lines == SAMPLE_LINES
    assert all(got == want for got, want in offsets), offsets


def test_every_pair_of_cut_points() -> None:
    n = len(SAMPLE)
    for first in range(1, n):
        for second in range(first, n):  # first == second: an empty chunk in between
            lines, offsets = split_all(SAMPLE, [first, second])
            assert lines == SAMPLE_LINES, (first, second)
            assert all(got == want for got, want in offsets), (first, second, offsets)


def test_byte_by_byte() -> None:
    lines, offsets = split_all(SAMPLE, list(range(1, len(SAMPLE))))
    assert lines == SAMPLE_LINES
    assert all(got == want for got, want in offsets)


@pytest.mark.parametrize("stop", range(0, len(SAMPLE) + 1))
def test_resume_at_offset_yields_exactly_the_rest(stop: int) -> None:
    """Read up to ``stop``, then a new splitter resumes at the offset: no loss, no repeat."""
    first = LineSplitter()
    seen = first.feed(SAMPLE[:stop])  # no flush: the writer may still be writing
    resumed = LineSplitter(first.offset)
    rest = resumed.feed(SAMPLE[resumed.offset :]) + resumed.flush()
    assert seen + rest == SAMPLE_LINES
    assert resumed.offset == len(SAMPLE)


def test_carriage_returns() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"a\r\nepoch 1: 10%\repoch 1: 90%\r\n\r\nx\ry\rz\n") == [
        "a", "epoch 1: 90%", "", "z",
    ]
    # A \r at a chunk's end and its \n in the next chunk still make one CRLF line.
    assert splitter.feed(b"crlf\r") == []
    assert splitter.feed(b"\nnext\n") == ["crlf", "next"]


def test_runaway_line_is_cut_at_max_partial() -> None:
    splitter = LineSplitter()
    piece = b"x" * (64 * 1024)
    fed = 0
    out: list[str] = []
    while fed <= MAX_PARTIAL:
        out += splitter.feed(piece)
        fed += len(piece)
        assert splitter.read_pos - splitter.offset <= MAX_PARTIAL  # the held partial is bounded
    assert len(out) == 1 and set(out[0]) == {"x"} and len(out[0]) > MAX_PARTIAL
    assert splitter.offset == fed
    # The lines after it are unaffected.
    assert splitter.feed(b"tail of it\nnext\n") == ["tail of it", "next"]
    assert splitter.offset == fed + len(b"tail of it\nnext\n")


def test_partial_at_max_partial_is_held() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"y" * MAX_PARTIAL) == []
    assert splitter.offset == 0 and splitter.read_pos == MAX_PARTIAL
    assert splitter.feed(b"\n") == ["y" * MAX_PARTIAL]


@pytest.mark.parametrize("char", ["é", "€", "🚀"])
def test_utf8_character_split_across_chunks(char: str) -> None:
    data = f"before {char} after\n".encode()
    start = data.index(char.encode())
    for cut in range(start + 1, start + len(char.encode())):  # inside the character
        splitter = LineSplitter()
        assert splitter.feed(data[:cut]) == []
        assert splitter.feed(data[cut:]) == [f"before {char} after"]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert LineSplitter().feed(b"ok \xff\xfe bytes\n") == ["ok \ufffd\ufffd bytes"]


# --------------------------------------------------------------------------- the local runner

LINES = 200_000

EMIT = f"""\
import sys, time
for start in range(0, {LINES}, 2000):
    sys.stdout.write("".join(f"line {{i}}\\n" for i in range(start, start + 2000)))
    sys.stdout.flush()
    time.sleep(0.002)
sys.exit(3)
"""


@pytest.fixture
async def runner(tmp_path: Path):
    runner = LocalRunner(tmp_path / "run")
    await runner.provision()
    yield runner
    await runner.teardown()


async def wait_exit(runner: LocalRunner, handle: JobHandle, timeout: float = 30) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await runner.status(handle)
        if not status.running:
            return status.exit_code
        await asyncio.sleep(0.02)
    raise AssertionError(f"the job did not end within {timeout} s")


async def test_tail_a_running_job_loses_and_repeats_no_line(runner: LocalRunner) -> None:
    await runner.sync(Path("."), [], {"emit.py": EMIT.encode()})
    handle = await runner.start(JobSpec(name="job", commands=("python emit.py",), workdir="."))
    splitter = LineSplitter()
    lines: list[str] = []
    reads_while_running = 0
    limit = 10_007  # odd size: reads end mid-line and mid-number
    while True:
        chunk = await runner.tail(handle, splitter.read_pos, limit)
        if chunk:
            lines += splitter.feed(chunk)
            if not os.path.exists(handle.exit_path):
                reads_while_running += 1
            continue
        status = await runner.status(handle)
        if not status.running:
            while chunk := await runner.tail(handle, splitter.read_pos, limit):
                lines += splitter.feed(chunk)
            lines += splitter.flush()
            break
        await asyncio.sleep(0.005)

    assert lines[0] == "$ python emit.py"  # the wrapper echoes the command
    body = lines[1:]
    assert len(body) == LINES
    assert body == [f"line {i}" for i in range(LINES)]  # each once, in order
    assert reads_while_running > 10, "the reader never followed the job while it ran"
    assert splitter.offset == os.path.getsize(handle.log_path)
    assert status.exit_code == 3
    assert read_exit_code(handle.exit_path) == 3


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process in group ``pgid``, read from /proc/*/stat."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid:
            members.append((int(stat.parent.name), fields[0]))
    return members


def alive(pgid: int) -> list[int]:
    return [pid for pid, state in group_members(pgid) if state != "Z"]


async def test_stop_kills_the_whole_process_group(runner: LocalRunner) -> None:
    handle = await runner.start(JobSpec(name="job", commands=("sleep 60 & sleep 60",), workdir="."))
    try:
        deadline = time.monotonic() + 10
        while len(alive(handle.pid)) < 3 and time.monotonic() < deadline:  # wrapper + 2 sleeps
            await asyncio.sleep(0.02)
        assert len(alive(handle.pid)) >= 3, group_members(handle.pid)
        assert (await runner.status(handle)).running

        started = time.monotonic()
        await runner.stop(handle, grace=5)
        took = time.monotonic() - started

        assert alive(handle.pid) == [], group_members(handle.pid)
        assert took < 4, f"SIGTERM did not end the group: stop took {took:.1f} s"
        status = await runner.status(handle)
        assert (status.running, status.exit_code) == (False, 143)  # the wrapper's TERM trap
        assert read_exit_code(handle.exit_path) == 143
    finally:
        if alive(handle.pid):
            os.killpg(handle.pid, signal.SIGKILL)


async def test_command_runs_verbatim(runner: LocalRunner, tmp_path: Path) -> None:
    marks = [tmp_path / f"mark{i}" for i in range(4)]
    literal = (
        f"it's \"quoted\" $(touch {marks[0]}) `touch {marks[1]}` $HOME ${{PATH}} \\n \\\\ *\n"
        f"second line; touch {marks[2]} && touch {marks[3]} # not a comment"
    )
    command = f"printf '%s\\n' {shlex.quote(literal)}"
    assert "'" in command and "$(" in command and "`" in command and "\n" in command
    handle = await runner.start(JobSpec(name="job", commands=(command,), workdir="."))

    assert await wait_exit(runner, handle) == 0
    log = Path(handle.log_path).read_text()
    assert log == f"$ {command}\n{literal}\n"  # the echoed command and its output, both literal
    assert [m for m in marks if m.exists()] == []


async def test_env_and_workdir_are_passed_as_given(runner: LocalRunner) -> None:
    (runner.workspace / "sub dir").mkdir()
    value = "a b $(touch x) 'q' \"dq\""
    spec = JobSpec(name="job", commands=('printf "%s|%s\\n" "$TB_VALUE" "$(basename "$PWD")"',),
                   workdir="sub dir", env={"TB_VALUE": value})
    handle = await runner.start(spec)
    assert await wait_exit(runner, handle) == 0
    assert Path(handle.log_path).read_text().splitlines()[-1] == f"{value}|sub dir"
    assert not (runner.workspace / "sub dir" / "x").exists()


async def test_idle_wakes_when_the_job_ends_and_waits_its_time_while_it_runs(runner: LocalRunner) -> None:
    """The follower's idle wait: while the job runs, the whole time asked; once the job's wrapper
    exits, at once (a pidfd of the process), with its exit code written; after that (reaped), a
    plain wait again, never a busy loop."""
    handle = await runner.start(JobSpec(name="job", commands=("sleep 0.5", "exit 4"), workdir="."))
    began = time.monotonic()
    await runner.idle(handle, 0.2)
    assert 0.15 <= time.monotonic() - began < 0.45  # still running: the time asked
    await runner.idle(handle, 30)
    took = time.monotonic() - began
    assert 0.4 < took < 10, took  # woke at the job's end, not after 30 s
    assert await wait_exit(runner, handle, timeout=2) == 4
    began = time.monotonic()
    await runner.idle(handle, 0.2)  # ended and reaped: no pidfd, the time asked
    assert time.monotonic() - began >= 0.15

"""The log follower finds a batch's progress line from the end (``jobs.last_progress_line``):
the same line as ``progress.last_progress``, which reads the batch from the start."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trainboard.backend.jobs import last_progress_line
from trainboard.backend.progress import ProgressLine, last_progress

LINES = st.lists(st.one_of(
    st.sampled_from(["trainboard:progress step=3 total=10", "trainboard:progress step=x",
                     "trainboard:progressive step=4", "trainboard:progress step=7 epoch=1/2",
                     "  trainboard:progress step=9", "trainboard:progress", ""]),
    st.text(max_size=30),
    st.builds(lambda n: f"trainboard:progress step={n}", st.integers(-5, 10**17)),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_the_last_progress_line_read_from_the_end_is_the_one_read_from_the_start(lines: list[str]) -> None:
    assert last_progress_line(lines) == last_progress(lines)


def test_a_malformed_last_protocol_line_leaves_the_one_before() -> None:
    lines = ["trainboard:progress step=5 total=9", "flood line", "trainboard:progress step=oops", "more"]
    assert last_progress_line(lines) == ProgressLine(5, 9)
    assert last_progress_line(["flood line"] * 3) is None

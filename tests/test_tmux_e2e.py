"""The real dashboard in a real terminal: ``trainboard run`` inside tmux.

The CLI runs the tiny job on the local runner with its metrics in MLflow; the
test reads the screen with ``tmux capture-pane`` and types with ``send-keys``,
as a user would. tmux runs on a private socket, so a tmux server of the user's
is never touched. The shell writes the CLI's exit status to a file when it ends.

tmux is required: CI installs it (.ci/run). Without it these tests fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tmux_support import Terminal, terminals


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    yield from terminals(tmp_path)


def stage_running(screen: str, stage: str) -> bool:
    return re.search(rf"●\s+{stage}\b", screen) is not None


def test_a_run_in_tmux_streams_the_log_and_metrics_then_exits_0_on_q(
    tiny_repo: Path, terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=0.5", "--set", "params.epochs=4"])

    screen = term.wait_for(
        "the train stage to run with the job's log showing",
        lambda s: stage_running(s, "train") and "epoch 1: f1=0.700" in s,
    )
    assert "$ python job.py" in screen
    assert "stage 4/8 train" in screen  # the header
    # The job logs f1, then loss: a poll between the two shows F1 alone for a moment.
    screen = term.wait_for("metric values in the metrics panel", lambda s: re.search(r"F1\s+0\.\d{4}", s) is not None
                           and re.search(r"Loss\s+\d\.\d{4}", s) is not None)

    screen = term.wait_for("the verdict", lambda s: "succeeded" in s and "PASS" in s)
    assert "epoch 4: f1=1.000" in screen
    assert re.search(r"F1\s+1\.0000", screen), screen
    assert not stage_running(screen, r"\w+"), screen  # every stage has ended

    term.press("q")
    assert term.exit_status() == 0


def test_cancel_in_tmux_tears_down_and_exits_130(
    tiny_repo: Path, terminal: Callable[[Path, list[str]], Terminal]
) -> None:
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=30"])
    term.wait_for("the job's first epoch", lambda s: "epoch 1: f1=0.700" in s)

    term.press("c")
    term.wait_for("the cancel question", lambda s: "Cancel the run?" in s)
    term.press("y")
    screen = term.wait_for("the run to be cancelled", lambda s: "cancelled" in s and "exit 130" in s)
    assert re.search(r"✓\s+teardown", screen), screen

    term.press("q")
    assert term.exit_status() == 130

"""Wide lines (issue 12 item 6): `compare` on a pipe is as wide as `run --no-tui`, and a
log line wider than the dashboard's log pane leaves no stray glyph in it.

`compare` printed with Rich's default console, 80 columns on a pipe, which folded the
comparison table; both commands now print with trainboard.tui.console's rule. The stray
``▊`` in the log pane was the end of its horizontal scrollbar's thumb, drawn whenever a
line was wider than the pane: the pane has no horizontal scrollbar now, and a cut line
ends in "…". Both are checked on real runs of the tiny job (conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import run_cli
from tests.test_tmux_e2e import terminal  # noqa: F401  (the fixture)
from tests.tmux_support import Terminal
from trainboard.tui.console import PIPE_WIDTH

# A metric name long enough that its comparison row is wider than 120 columns.
LONG_NAME = "Macro F1 over every intent of the held-out slice, weighted by support"
WIDE_LINE = "wide: " + "".join(f"{i:04d}-" for i in range(48))  # 246 characters, no space to wrap at
# What ended the horizontal scrollbar's thumb: the partial blocks (▊ is one).
THUMB_ENDS = "▉▊▋▌▍▎▏"


def table_row(output: str, name: str) -> str:
    rows = [line for line in output.splitlines() if name in line]
    assert len(rows) == 1, output
    return rows[0]


def test_compare_on_a_pipe_prints_a_long_metric_name_on_one_line_like_run_no_tui(repo: Path) -> None:
    run = run_cli(["run", "tb.yaml", "--no-tui", "--set", f"metrics.f1.display={LONG_NAME}"], repo, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    row = table_row(run.stdout, LONG_NAME)
    assert "0.8000" in row and "pass" in row and len(row) > 120, row

    compared = run_cli(["compare"], repo, env={"COLUMNS": "80"}, timeout=120)  # stdout is a pipe
    assert compared.returncode == 0, compared.stdout + compared.stderr
    row_again = table_row(compared.stdout, LONG_NAME)
    assert row_again == row  # the same table, drawn the same width
    assert max(len(line) for line in compared.stdout.splitlines()) <= PIPE_WIDTH
    assert "PASS" in compared.stdout.splitlines()[-1]


def test_a_line_wider_than_the_log_pane_ends_in_an_ellipsis_and_draws_no_stray_glyph(
    tiny_repo: Path, terminal: Callable[[Path, list[str]], Terminal]  # noqa: F811
) -> None:
    (tiny_repo / "wide.py").write_text(f"print({WIDE_LINE!r}, flush=True)\n")  # untracked: synced all the same
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "job.command=python wide.py && python job.py",
                                "--set", "params.sleep=1.5"])
    # Read while the job trains: the run's end brings a toast, whose left edge is a ▌ of its own.
    screen = term.wait_for("the wide line, then the job's second epoch", lambda s: "epoch 2: f1=0.800" in s)
    lines = screen.splitlines()
    top = next(i for i, line in enumerate(lines) if "╭─ Log" in line)
    left = lines[top].index("╭─ Log")
    bottom = next(i for i in range(top + 1, len(lines)) if lines[i][left:left + 1] == "╰")
    pane = [line[left:] for line in lines[top:bottom + 1]]
    assert not [line for line in pane if set(line) & set(THUMB_ENDS)], "\n".join(pane)
    shown = next(line for line in pane if "wide: 0000-" in line)
    assert shown.rstrip().endswith("0… │"), shown  # cut at the pane's edge (its padding aside), and said so
    assert "…" not in next(line for line in pane if "epoch 2: f1=0.800" in line)  # a line that fits is whole
    term.wait_for("the verdict", lambda s: "succeeded" in s and "PASS" in s)
    term.press("q")
    assert term.exit_status() == 0

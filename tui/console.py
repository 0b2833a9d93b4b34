"""The Rich console the commands print their results with (`run --no-tui`, `compare`).

One rule for every command's standard output: on a terminal, its width and
colours; on a pipe or a file, plain text as wide as the longest table needs, up
to PIPE_WIDTH, and lines of text never wrapped. Rich's own default on a pipe is
80 columns (or $COLUMNS), which folds a table with a long metric name; a CI log
or ``| grep`` reads a line best whole.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

PIPE_WIDTH = 200  # the widest a table is drawn when the output is not a terminal


def output_console(file: TextIO | None = None) -> Console:
    """A console on ``file`` (standard output by default) that follows the rule above."""
    out = file or sys.stdout
    tty = out.isatty()
    return Console(file=out, highlight=False, soft_wrap=True, force_terminal=tty, no_color=not tty,
                   width=None if tty else PIPE_WIDTH)

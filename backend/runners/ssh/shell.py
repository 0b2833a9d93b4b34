"""What the ssh runner's remote commands share: names it accepts, shell snippets, answer parsing."""

from __future__ import annotations

import re
import shlex

from trainboard.backend.runners.base import RunnerError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RUN_ID = re.compile(r"[A-Za-z0-9._-]+\Z")
MARK = "TRAINBOARD "  # prefixes the lines this runner parses: login noise is ignored
PID_WAIT_STEPS = 200  # x 0.025 s: how long a start waits for the job (or the relay) to write its pid (port)

# A shell function: whether any process of group $1 is alive (zombies, which
# `kill -0` still finds, do not count).
ALIVE_FN = (
    "alive() { kill -0 -- \"-$1\" 2>/dev/null || return 1; command -v ps >/dev/null 2>&1 || return 0; "
    "ps -eo pgid=,stat= | awk -v g=\"$1\" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'; }"
)


def remote_path_expr(path: str) -> str:
    """A shell word for a remote path, with a leading ``~`` meaning the remote home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def as_text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def marked(output: str) -> dict[str, str]:
    """``TRAINBOARD key=value`` lines of a remote command's output."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(MARK) and "=" in line:
            key, _, value = line[len(MARK):].partition("=")
            found[key] = value
    return found


def exit_code(output: str) -> int | None:
    output = output.strip()
    return int(output) if output.lstrip("-").isdigit() else None


def valid_pid(pid: int) -> int:
    """A job's pid, checked: never 0, 1 or negative (``kill -- -1`` would signal everything)."""
    if not isinstance(pid, int) or pid <= 1:
        raise RunnerError(f"bad job pid {pid!r}")
    return pid

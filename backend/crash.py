"""The last line of defence: an exception nothing expected becomes exit 3, never 0.

The user gets one line; the traceback, masked like every other file trainboard
writes, goes to the run's folder (``traceback.txt``) or, before a run exists,
to ``.trainboard/crashes/`` (the temporary folder when that cannot be written).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainboard.backend.exitcodes import ExitCode

TRACEBACK_FILE = "traceback.txt"


def save_traceback(exc: BaseException, files: list[Path], redact: Callable[[str], str]) -> Path | None:
    """Append ``exc``'s traceback, masked, to the first of ``files`` that can be written; its path."""
    text = redact("".join(traceback.format_exception(exc)))
    for path in files:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return None


def crash_file(folder: Path) -> Path:
    """A new file for a crash that has no run folder to go to."""
    return folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to a readable length."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def report_crash(exc: BaseException, session: Any = None) -> int:
    """Say the crash in one line on stderr, keep its traceback; the exit code (3)."""
    from trainboard.backend.redact import Redactor

    redact: Callable[[str], str]
    files: list[Path] = []
    if session is not None:
        redact = session.redact
        if session.run_dir.is_dir():
            files.append(session.run_dir / TRACEBACK_FILE)
        files.append(crash_file(session.store.root / "crashes"))
    else:
        redact = Redactor.from_env(os.environ)
        files.append(crash_file(Path.cwd() / ".trainboard" / "crashes"))
    files.append(crash_file(Path(tempfile.gettempdir()) / "trainboard-crashes"))
    path = save_traceback(exc, files, redact)
    where = f"the traceback is in {path}" if path else "the traceback could not be saved"
    try:
        print(f"error: trainboard failed unexpectedly: {redact(one_line(exc))}\n  {where}; "
              "please report it with that file", file=sys.stderr)
    except Exception:  # stderr itself may be gone; the exit code still says it
        pass
    return int(ExitCode.INFRA_ERROR)

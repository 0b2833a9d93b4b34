"""Shell that trainboard ships to runners: linted, and the orphan watchdog run for real.

The watchdog (backend/runners/orphan_watchdog.sh) is what stops a job on an ssh or
ec2 host whose trainboard is gone for good; here it watches real process groups
on this machine, as it would on a host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SHIPPED = sorted((ROOT / "backend").rglob("*.sh"))
WATCHDOG = ROOT / "backend" / "runners" / "orphan_watchdog.sh"


def test_shipped_shell_passes_shellcheck() -> None:
    assert SHIPPED, "no shell files found under backend"
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), "--severity=style", *map(str, SHIPPED)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_job(tmp_path: Path, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    """A job in a process group (and session) of its own, like the runner's wrapper; reaped as
    soon as it ends (this machine's init may leave zombies, which would still count as a group)."""
    code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
    job = subprocess.Popen([sys.executable, "-c", code + "time.sleep(300)"], cwd=tmp_path, start_new_session=True)
    threading.Thread(target=job.wait, daemon=True).start()
    return job


def start_watchdog(tmp_path: Path, pgid: int, limit: int) -> subprocess.Popen[bytes]:
    (tmp_path / "alive").touch()
    args = [str(pgid), str(tmp_path / "alive"), str(tmp_path / "detached"), str(limit),
            str(tmp_path / "job.orphaned"), str(tmp_path / "job.exit")]
    return subprocess.Popen(["bash", str(WATCHDOG), *args], start_new_session=True)


@pytest.mark.parametrize("ignore_term", [False, True])
def test_a_job_without_word_from_trainboard_is_stopped_after_the_limit(tmp_path: Path, ignore_term: bool) -> None:
    job = start_job(tmp_path, ignore_term)
    time.sleep(0.2)
    began = time.monotonic()
    dog = start_watchdog(tmp_path, job.pid, limit=2)
    try:
        assert dog.wait(timeout=20) == 0
        took = time.monotonic() - began
        deadline = time.monotonic() + 5  # the SIGKILL is sent as the watchdog leaves: reaped just after
        while group_alive(job.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(job.pid)
        assert 2 <= took <= (10 if ignore_term else 5), took  # SIGKILL 5 s after a TERM that was ignored
        assert "no word from trainboard for 2 s" in (tmp_path / "job.orphaned").read_text()
    finally:
        if group_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def test_word_from_trainboard_or_a_detach_keeps_the_job_and_the_watchdog_ends_with_it(tmp_path: Path) -> None:
    job = start_job(tmp_path)
    dog = start_watchdog(tmp_path, job.pid, limit=2)
    try:
        for _ in range(8):  # 4 s of heartbeats, twice the limit
            time.sleep(0.5)
            os.utime(tmp_path / "alive")
        assert group_alive(job.pid) and dog.poll() is None
        (tmp_path / "detached").touch()  # then silence, but the run was left on purpose
        time.sleep(4)
        assert group_alive(job.pid) and dog.poll() is None and not (tmp_path / "job.orphaned").exists()
        (tmp_path / "job.exit").write_text("0\n")  # the job ends (its wrapper writes the exit code)
        assert dog.wait(timeout=5) == 0  # and its watchdog with it, within a second or two
        assert group_alive(job.pid)  # which stopped nothing
    finally:
        if group_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)
        if dog.poll() is None:
            dog.kill()

"""Fault suite: crashes and a full disk. Whatever fails, the exit code says so
(never 0), teardown runs to its end, and the record says how the run ended."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, git, run_acting_at
from tests.sshd_support import Sshd, sshd  # noqa: F401  (the module's sshd fixture)
from tests.test_remote_session import records, remote_jobs, ssh_repo  # noqa: F401  (fixture)
from tests.test_session import group_alive, mlflow_run
from tests.test_tmux_e2e import terminal  # noqa: F401  (fixture)
from trainboard.backend import events as ev
from trainboard.backend.exitcodes import ExitCode


def test_a_crash_outside_any_run_exits_3_with_one_line_and_the_traceback_in_a_file(tmp_path: Path) -> None:
    """The entry point's last line of defence: an exception nothing expected (here raised in
    place of the command) is exit 3, one line on stderr, and the masked traceback in a file."""
    code = ("import os, trainboard.tui.cli as c\n"
            "def boom(argv=None):\n"
            "    raise RuntimeError('disk on fire; token ' + os.environ['GH_TOKEN'])\n"
            "c.main = boom\n"
            "c.entry()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), GH_TOKEN="ghp_" + "a" * 36)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == ExitCode.INFRA_ERROR, proc.stderr
    assert "Traceback" not in proc.stderr
    first, where = proc.stderr.strip().splitlines()
    assert first == "error: trainboard failed unexpectedly: RuntimeError: disk on fire; token ***"
    (saved,) = (tmp_path / ".trainboard" / "crashes").iterdir()
    assert str(saved) in where
    text = saved.read_text()
    assert "Traceback" in text and "RuntimeError: disk on fire" in text and "ghp_" not in text


def _failing_after(session, marker: str, failure: BaseException):
    """Fault injection: once ``marker`` shows in the log, the runner's next status call raises ``failure``."""
    def arm() -> bool:
        runner = session.runner
        real = runner.status
        calls = [0]

        async def status(handle):
            calls[0] += 1
            if calls[0] == 1:
                raise failure
            return await real(handle)

        runner.status = status
        return True

    return arm


async def test_an_unexpected_exception_mid_run_is_exit_3_and_teardown_still_runs(repo: Path) -> None:
    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session

    session = Session(load_config(repo / "tb.yaml", ["params.sleep=30", "params.epochs=2"]), root=repo)
    outcome, armed = await run_acting_at(session, "epoch 1", _failing_after(session, "epoch 1",
                                                                             KeyError("a bug")), timeout=120)
    assert armed == [True]
    assert outcome is ExitCode.INFRA_ERROR
    record = session.store.load(session.run_id).data
    assert record["status"] == "error" and record["exit_code"] == 3
    assert record["stages"]["train"]["state"] == "failed" and record["stages"]["teardown"]["state"] == "done"
    message = record["errors"][0]["message"]
    assert message.startswith("unexpected error: KeyError: 'a bug'") and "traceback.txt" in message
    assert "KeyError: 'a bug'" in (session.run_dir / "traceback.txt").read_text()
    # The job was stopped, the MLflow run marked failed, the report written.
    assert not group_alive(record["job"]["pid"])
    assert mlflow_run(repo, record["mlflow"]["run_id"]).info.status == "FAILED"
    assert (session.run_dir / "report.md").is_file()


async def test_a_view_that_raises_cannot_stop_teardown_or_turn_the_run_into_a_pass(repo: Path) -> None:
    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session

    session = Session(load_config(repo / "tb.yaml", ["params.epochs=2"]), root=repo)
    seen: list[ev.Event] = []

    def broken_view(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, (ev.ComparisonReady, ev.StageChanged)):
            raise ValueError("the view cannot render this")

    session.subscribe(broken_view)
    assert await session.run() is ExitCode.INFRA_ERROR
    record = session.store.load(session.run_id).data
    assert record["exit_code"] == 3 and record["stages"]["teardown"]["state"] == "done"
    assert any("a view failed: ValueError" in e["message"] for e in record["errors"])
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].outcome == 3  # every event still reached the view
    assert not group_alive(record["job"]["pid"])


def test_the_run_folder_filling_up_mid_run_still_tears_down_and_records_the_end(ssh_repo: Path,  # noqa: F811
                                                                                tmp_path: Path) -> None:
    """The run folder on a 1 MiB tmpfs (in a mount namespace of its own: it goes with the
    process) while an ssh job floods its log: exit 3 naming the full disk, the remote job
    stopped, the MLflow run marked failed, and the record's last write lands."""
    runs = ssh_repo / ".trainboard" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    kept = tmp_path / "kept"
    command = f"{sys.executable} job.py; sleep 120"
    run = shlex.join([sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui",
                      "--set", "params.lines=300000", "--set", "params.epochs=1", "--set", f"job.command={command}"])
    script = (f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(runs))} || exit 99\n"
              f"{run}\nrc=$?\ncp -r {shlex.quote(str(runs))} {shlex.quote(str(kept))}\nexit $rc\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_ACTIONS", None)
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=ssh_repo,
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode != 99, "could not mount a tmpfs in a mount namespace: " + proc.stderr
    assert proc.returncode == ExitCode.INFRA_ERROR, proc.stdout[-2000:] + proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    (record_path,) = kept.glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "error" and record["exit_code"] == 3
    assert record["stages"]["train"]["state"] == "failed"
    assert record["stages"]["teardown"]["state"] in ("done", "failed")  # the report may not fit: said, not fatal
    assert not remote_jobs(record["run_id"]), "the remote job outlived the run"
    assert mlflow_run(ssh_repo, record["mlflow"]["run_id"]).info.status == "FAILED"
    assert not (record_path.parent / ".reserve").exists()


@pytest.mark.parametrize("text", ["name: a\x07b\n", "name: [unclosed\n"])
def test_a_config_the_parser_chokes_on_is_never_exit_0(tiny_repo: Path, text: str) -> None:
    (tiny_repo / "bad.yaml").write_text(text)
    git(tiny_repo, "add", "bad.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "trainboard.tui.cli", "run", "bad.yaml", "--no-tui"], cwd=tiny_repo,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode in (ExitCode.CONFIG_ERROR, ExitCode.INFRA_ERROR), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tiny_repo / ".trainboard" / "runs").exists()


def test_a_dashboard_that_crashes_mid_run_exits_3_and_the_run_is_torn_down(tiny_repo: Path, terminal) -> None:  # noqa: F811
    """The real dashboard in tmux with a widget that raises on the first metrics (a bug):
    Textual's own exit code would be 1, "gate failed"; trainboard says 3, and the job is stopped."""
    term = terminal(tiny_repo, ["run", "tb.yaml", "--set", "params.sleep=30"], module="tests.crashing_dashboard")
    status = term.exit_status(timeout=120)
    assert status == ExitCode.INFRA_ERROR, term.screen()
    (record,) = records(tiny_repo)
    assert record["status"] == "error" and record["exit_code"] == 3, record
    assert record["stages"]["teardown"]["state"] == "done"
    assert any("the dashboard failed" in e["message"] for e in record["errors"])
    assert not group_alive(record["job"]["pid"])
    run_dir = tiny_repo / ".trainboard" / "runs" / record["run_id"]
    assert "RuntimeError: the metrics panel broke" in (run_dir / "traceback.txt").read_text()


def test_a_reader_that_leaves_early_is_no_crash(tmp_path: Path) -> None:
    """`trainboard runs --json | head -1`: the pipe closes under a long output. That is the
    shell's SIGPIPE status (141), with no crash report and nothing saved."""
    code = ("import trainboard.tui.cli as c\n"
            "def lots(argv=None):\n"
            "    for _ in range(200000):\n"
            "        print('x' * 50)\n"
            "    return 0\n"
            "c.main = lots\n"
            "c.entry()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == b"x" * 50 + b"\n"
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert b"failed unexpectedly" not in err and not (tmp_path / ".trainboard").exists()

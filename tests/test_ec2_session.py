"""Whole runs on the ec2 runner, through the real CLI in a subprocess.

AWS is moto's server (through the test proxy); the "instance" is this machine:
the boot emulator starts a real sshd with the host key and client key that
RunInstances' user data injects, on the port TRAINBOARD_EC2_SSH_ADDRESS names.
MLflow is the repo's SQLite store, served by trainboard in-process and forwarded
over SSH to the job.

Every run ends with moto holding nothing of it: no live instance, no key pair,
no security group tagged with its run id, and no process of it left here.
"""

from __future__ import annotations

import getpass
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import aws_support
from tests.aws_support import Aws, BootEmulator, ImdsServer, run_resources
from tests.conftest import ROOT, git
from tests.sshd_support import free_port
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.runners.ec2 import SSH_ADDRESS_ENV, TAG_RUN

moto_server = aws_support.moto_server  # fixtures
aws = aws_support.aws

NOTHING: dict[str, list[str]] = {"instances": [], "key_pairs": [], "security_groups": []}
MARKER_TIMEOUT = 90.0  # seconds to wait for the line a test acts on
EXIT_TIMEOUT = 90.0  # seconds from the signal to the CLI's exit (teardown included)


# --------------------------------------------------------------------------- helpers


class Cli:
    """`trainboard run tb.yaml --no-tui` in a subprocess, its stdout read line by line in a thread."""

    def __init__(self, repo: Path, *overrides: str) -> None:
        env = dict(os.environ)  # the moto endpoint, fake credentials, the SSH address
        env.pop("GITHUB_ACTIONS", None)
        env["PYTHONPATH"] = str(ROOT)
        args = [a for o in overrides for a in ("--set", o)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui", *args], cwd=repo, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._readers = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + "\n".join(self.err)

    def wait_for(self, matches: Callable[[str], bool], timeout: float = MARKER_TIMEOUT) -> str:
        """The first (next) stdout line that ``matches``; fails if the CLI exits or time runs out first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout} s:\n{self.output[-4000:]}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(10)
                raise AssertionError(f"the CLI exited ({self.proc.returncode}) before the line:\n"
                                     f"{self.output[-4000:]}")
            if matches(line):
                return line

    def finish(self, timeout: float = EXIT_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def records(repo: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((repo / ".trainboard" / "runs").glob("*/record.json"))]


def run_processes(run_id: str) -> list[str]:
    """Live processes on this machine (the "instance") whose command line or working folder names the run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                cwd = ""
        except (OSError, IndexError):
            continue  # gone meanwhile
        if run_id in args or run_id in cwd:
            found.append(f"{entry.name} {args} (in {cwd})")
    return found


def wait_process(matches: Callable[[str], bool], cli: Cli, timeout: float = 30.0) -> None:
    """Until a live process here has a command line that ``matches``."""
    deadline = time.monotonic() + timeout
    while not any(matches(args) for args in live_commands()):
        assert cli.proc.poll() is None, f"the CLI exited first:\n{cli.output[-4000:]}"
        assert time.monotonic() < deadline, f"no such process within {timeout} s:\n{cli.output[-4000:]}"
        time.sleep(0.02)


def live_commands() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip())
            except OSError:
                continue
    return found


def assert_no_processes(run_id: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (left := run_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of the run outlived it: {left}"


def instance_states(aws: Aws, run_id: str) -> dict[str, str]:
    """Every instance moto ever held for the run (terminated ones too) and its state."""
    resp = aws.client("ec2").describe_instances(Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}])
    return {i["InstanceId"]: i["State"]["Name"] for r in resp["Reservations"] for i in r["Instances"]}


def assert_nothing_left(aws: Aws, run_id: str) -> None:
    assert run_resources(aws, run_id) == NOTHING
    states = instance_states(aws, run_id)
    assert states and set(states.values()) == {"terminated"}, states
    assert_no_processes(run_id)


# --------------------------------------------------------------------------- fixtures


class Ec2Setup:
    """The repo configured for the ec2 runner, and the boot emulator standing in for the instance."""

    def __init__(self, repo: Path, aws: Aws, port: int, tmp: Path) -> None:
        self.repo = repo
        self.aws = aws
        self.port = port
        self.tmp = tmp
        self.boot: BootEmulator | None = None
        self.clis: list[Cli] = []

    def emulate(self, mode: str = "boot", imds_url: str | None = None) -> BootEmulator:
        self.boot = BootEmulator(self.aws.moto.url, self.port, self.tmp / "instances", mode=mode,
                                 imds_url=imds_url).start()
        return self.boot

    def configure(self, change: Callable[[dict[str, Any]], None], message: str) -> None:
        config = yaml.safe_load((self.repo / "tb.yaml").read_text())
        change(config)
        (self.repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        git(self.repo, "commit", "-qam", message)

    def run(self, *overrides: str) -> Cli:
        cli = Cli(self.repo, *overrides)
        self.clis.append(cli)
        return cli

    def record(self) -> dict[str, Any]:
        (record,) = records(self.repo)
        return record

    def close(self) -> None:
        for cli in self.clis:
            cli.kill()  # only after a failed test: a passing one waited for its exit
        if self.boot is not None:
            self.boot.stop()


@pytest.fixture
def ec2(repo: Path, aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ec2Setup]:
    port = free_port()
    monkeypatch.setenv(SSH_ADDRESS_ENV, f"127.0.0.1:{port}")  # inherited by the CLI, like the moto env
    setup = Ec2Setup(repo, aws, port, tmp_path)

    def to_ec2(config: dict[str, Any]) -> None:
        config["runner"] = {
            "kind": "ec2",
            "region": "us-east-1",
            "instance_type": "t3.micro",
            "user": getpass.getuser(),  # the user the emulator's sshd lets in (root here)
            "ssh_cidr": "127.0.0.1/32",  # explicit: no lookup of this machine's public address
            "remote_dir": str(tmp_path / "remote"),
            "connect_timeout": 5,
            "reconnect_timeout": 10,
            "max_duration_minutes": 30,
        }
        # The remote login shell knows no venv: name the interpreter that has mlflow and yaml.
        config["job"]["command"] = f"{sys.executable} job.py"

    setup.configure(to_ec2, "ec2 runner")
    try:
        yield setup
    finally:
        setup.close()


# --------------------------------------------------------------------------- the whole run


def test_ec2_run_end_to_end_through_the_cli_leaves_nothing_behind(ec2: Ec2Setup, aws: Aws) -> None:
    ec2.emulate()
    cli = ec2.run()
    code = cli.finish(180)
    out = cli.output
    assert code == ExitCode.OK, out[-4000:]
    record = ec2.record()
    run_id = record["run_id"]
    assert record["status"] == "succeeded"
    # The job reached MLflow through the SSH forward to the server here.
    assert "metrics @ step 2: f1=0.8000" in out
    assert record["comparison"]["rows"][0]["after"] == pytest.approx(0.8)
    # The runner: an instance of moto's, its price, and the final cost.
    runner = record["runner"]
    instance_id = runner["details"]["instance_id"]
    assert runner["kind"] == "ec2" and instance_id.startswith("i-")
    assert runner["hourly_price"] == pytest.approx(0.0104) and runner["state"]["instance_id"] == instance_id
    assert isinstance(record["cost"], float) and 0 <= record["cost"] < 0.01
    assert any(line.startswith("  runner cost $") and "at $0.010/h" in line for line in cli.lines), out
    assert all(record["stages"][s]["state"] == "done"
               for s in ("check", "provision", "sync", "train", "collect", "compare", "report", "teardown")), \
        record["stages"]
    # Teardown: nothing of the run left in AWS, the instance terminated, the per-run key gone.
    assert instance_states(aws, run_id) == {instance_id: "terminated"}
    assert_nothing_left(aws, run_id)
    run_dir = ec2.repo / ".trainboard" / "runs" / run_id
    assert json.loads((run_dir / "metrics.json").read_text()) == {"f1": pytest.approx(0.8)}
    assert not (run_dir / "ec2-key").exists()


# --------------------------------------------------------------------------- signals, stage by stage

BIG_SYNC_MB = 48  # an untracked (not ignored) file: building and sending its tar takes a moment
BIG_OUTPUT_MB = 200  # a job output: fetching it back takes a moment


def _provision(ec2: Ec2Setup) -> Cli:
    ec2.emulate(mode="never")  # an instance whose SSH never answers: provision waits for it
    cli = ec2.run()
    # The progress line of the last step: launched, running, now waiting for SSH (forever).
    cli.wait_for(lambda line: line.startswith("  runner ec2: provisioning") and "waiting for SSH" in line)
    return cli


def _sync(ec2: Ec2Setup) -> Cli:
    with open(ec2.repo / "data.bin", "wb") as fh:
        fh.write(os.urandom(BIG_SYNC_MB << 20))  # incompressible
    ec2.emulate()
    cli = ec2.run()
    cli.wait_for(lambda line: line == "… sync running")  # the tar of the code takes a second to build
    return cli


def _setup(ec2: Ec2Setup) -> Cli:
    ec2.emulate()
    cli = ec2.run("job.setup=['echo setting-up; sleep 60']")
    cli.wait_for(lambda line: line == "setting-up")
    return cli


def _train(ec2: Ec2Setup) -> Cli:
    ec2.emulate()
    cli = ec2.run("params.sleep=60")
    cli.wait_for(lambda line: line.startswith("epoch 1"))
    return cli


def _collect(ec2: Ec2Setup) -> Cli:
    def big_output(config: dict[str, Any]) -> None:
        size = BIG_OUTPUT_MB << 20
        config["job"]["command"] += f" && {sys.executable} -c \"open('big.bin', 'wb').truncate({size})\""
        config["job"]["outputs"] = ["metrics.json", "big.bin"]

    ec2.configure(big_output, "a big output")
    ec2.emulate()
    cli = ec2.run()
    cli.wait_for(lambda line: line == "… collect running")
    # Then the fetch itself: the "instance" side of it, tar streaming big.bin back, is running.
    wait_process(lambda args: args == "tar -cf - -- big.bin", cli)
    return cli


STAGE_RUNS = {"provision": _provision, "sync": _sync, "setup": _setup, "train": _train, "collect": _collect}
# Setup runs inside the sync stage (after the code is unpacked).
RECORD_STAGE = {"provision": "provision", "sync": "sync", "setup": "sync", "train": "train", "collect": "collect"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", list(STAGE_RUNS))
def test_a_signal_in_each_stage_tears_the_instance_down(ec2: Ec2Setup, aws: Aws, stage: str,
                                                       sig: signal.Signals) -> None:
    cli = STAGE_RUNS[stage](ec2)
    cli.proc.send_signal(sig)
    code = cli.finish()
    out = cli.output
    assert code == ExitCode.INTERRUPTED, out[-4000:]
    assert f"interrupted by {sig.name}: tearing down" in out
    record = ec2.record()
    run_id = record["run_id"]
    stages = record["stages"]
    assert record["status"] == "cancelled" and stages["teardown"]["state"] == "done", stages
    # The signal landed in the intended stage: it is the one cut short (skipped, "cancelled": not
    # failed), none failed, and none after it began.
    assert not [name for name, info in stages.items() if info["state"] == "failed"], stages
    cut = [name for name, info in stages.items() if info["state"] == "skipped" and info["detail"] == "cancelled"]
    assert cut == [RECORD_STAGE[stage]], stages
    later = {"provision": ["sync", "train"], "sync": ["train"], "setup": ["train"], "train": ["collect"],
             "collect": ["compare", "report"]}[stage]
    assert not set(later) & set(stages), stages
    jobs = {"provision": set(), "sync": set(), "setup": {"setup"}, "train": {"setup", "job"},
            "collect": {"setup", "job"}}[stage]
    assert {name for name in ("setup", "job") if name in record} == jobs, record.keys()
    if stage in ("provision", "sync"):  # the code never arrived whole (params.yaml is the tar's last member)
        assert not (ec2.tmp / "remote" / run_id / "workspace" / "params.yaml").exists()
    if stage == "collect":  # the job had ended well; its big output never arrived
        assert record["job_exit_code"] == 0
        assert not (ec2.repo / ".trainboard" / "runs" / run_id / "big.bin").exists()
    # An instance was launched (and ran, with an address), and teardown ended it and deleted everything else.
    state = record["runner"]["state"]
    assert state.get("instance_id") and state.get("address"), record["runner"]
    assert_nothing_left(aws, run_id)


# --------------------------------------------------------------------------- spot interruption


def test_a_spot_interruption_during_training_is_an_infrastructure_error(ec2: Ec2Setup, aws: Aws) -> None:
    imds = ImdsServer()
    try:
        boot = ec2.emulate(imds_url=imds.url)  # runs the user data's watchdog against the IMDS stand-in
        ec2.configure(lambda config: config["runner"].update(market="spot"), "spot")
        cli = ec2.run("params.sleep=60")
        cli.wait_for(lambda line: line.startswith("epoch 1"))
        notice = imds.interrupt("terminate")
        code = cli.finish()
    finally:
        imds.close()
    out = cli.output
    assert code == ExitCode.INFRA_ERROR, out[-4000:]
    record = ec2.record()
    assert record["status"] == "error" and record["stages"]["train"]["state"] == "failed"
    assert record["job_exit_code"] == 143  # the watchdog's SIGTERM, recorded
    assert record["runner"]["details"]["market"] == "spot"
    messages = [e["message"] for e in record.get("errors", [])]
    assert any("interruption" in m and notice in m for m in messages), messages
    assert any(line.startswith("error: train:") and "interruption" in line for line in cli.err), out
    (booted,) = boot.booted.values()
    assert not booted.shutdown_marker.exists()  # the watchdog reacted to the notice, not a timeout
    assert_nothing_left(aws, record["run_id"])

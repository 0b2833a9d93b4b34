"""Sweeps on remote runners: an SSH host pool (two real sshd servers on 127.0.0.1), and EC2
against moto with the boot emulator standing in for the instance (tests/aws_support.py).

A pool gives each member a free host and runs at most as many members as it has hosts;
a member that fails on its host leaves the others running. On EC2, SIGTERM to
``trainboard run --no-tui`` and the cost cap stop every member, tear each down and
launch no more: moto holds no live instance, key pair or security group afterwards.
And one race of the launch, on the local runner: a member stopped after its launch but
before its task began stays skipped.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import aws_support, test_ec2_session
from tests.aws_support import Aws
from tests.conftest import git
from tests.sshd_support import Sshd, start_sshd
from tests.test_ec2_session import Ec2Setup, assert_no_processes
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.runners.ec2.context import RESOURCES_FILE
from trainboard.backend.sweep import Sweep
from trainboard.backend.sweep_events import MemberChanged, SweepStarted
from trainboard.backend.sweep_record import SweepData, SweepStore
from trainboard.backend.sweep_spec import plan
from trainboard.backend.tracking import Tracking

moto_server = aws_support.moto_server  # fixtures
aws = aws_support.aws
ec2 = test_ec2_session.ec2  # the repo on the ec2 runner, and the boot emulator

NOTHING: dict[str, list[str]] = {"instances": [], "key_pairs": [], "security_groups": []}
# A job over SSH does not inherit PYTEST_CURRENT_TEST, so MLflow's client in it starts its
# telemetry thread, which (offline) unsets an environment variable while the job's own MLflow
# call iterates os.environ: a KeyError in the job now and then (MLflow 3.17). Not ours to test.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true"}


# --------------------------------------------------------------------------- helpers


def make_sweep(repo: Path, sweeps: list[str], overrides: tuple[str, ...] = ()) -> Sweep:
    loaded = load_config(repo / "tb.yaml", list(overrides))
    members, configs = plan(loaded, sweeps, repo)
    return Sweep(loaded, members, configs, root=repo)


def member_records(repo: Path) -> dict[str, dict[str, Any]]:
    """run id -> record, every run of the repo."""
    runs = sorted((repo / ".trainboard" / "runs").glob("*/record.json"))
    return {p.parent.name: json.loads(p.read_text()) for p in runs}


def the_sweep(repo: Path) -> SweepData:
    return SweepStore(repo / ".trainboard").resolve(None)


def children(repo: Path, parent: str) -> list[Any]:
    client = Tracking(f"sqlite:///{repo / '.trainboard' / 'mlflow.db'}", "tiny").client
    experiment = client.get_experiment_by_name("tiny")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def overlap(a: Any, b: Any) -> bool:
    """Whether two members (MemberInfo) ran at the same time."""
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def everything_left(aws: Aws) -> dict[str, list[str]]:
    """Whatever moto still holds (each test starts from an empty moto): live instances, keys, groups."""
    client = aws.client("ec2")
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    instances = [i["InstanceId"] for r in client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": live}])["Reservations"] for i in r["Instances"]]
    keys = [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]]
    groups = [g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    return {"instances": instances, "key_pairs": keys, "security_groups": groups}


def instances_ever(aws: Aws) -> list[str]:
    """Every instance moto was asked for (terminated ones too)."""
    resp = aws.client("ec2").describe_instances()
    return [i["InstanceId"] for r in resp["Reservations"] for i in r["Instances"]]


# --------------------------------------------------------------------------- an ssh pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    """Two real sshd servers for the module (each test's members share them); the second
    lets in the first's client key, so one identity file logs in to both."""
    first = start_sshd(tmp_path_factory.mktemp("sshd-a"))
    try:
        second = start_sshd(tmp_path_factory.mktemp("sshd-b"), authorized_keys=[first.client_key_pub])
        try:
            yield [first, second]
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture
def pool_repo(repo: Path, pool: list[Sshd], tmp_path: Path) -> Path:
    """The tiny repo on the ssh runner with ``runner.hosts`` naming both servers, committed."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(s.known_hosts.read_text() for s in pool))
    config = yaml.safe_load((repo / "tb.yaml").read_text())
    config["runner"] = {
        "kind": "ssh",
        "host": "127.0.0.1",
        "hosts": [f"127.0.0.1:{s.port}" for s in pool],
        "user": pool[0].user,
        "identity_file": str(pool[0].client_key),
        "known_hosts": str(known_hosts),
        "remote_dir": str(tmp_path / "remote runs"),
    }
    # The remote login shell knows no venv: name the interpreter that has mlflow and yaml.
    config["job"]["command"] = f"{sys.executable} job.py"
    config["job"]["env"] = NO_TELEMETRY
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "ssh pool")
    return repo


def host_port(record: dict[str, Any]) -> int:
    """The port of the pool host a member ran on (the runner's address, user@host:port)."""
    return int(record["runner"]["address"].rsplit(":", 1)[1])


def hosts_apart(data: SweepData, ports: dict[int, int]) -> None:
    """No two members that ran at the same time shared a host."""
    for a in data.members:
        for b in data.members:
            if a.index < b.index and overlap(a, b):
                assert ports[a.index] != ports[b.index], f"members {a.index} and {b.index} shared a host"


async def test_a_sweep_on_an_ssh_pool_runs_each_member_on_a_host_of_its_own(pool_repo: Path,
                                                                           pool: list[Sshd]) -> None:
    sweep = make_sweep(pool_repo, ["params.base_f1=0.5,0.7"], ("sweep.max_parallel=4", "params.sleep=0.3"))
    started: list[SweepStarted] = []
    sweep.subscribe(lambda e: started.append(e) if isinstance(e, SweepStarted) else None)
    assert await sweep.run() is ExitCode.OK
    assert started[0].max_parallel == 2, "max_parallel 4, but the pool has two hosts"
    data = the_sweep(pool_repo)
    assert [m.status for m in data.members] == ["succeeded"] * 2
    assert data.best == 1 and data.members[1].objective == pytest.approx(0.9)
    records = member_records(pool_repo)
    assert sorted(records) == sorted(m.run_id for m in data.members)
    assert all(r["runner"]["kind"] == "ssh" and r["status"] == "succeeded" for r in records.values())
    ports = {m.index: host_port(records[m.run_id]) for m in data.members}
    assert sorted(ports.values()) == sorted(s.port for s in pool), ports  # one each
    assert overlap(*data.members), "both ran at the same time, one on each host"
    kids = children(pool_repo, data.parent_run_id)
    assert {k.info.run_id for k in kids} == {m.mlflow_run_id for m in data.members} and len(kids) == 2


async def test_a_member_that_fails_on_its_host_does_not_stop_the_others(pool_repo: Path) -> None:
    # base_f1 0.5 fails at once (exit 5); the other two train, the third on the host the failure freed.
    fail_fast = (f"{sys.executable} -c \"import sys, yaml; "
                 f"sys.exit(5 if yaml.safe_load(open('params.yaml'))['base_f1'] < 0.55 else 0)\" "
                 f"&& {sys.executable} job.py")
    sweep = make_sweep(pool_repo, ["params.base_f1=0.5,0.7,0.6"],
                       ("sweep.max_parallel=4", f"job.command={fail_fast}", "params.sleep=1.5"))
    assert await sweep.run() is ExitCode.OK  # the verdict of the best member with a result
    data = the_sweep(pool_repo)
    failed, fine, next_one = data.members
    assert failed.status == "job-failed" and failed.exit_code == ExitCode.JOB_FAILED and failed.objective is None
    assert "exited with code 5" in failed.reason, failed.reason
    assert fine.status == "succeeded" and fine.objective == pytest.approx(0.9) and not fine.reason
    assert fine.started_at < failed.finished_at < fine.finished_at, "the other member ran on past the failure"
    assert next_one.status == "succeeded" and next_one.started_at > failed.finished_at  # launched after it
    assert data.best == 1 and not data.reason
    records = member_records(pool_repo)
    assert not any(r.get("stopped_by") for r in records.values())
    ports = {m.index: host_port(records[m.run_id]) for m in data.members}
    assert ports[0] != ports[1]
    hosts_apart(data, ports)


# --------------------------------------------------------------------------- the launch (local runner)


async def test_a_member_stopped_between_its_launch_and_its_start_never_runs(repo: Path) -> None:
    """Members 0 and 1 are launched together; member 1 is stopped as member 0 starts, before its
    own task has begun: it stays skipped (no run) and its slot goes to member 2."""
    sweep = make_sweep(repo, ["params.base_f1=0.5,0.6,0.7"], ("sweep.max_parallel=2",))
    stopped: list[bool] = []

    def stop_the_next(event: object) -> None:
        if isinstance(event, MemberChanged) and event.index == 0 and event.status == "running" and not stopped:
            stopped.append(sweep.stop_member(1))

    sweep.subscribe(stop_the_next)
    assert await sweep.run() is ExitCode.OK
    data = the_sweep(repo)
    assert stopped == [True]
    assert [m.status for m in data.members] == ["succeeded", "skipped", "succeeded"], data.members
    assert data.members[1].reason == "stopped by you" and not data.members[1].run_id
    assert sorted(member_records(repo)) == sorted([data.members[0].run_id, data.members[2].run_id])


# --------------------------------------------------------------------------- ec2 (moto)


def sweep_on_ec2(setup: Ec2Setup, **changes: Any) -> None:
    """Three members of the ec2 config (params.base_f1=0.5,0.6,0.7), two at a time, and ``changes``
    (dotted setting -> value) to tb.yaml."""

    def change(config: dict[str, Any]) -> None:
        config["sweep"] = {"params": {"params.base_f1": "0.5,0.6,0.7"}, "max_parallel": 2}
        config["job"]["env"] = NO_TELEMETRY
        for setting, value in changes.items():
            *parents, name = setting.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[name] = value

    setup.configure(change, "an ec2 sweep")


def waiting_for_ssh(repo: Path) -> list[str]:
    """The runs whose instance runs and whose runner now tries SSH on it (the trail names its port)."""
    found = []
    for trail in (repo / ".trainboard" / "runs").glob(f"*/{RESOURCES_FILE}"):
        try:
            if json.loads(trail.read_text()).get("ssh_port"):
                found.append(trail.parent.name)
        except (OSError, ValueError):
            continue  # being written
    return found


def test_sigterm_cancels_an_ec2_sweep_mid_way_and_leaves_nothing_in_aws(ec2: Ec2Setup, aws: Aws) -> None:
    ec2.emulate(mode="never")  # instances that never answer SSH: both members wait in provision
    sweep_on_ec2(ec2)
    cli = ec2.run()
    deadline = time.monotonic() + 60
    while len(waiting_for_ssh(ec2.repo)) < 2:
        assert cli.proc.poll() is None, cli.output[-4000:]
        assert time.monotonic() < deadline, cli.output[-4000:]
        time.sleep(0.05)
    cli.proc.send_signal(signal.SIGTERM)
    code = cli.finish()
    out = cli.output
    assert code == ExitCode.INTERRUPTED, out[-4000:]
    data = the_sweep(ec2.repo)
    assert [m.status for m in data.members] == ["cancelled", "cancelled", "skipped"], data.members
    assert data.exit_code == ExitCode.INTERRUPTED and data.reason == "interrupted by SIGTERM"
    assert all(m.reason == "interrupted by SIGTERM" and m.finished_at for m in data.members)
    assert not data.members[2].run_id  # never launched
    records = member_records(ec2.repo)
    assert sorted(records) == sorted(m.run_id for m in data.members[:2])
    for run_id, record in records.items():
        assert record["status"] == "cancelled" and record["stopped_by"] == "interrupted by SIGTERM"
        assert record["stages"]["teardown"]["state"] == "done", record["stages"]
        assert_no_processes(run_id)
    assert len(instances_ever(aws)) == 2
    assert everything_left(aws) == NOTHING
    assert "stopped: interrupted by SIGTERM" in out


def test_the_cost_cap_stops_an_ec2_sweep_and_launches_no_member_past_it(ec2: Ec2Setup, aws: Aws) -> None:
    # $2 a second: a member's projection (runner.max_duration_minutes, 7.5 s: the emulated
    # instance never shuts itself down) is the whole cap, so one member runs and the others may
    # not start; its spend reaches the cap 7.5 s after it is up, well into its training (a cancel
    # before the job starts would leave the ssh runner's MLflow relay on the "instance").
    ec2.emulate()
    sweep_on_ec2(ec2, **{"runner.hourly_price": 7200, "runner.max_duration_minutes": 0.125,
                         "budget.max_cost_usd": 15.0, "params.sleep": 30})
    cli = ec2.run()
    code = cli.finish(120)
    out = cli.output
    assert code == ExitCode.INTERRUPTED, out[-4000:]  # the cap, and no member with a result
    data = the_sweep(ec2.repo)
    ran, *queued = data.members
    assert ran.status == "cancelled" and ran.reason.startswith("cost cap: $15."), ran
    assert ran.reason.endswith("reached the cap $15.00") and data.reason == ran.reason
    assert [m.status for m in queued] == ["skipped", "skipped"]
    assert all(m.reason.startswith("cost cap: starting it could pass the cap $15.00") and not m.run_id
               for m in queued), queued
    assert data.cost >= 15.0 and data.exit_code == ExitCode.INTERRUPTED
    (record,) = member_records(ec2.repo).values()
    assert record["status"] == "cancelled" and record["stopped_by"] == ran.reason
    stages = record["stages"]
    assert stages["teardown"]["state"] == "done" and not [s for s, v in stages.items() if v["state"] == "failed"]
    assert len(instances_ever(aws)) == 1  # no member launched past the projected cap
    assert everything_left(aws) == NOTHING
    assert_no_processes(record["run_id"])
    assert f"stopped: {ran.reason}" in out
    assert any("skipped: cost cap: starting it could pass the cap" in line for line in cli.lines), out

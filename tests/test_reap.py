"""`trainboard reap` against moto's server: exactly the orphans, never anything else."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

from tests import aws_support
from tests.aws_support import Aws
from trainboard.backend.reap import delete_orphans, find_orphans, reap, survey
from trainboard.backend.runners.ec2 import TAG_EXPIRES, TAG_OWNER, TAG_RUN
from trainboard.backend.store import RunStore

moto_server = aws_support.moto_server  # fixtures
aws = aws_support.aws

IMAGE = "ami-0ed094fb1304fd857"  # in moto's us-east-1 image list
NOW = dt.datetime.now(dt.UTC)
LATER = (NOW + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
EARLIER = (NOW - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

FINISHED = "20250101-000001-f1n1"
CRASHED = "20250101-000002-c4a5"
EXPIRED = "20250101-000003-e0e0"  # recorded as running (alive), but past its expiry
ACTIVE = "20250101-000004-ac71"
DETACHED = "20250101-000005-de7a"
ELSEWHERE = "20250101-000006-0e15"  # not recorded here, not expired: another machine's
ELSEWHERE_EXPIRED = "20250101-000007-0e16"


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def tags(run_id: str, expires: str = LATER, **extra: str) -> list[dict[str, str]]:
    items = {TAG_RUN: run_id, TAG_OWNER: "arn:aws:iam::123456789012:user/test", TAG_EXPIRES: expires,
             "Name": f"trainboard-{run_id}", **extra}
    return [{"Key": k, "Value": v} for k, v in items.items()]


class World:
    """Resources planted in moto, and the runs recorded locally."""

    def __init__(self, aws: Aws, root: Path) -> None:
        self.ec2 = aws.client("ec2")
        self.root = root
        self.store = RunStore(root)
        self.orphans: set[tuple[str, str]] = set()
        self.kept: set[tuple[str, str]] = set()
        self.untouchable: set[tuple[str, str]] = set()

    def record(self, run_id: str, **fields: Any) -> None:
        self.store.create(run_id, **fields)

    def instance(self, tag_list: list[dict[str, str]] | None, group: str | None = None) -> str:
        params: dict[str, Any] = {"ImageId": IMAGE, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
        if tag_list:
            params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tag_list}]
        if group:
            params["SecurityGroupIds"] = [group]
        return str(self.ec2.run_instances(**params)["Instances"][0]["InstanceId"])

    def group(self, name: str, tag_list: list[dict[str, str]] | None) -> str:
        params: dict[str, Any] = {"GroupName": name, "Description": "test"}
        if tag_list:
            params["TagSpecifications"] = [{"ResourceType": "security-group", "Tags": tag_list}]
        return str(self.ec2.create_security_group(**params)["GroupId"])

    def key(self, name: str, tag_list: list[dict[str, str]] | None) -> str:
        params: dict[str, Any] = {"KeyName": name}
        if tag_list:
            params["TagSpecifications"] = [{"ResourceType": "key-pair", "Tags": tag_list}]
        self.ec2.create_key_pair(**params)
        return name

    def plant(self) -> World:
        me = os.getpid()
        self.record(FINISHED, status="succeeded", trainboard_pid=dead_pid())
        self.record(CRASHED, status="running", trainboard_pid=dead_pid())
        self.record(EXPIRED, status="running", trainboard_pid=me)
        self.record(ACTIVE, status="running", trainboard_pid=me)
        self.record(DETACHED, status="detached", trainboard_pid=dead_pid())

        group = self.group(f"trainboard-{FINISHED}", tags(FINISHED))
        self.orphans |= {("security-group", group), ("instance", self.instance(tags(FINISHED), group)),
                         ("key-pair", self.key(f"trainboard-{FINISHED}", tags(FINISHED)))}
        spot = self.ec2.request_spot_instances(
            SpotPrice="0.05", LaunchSpecification={"ImageId": IMAGE, "InstanceType": "t3.micro"},
            TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags(FINISHED)}],
        )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
        self.orphans.add(("spot-request", spot))
        gone = self.instance(tags(FINISHED))  # already terminated: not an orphan any more
        self.ec2.terminate_instances(InstanceIds=[gone])

        self.orphans |= {("instance", self.instance(tags(CRASHED))),
                         ("key-pair", self.key(f"trainboard-{CRASHED}", tags(CRASHED)))}
        self.orphans |= {("instance", self.instance(tags(EXPIRED, EARLIER))),
                         ("security-group", self.group(f"trainboard-{EXPIRED}", tags(EXPIRED, EARLIER)))}
        self.orphans.add(("key-pair", self.key(f"trainboard-{ELSEWHERE_EXPIRED}", tags(ELSEWHERE_EXPIRED, EARLIER))))

        active_group = self.group(f"trainboard-{ACTIVE}", tags(ACTIVE))
        self.kept |= {("security-group", active_group), ("instance", self.instance(tags(ACTIVE), active_group)),
                      ("key-pair", self.key(f"trainboard-{ACTIVE}", tags(ACTIVE)))}
        self.kept.add(("instance", self.instance(tags(DETACHED))))
        self.kept |= {("instance", self.instance(tags(ELSEWHERE))),
                      ("security-group", self.group(f"trainboard-{ELSEWHERE}", tags(ELSEWHERE)))}

        foreign = [{"Key": "team", "Value": "data"}, {"Key": "trainboard:owner", "Value": "not a run"}]
        self.untouchable |= {("instance", self.instance(None)), ("instance", self.instance(foreign)),
                             ("security-group", self.group("someone-elses", foreign)),
                             ("key-pair", self.key("personal", None)), ("key-pair", self.key("team-key", foreign))}
        return self

    def exists(self) -> set[tuple[str, str]]:
        live = ["pending", "running", "stopping", "stopped"]
        out = {("instance", i["InstanceId"])
               for r in self.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": live}])
               ["Reservations"] for i in r["Instances"]}
        out |= {("security-group", g["GroupId"]) for g in self.ec2.describe_security_groups()["SecurityGroups"]
                if g["GroupName"] != "default"}
        out |= {("key-pair", k["KeyName"]) for k in self.ec2.describe_key_pairs()["KeyPairs"]}
        out |= {("spot-request", s["SpotInstanceRequestId"])
                for s in self.ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
                if s["State"] in ("open", "active")}
        return out


def test_find_orphans_finds_every_orphan_and_nothing_else(aws: Aws, tmp_path: Path) -> None:
    world = World(aws, tmp_path / ".trainboard").plant()
    orphans = find_orphans(world.ec2, world.store, dt.datetime.now(dt.UTC))
    assert {(o.kind, o.id) for o in orphans} == world.orphans
    reasons = {o.run_id: o.reason for o in orphans}
    assert reasons[FINISHED] == "run succeeded"
    assert reasons[CRASHED].startswith("run crashed (trainboard pid")
    assert reasons[EXPIRED].startswith("expired at") and reasons[ELSEWHERE_EXPIRED].startswith("expired at")
    _, kept = survey(world.ec2, world.store, dt.datetime.now(dt.UTC))
    assert {(k.kind, k.id) for k in kept} == world.kept
    assert all("another machine" in k.reason for k in kept if k.run_id == ELSEWHERE)


def test_reap_dry_run_lists_them_and_deletes_nothing(aws: Aws, tmp_path: Path) -> None:
    world = World(aws, tmp_path / ".trainboard").plant()
    before = world.exists()
    lines: list[str] = []
    assert reap(world.root, "us-east-1", dry_run=True, echo=lines.append) == 0
    assert world.exists() == before
    would = [line for line in lines if line.startswith("would delete")]
    assert len(would) == len(world.orphans)
    assert all(any(rid in line for line in would) for _, rid in world.orphans)
    assert f"{len(world.orphans)} orphaned resource(s) in us-east-1 would be deleted" in lines[-1]
    assert "nothing was deleted" in lines[-1]


def test_reap_deletes_the_orphans_and_keeps_the_rest(aws: Aws, tmp_path: Path) -> None:
    world = World(aws, tmp_path / ".trainboard").plant()
    lines: list[str] = []
    assert reap(world.root, "us-east-1", dry_run=False, echo=lines.append) == 0, lines
    left = world.exists()
    assert not left & world.orphans
    assert world.kept | world.untouchable <= left
    assert lines[-1] == f"{len(world.orphans)} orphaned resource(s) in us-east-1 deleted, {len(world.kept)} kept"
    # Again: nothing left to do.
    assert find_orphans(world.ec2, world.store, dt.datetime.now(dt.UTC)) == []
    assert delete_orphans(world.ec2, []) == []


def test_the_reap_command_dry_run_then_delete(aws: Aws, tmp_path: Path) -> None:
    from tests.conftest import git, run_cli
    from trainboard.backend.exitcodes import ExitCode

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    world = World(aws, repo / ".trainboard").plant()
    before = world.exists()
    dry = run_cli(["reap", "--dry-run", "--region", "us-east-1"], cwd=repo)
    assert dry.returncode == ExitCode.OK, dry.stdout + dry.stderr
    assert world.exists() == before
    assert f"{len(world.orphans)} orphaned resource(s) in us-east-1 would be deleted" in dry.stdout
    real = run_cli(["reap", "--region", "us-east-1"], cwd=repo)
    assert real.returncode == ExitCode.OK, real.stdout + real.stderr
    left = world.exists()
    assert not left & world.orphans and world.kept | world.untouchable <= left

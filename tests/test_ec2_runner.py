"""The ec2 runner against moto's server, with a real sshd standing in for the instance.

Every test ends with AWS holding nothing tagged with its run id: no live
instance, no key pair, no security group.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import aws_support
from tests.aws_support import Aws, BootEmulator, Fault, ImdsServer, run_resources, sequential_round_trips, throttling
from tests.sshd_support import free_port
from trainboard.backend import events as ev
from trainboard.backend.config import Ec2RunnerConfig
from trainboard.backend.runners import JobSpec, PreflightError, RunnerError
from trainboard.backend.runners.ec2 import (
    KEY_FILE,
    RESOURCES_FILE,
    SSH_ADDRESS_ENV,
    TAG_EXPIRES,
    TAG_OWNER,
    TAG_RUN,
    Ec2Runner,
    cloud_config,
    watchdog_script,
)

moto_server = aws_support.moto_server  # fixtures
aws = aws_support.aws

USER = os.environ.get("USER") or "root"


def make_config(tmp: Path, **settings: Any) -> Ec2RunnerConfig:
    base: dict[str, Any] = {
        "kind": "ec2", "region": "us-east-1", "instance_type": "t3.micro", "user": _user(),
        "ssh_cidr": "198.51.100.7/32", "remote_dir": str(tmp / "remote"), "connect_timeout": 5,
        "reconnect_timeout": 10, "tags": {"team": "ml"},
    }
    base.update(settings)
    return Ec2RunnerConfig.model_validate(base)


def _user() -> str:
    import getpass

    return getpass.getuser()


class Harness:
    """A runner, its SSH port (where the boot emulator's sshd listens) and the events it published."""

    def __init__(self, tmp: Path, aws: Aws, monkeypatch: pytest.MonkeyPatch, run_id: str, **settings: Any) -> None:
        self.port = free_port()
        monkeypatch.setenv(SSH_ADDRESS_ENV, f"127.0.0.1:{self.port}")
        self.tmp = tmp
        self.aws = aws
        self.run_id = run_id
        self.run_dir = tmp / "runs" / run_id
        self.runner = Ec2Runner(make_config(tmp, **settings), self.run_dir, run_id)
        self.runner.ssh_ready_timeout = 15
        self.events: list[ev.Event] = []
        self.runner.notify = self.events.append
        self.boot: BootEmulator | None = None

    def emulate(self, mode: str = "boot", imds_url: str | None = None) -> BootEmulator:
        self.boot = BootEmulator(self.aws.moto.url, self.port, self.tmp / "instances", mode=mode,
                                 imds_url=imds_url).start()
        return self.boot

    def steps(self) -> list[str]:
        return [dict(e.details).get("step", "") for e in self.events if isinstance(e, ev.RunnerChanged)]

    def notices(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, ev.Notice)]

    def left(self) -> dict[str, list[str]]:
        return run_resources(self.aws, self.run_id)

    def close(self) -> None:
        if self.boot is not None:
            self.boot.stop()


@pytest.fixture
def harness(tmp_path: Path, aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made: list[Harness] = []

    def make(run_id: str = "20250101-000000-abcd", **settings: Any) -> Harness:
        h = Harness(tmp_path, aws, monkeypatch, run_id, **settings)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


NOTHING = {"instances": [], "key_pairs": [], "security_groups": []}


async def wait_exit(runner: Ec2Runner, handle: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = await runner.status(handle)
        if not status.running:
            return status
        assert time.monotonic() < deadline, "the job did not end"
        await asyncio.sleep(0.1)


class CheckIp:
    """A local stand-in for checkip.amazonaws.com."""

    def __init__(self, answer: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the whole life


async def test_provision_run_a_job_and_teardown_leaves_nothing(harness: Any, aws: Aws, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    checkip = CheckIp("203.0.113.7\n")
    monkeypatch.setattr("trainboard.backend.runners.ec2.preflight.CHECKIP_URL", checkip.url)
    h = harness(ssh_cidr="auto", disk_gb=40, max_duration_minutes=60, owner="")
    h.emulate()
    aws.proxy.latency = 0.05
    try:
        host = await h.runner.provision()
    finally:
        checkip.close()
    ready_calls = list(aws.proxy.calls)
    aws.proxy.latency = 0.0
    details = dict(host.details)
    instance_id = details["instance_id"]
    assert host.kind == "ec2"
    assert details["instance_type"] == "t3.micro" and details["region"] == "us-east-1"
    assert details["market"] == "on-demand" and float(details["hourly_price"]) == pytest.approx(0.0104)
    assert "launching a t3.micro (on-demand)" in h.steps() and any(s.startswith("waiting for SSH") for s in h.steps())

    # Waves, not a queue: at most 8 calls had to wait for one another up to SSH-ready.
    assert sequential_round_trips(ready_calls) <= 8, [(c.action, c.dry_run) for c in ready_calls]
    assert {"RunInstances", "ImportKeyPair", "CreateSecurityGroup"} <= set(aws.proxy.actions(dry_run=True))

    ec2 = aws.client("ec2")
    inst = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags[TAG_RUN] == h.run_id and tags["Name"] == f"trainboard-{h.run_id}" and tags["team"] == "ml"
    assert tags[TAG_OWNER].startswith("arn:aws:")  # the caller's identity (moto's)
    assert tags[TAG_EXPIRES].endswith("Z") and tags[TAG_EXPIRES] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert inst["MetadataOptions"]["HttpTokens"] == "required"  # IMDSv2 only
    assert inst["ImageId"] == aws.client("ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")["Parameter"]["Value"]
    behaviour = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior")
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    volumes = ec2.describe_volumes(Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [h.run_id]}])["Volumes"]
    assert [v["Size"] for v in volumes] == [40]
    key = ec2.describe_key_pairs(KeyNames=[f"trainboard-{h.run_id}"])["KeyPairs"][0]
    assert {t["Key"]: t["Value"] for t in key["Tags"]}[TAG_RUN] == h.run_id
    group = ec2.describe_security_groups(GroupIds=[inst["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
    assert group["GroupName"] == f"trainboard-{h.run_id}"
    assert [(p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]]) for p in group["IpPermissions"]] == [
        (22, 22, ["203.0.113.7/32"])]

    # The user data: our host key, our client key, the watchdog, the absolute run folder.
    user_data = base64.b64decode(ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
                                 ["UserData"]["Value"]).decode()
    cloud = yaml.safe_load(user_data)
    assert user_data.startswith("#cloud-config\n") and cloud["ssh_deletekeys"] is True
    state = h.runner.state()
    assert cloud["ssh_keys"]["ed25519_public"].split()[:2] == state["host_key"].split()[:2]
    assert "OPENSSH PRIVATE KEY" in cloud["ssh_keys"]["ed25519_private"]
    assert cloud["ssh_authorized_keys"][0].startswith("ssh-ed25519 ")
    watchdog = cloud["write_files"][0]["content"]
    assert f"{tmp_path}/remote/{h.run_id}" in watchdog and "MAX_SECONDS=3600" in watchdog
    assert "/latest/api/token" in watchdog and "spot/instance-action" in watchdog

    # The trail on disk names everything that exists.
    trail = json.loads((h.run_dir / RESOURCES_FILE).read_text())
    assert trail["instance_id"] == instance_id and trail["security_group_id"] == group["GroupId"]
    assert trail["key_name"] == f"trainboard-{h.run_id}"
    key_file = h.run_dir / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600

    # A real job, over the SSH runner, on the "instance".
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.sh").write_text("echo training on $(hostname); echo done; exit 3\n")
    await h.runner.sync(src, ["train.sh"], {"params.yaml": b"epochs: 1\n"})
    handle = await h.runner.start(JobSpec(name="job", commands=("bash train.sh",), workdir="."))
    status = await wait_exit(h.runner, handle)
    assert status.exit_code == 3 and status.interruption == ""
    log = await h.runner.tail(handle, 0, 1 << 20)
    assert b"done" in log
    assert await h.runner.fetch("params.yaml", tmp_path / "fetched.yaml")

    # Detach leaves the instance; a new runner (a new trainboard process) reattaches from the record.
    recorded = json.loads(json.dumps(h.runner.state()))
    await h.runner.detach()
    assert h.left()["instances"] == [instance_id]
    again = Ec2Runner(h.runner.config, h.run_dir, h.run_id)
    again.notify = h.events.append
    host2 = await again.reattach(recorded)
    assert dict(host2.details)["instance_id"] == instance_id and host2.workspace == host.workspace
    assert (await again.status(handle)).exit_code == 3

    await again.teardown()
    assert h.left() == NOTHING
    assert not key_file.exists()
    assert not [n for n in h.notices() if "had ended" in n]  # we ended it
    await again.teardown()  # again: nothing to do, no error
    assert h.left() == NOTHING


async def test_an_impostor_host_key_fails_provision_and_teardown_leaves_nothing(harness: Any) -> None:
    h = harness()
    h.emulate(mode="wrong-host-key")
    started = time.monotonic()
    with pytest.raises(RunnerError, match="host key"):
        await h.runner.provision()
    assert time.monotonic() - started < 10  # refused at once, not retried until the timeout
    await h.runner.teardown()
    assert h.left() == NOTHING


# --------------------------------------------------------------------------- AWS answers badly


async def test_throttling_on_the_first_six_ec2_calls_is_survived(harness: Any, aws: Aws) -> None:
    fault = throttling(6)
    aws.proxy.faults.append(fault)
    h = harness()
    h.emulate()
    host = await h.runner.provision()
    assert fault.hits == 6
    assert dict(host.details)["instance_id"]
    await h.runner.teardown()
    assert h.left() == NOTHING


async def test_an_instance_profile_gives_the_instance_its_role(harness: Any, aws: Aws) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName="trainboard-runner", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    profile = iam.create_instance_profile(InstanceProfileName="trainboard-runner")["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName="trainboard-runner", RoleName="trainboard-runner")
    h = harness(instance_profile="trainboard-runner")
    h.emulate()
    host = await h.runner.provision()
    ec2 = aws.client("ec2")
    (reservation,) = ec2.describe_instances(InstanceIds=[dict(host.details)["instance_id"]])["Reservations"]
    assert reservation["Instances"][0]["IamInstanceProfile"]["Arn"] == profile["Arn"]
    await h.runner.teardown()
    assert h.left() == NOTHING


def _no_spot_capacity() -> Fault:
    return Fault("RunInstances", contains="MarketType=spot", unless="DryRun=true", status=500,
                 code="InsufficientInstanceCapacity",
                 message="We currently do not have sufficient t3.micro capacity in the Availability Zone.")


async def test_no_spot_capacity_falls_back_to_on_demand_when_allowed(harness: Any, aws: Aws) -> None:
    aws.proxy.faults.append(_no_spot_capacity())
    h = harness(market="spot", fallback_to_on_demand=True)
    h.emulate()
    host = await h.runner.provision()
    details = dict(host.details)
    assert details["market"] == "on-demand"
    assert float(details["hourly_price"]) == pytest.approx(0.0104)  # the on-demand table, not the spot price
    assert any("on-demand" in n and "fallback_to_on_demand" in n for n in h.notices())
    inst = aws.client("ec2").describe_instances(InstanceIds=[details["instance_id"]])
    assert "InstanceLifecycle" not in inst["Reservations"][0]["Instances"][0]
    await h.runner.teardown()
    assert h.left() == NOTHING


async def test_no_spot_capacity_without_fallback_names_the_setting_and_leaves_nothing(harness: Any,
                                                                                      aws: Aws) -> None:
    aws.proxy.faults.append(_no_spot_capacity())
    h = harness(market="spot", max_price=0.5)
    with pytest.raises(RunnerError, match="fallback_to_on_demand: true"):
        await h.runner.provision()
    launches = [a for a in aws.proxy.actions(dry_run=False) if a == "RunInstances"]
    assert launches == ["RunInstances"]  # capacity errors are not retried by botocore
    await h.runner.teardown()
    assert h.left() == NOTHING


async def test_missing_permissions_are_a_preflight_error_and_nothing_is_created(harness: Any, aws: Aws) -> None:
    for action in ("RunInstances", "ImportKeyPair"):
        aws.proxy.faults.append(Fault(action, contains="DryRun=true", status=403, code="UnauthorizedOperation",
                                      message="You are not authorized to perform this operation."))
    h = harness()
    with pytest.raises(PreflightError) as caught:
        await h.runner.provision()
    message = str(caught.value)
    assert "ec2:RunInstances" in message and "ec2:ImportKeyPair" in message
    assert "ec2:CreateSecurityGroup" not in message and "Nothing was created" in message
    creating = {"RunInstances", "ImportKeyPair", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress"}
    assert not creating & set(aws.proxy.actions(dry_run=False))
    await h.runner.teardown()
    assert h.left() == NOTHING


async def test_ssh_cidr_auto_without_an_answer_says_to_set_it(harness: Any, aws: Aws,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainboard.backend.runners.ec2.preflight.CHECKIP_URL", f"http://127.0.0.1:{free_port()}/")
    h = harness(ssh_cidr="auto")
    with pytest.raises(PreflightError, match="set runner.ssh_cidr"):
        await h.runner.provision()
    assert "CreateSecurityGroup" not in aws.proxy.actions(dry_run=False)
    await h.runner.teardown()
    assert h.left() == NOTHING


async def test_no_credentials_is_said_once_with_the_fix_and_creates_nothing(harness: Any, aws: Aws,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path) -> None:
    h = harness()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(PreflightError) as caught:
        await h.runner.provision()
    message = str(caught.value)
    assert message.count("AWS is not configured") == 1 and "aws configure" in message
    await h.runner.teardown()
    assert h.left() == NOTHING


# --------------------------------------------------------------------------- cancelled half-way


@pytest.mark.parametrize("point", ["ImportKeyPair", "CreateSecurityGroup", "RunInstances", "ssh"])
async def test_teardown_after_provision_is_cancelled_leaves_nothing(harness: Any, aws: Aws, point: str) -> None:
    h = harness()
    h.emulate(mode="never")  # an instance that never answers SSH
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(h.runner.provision())

    def cancel(call: Any) -> None:
        if not call.dry_run:
            loop.call_soon_threadsafe(task.cancel)

    if point == "ssh":
        h.runner.notify = lambda e: (h.events.append(e), e.details and dict(e.details).get("step", "").startswith(
            "waiting for SSH") and loop.call_later(0.3, task.cancel))
    else:
        aws.proxy.after[point] = [cancel]
    with pytest.raises(asyncio.CancelledError):
        await task
    if point in ("RunInstances", "ssh"):
        assert run_resources(aws, h.run_id)["instances"], "the instance was launched before the cancel"
    await h.runner.teardown()
    assert h.left() == NOTHING
    assert not (h.run_dir / KEY_FILE).exists()


# --------------------------------------------------------------------------- the instance's watchdog


async def test_a_spot_interruption_reaches_status_and_sigterms_the_job(harness: Any, aws: Aws) -> None:
    imds = ImdsServer()
    h = harness(market="spot")
    boot = h.emulate(imds_url=imds.url)
    try:
        host = await h.runner.provision()
        assert dict(host.details)["market"] == "spot"
        assert float(dict(host.details)["hourly_price"]) == pytest.approx(0.00001)  # moto's spot price
        job = "trap 'echo got SIGTERM; exit 143' TERM; echo started; while :; do sleep 0.1; done"
        handle = await h.runner.start(JobSpec(name="job", commands=(job,), workdir="."))
        deadline = time.monotonic() + 10
        while b"started" not in await h.runner.tail(handle, 0, 4096):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (await h.runner.status(handle)).running
        notice = imds.interrupt("terminate")
        status = await wait_exit(h.runner, handle, timeout=15)
        assert notice in status.interruption
        assert status.exit_code == 143
        assert b"got SIGTERM" in await h.runner.tail(handle, 0, 1 << 16)
        # The watchdog spoke IMDSv2 only: a token first, then the token on every read.
        assert any(m == "PUT" and p == "/latest/api/token" for m, p, _ in imds.requests)
        assert not any(status == 401 for _, _, status in imds.requests)
        booted = boot.wait_booted()
        assert not booted.shutdown_marker.exists()  # interrupted, not timed out
    finally:
        imds.close()
        await h.runner.teardown()
    assert h.left() == NOTHING


def _run_watchdog(tmp: Path, run_dir: Path, max_seconds: int, idle_seconds: int) -> tuple[Path, float]:
    script = tmp / "watchdog.sh"
    script.write_text(watchdog_script(str(run_dir), _user(), max_seconds, idle_seconds))
    marker = tmp / "shutdown-requested"
    env = dict(os.environ, TRAINBOARD_IMDS_URL=f"http://127.0.0.1:{free_port()}",
               TRAINBOARD_SHUTDOWN_CMD=f"touch {shlex.quote(str(marker))}", TRAINBOARD_WATCHDOG_POLL="0.1",
               TRAINBOARD_WATCHDOG_STATE=str(tmp / "state"))
    started = time.monotonic()
    subprocess.run(["bash", str(script)], env=env, timeout=20, check=True, capture_output=True)
    return marker, time.monotonic() - started


def test_the_watchdog_shuts_down_after_max_duration(tmp_path: Path) -> None:
    marker, took = _run_watchdog(tmp_path, tmp_path / "run", max_seconds=2, idle_seconds=3600)
    assert marker.exists() and 1 <= took < 6  # whole seconds: 1 to 2 s


def test_the_watchdog_shuts_down_when_idle_after_the_job_ended(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "job.exit").write_text("0\n")
    marker, took = _run_watchdog(tmp_path, run_dir, max_seconds=3600, idle_seconds=1)
    assert marker.exists() and took < 5


def test_the_user_data_templates_are_filled_in_whole() -> None:
    """The shipped watchdog and cloud-config templates leave no placeholder or empty value behind."""
    script = watchdog_script("/home/ubuntu/runs/r 1", "ubuntu", 3600, 600)
    assert not re.search(r"@[A-Z_]+@", script)  # no @NAME@ placeholder left
    assert "RUN_DIR=${TRAINBOARD_RUN_DIR:-'/home/ubuntu/runs/r 1'}" in script and "IDLE_SECONDS=600" in script
    for key in ("ssh-ed25519 AAAAclient", None):
        cloud = yaml.safe_load(cloud_config(host_private="private", host_public="ssh-ed25519 AAAAhost",
                                            authorized_key=key, watchdog=script))
        assert cloud["ssh_keys"] == {"ed25519_private": "private", "ed25519_public": "ssh-ed25519 AAAAhost"}
        assert cloud.get("ssh_authorized_keys") == ([key] if key else None)
        assert cloud["write_files"][0]["content"] == script

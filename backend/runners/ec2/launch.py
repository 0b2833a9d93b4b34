"""Waves 2 to 4 of provisioning: what is created, and the wait for the instance to run.

2. ``ImportKeyPair`` (the run's key) and ``CreateSecurityGroup``, together;
3. ``AuthorizeSecurityGroupIngress`` (tcp/22 from ``ssh_cidr`` only) and ``RunInstances``,
   together; a spot launch that meets no capacity falls back to on-demand when allowed;
4. ``DescribeInstances`` with backoff until the instance runs with an address.

Each resource is written to the trail the moment it is asked for or exists.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from trainboard.backend import events as ev
from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ec2.context import Ec2Context, Plan, tag_list
from trainboard.backend.runners.ec2.errors import SPOT_FALLBACK_CODES, error_code, error_message
from trainboard.backend.runners.ec2.userdata import cloud_config, watchdog_script

if TYPE_CHECKING:
    from trainboard.backend.config import Ec2RunnerConfig

_NO_CAPACITY = ("InsufficientInstanceCapacity", "InsufficientCapacity")


async def gather_or_raise(tasks: list[Any]) -> list[Any]:
    """Await all (none is left running behind our back), then raise the first failure."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def create_access(ctx: Ec2Context, plan: Plan) -> list[str]:
    """Wave 2: the run's key pair and security group, together. The group ids to launch in."""
    cfg = ctx.config
    tasks = []
    if cfg.key_name is None:
        tasks.append(ctx.call(lambda: _import_key(ctx, plan), creates=True))
    if not cfg.security_group_ids:
        tasks.append(ctx.call(lambda: _create_group(ctx, plan), creates=True))
    await gather_or_raise(tasks)
    if cfg.security_group_ids:
        return list(cfg.security_group_ids)
    return [ctx.trail["security_group_id"]]


def _import_key(ctx: Ec2Context, plan: Plan) -> None:
    name = ctx.key_name()
    ctx.trail.remember(key_name=name, key_created=True)  # before: a lost answer still leaves the name
    try:
        resp = ctx.aws.ec2.import_key_pair(
            KeyName=name, PublicKeyMaterial=(plan.client_public or "").encode(),
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(plan.tags)}],
        )
    except ClientError as exc:
        raise RunnerError(f"importing the key pair {name} failed: {error_message(exc)}") from None
    ctx.trail.remember(key_pair_id=resp.get("KeyPairId"))


def _create_group(ctx: Ec2Context, plan: Plan) -> None:
    name = ctx.group_name()
    ctx.trail.remember(security_group_name=name)
    params: dict[str, Any] = {
        "GroupName": name,
        "Description": f"trainboard run {ctx.run_id}: SSH from {plan.cidr}",
        "TagSpecifications": [{"ResourceType": "security-group", "Tags": tag_list(plan.tags)}],
    }
    if plan.vpc_id:
        params["VpcId"] = plan.vpc_id
    try:
        resp = ctx.aws.ec2.create_security_group(**params)
    except ClientError as exc:
        raise RunnerError(f"creating the security group {name} failed: {error_message(exc)}") from None
    ctx.trail.remember(security_group_id=resp["GroupId"])


def _authorize(ctx: Ec2Context, group_id: str, cidr: str) -> None:
    network = ipaddress.ip_network(cidr, strict=False)
    ranges = ({"Ipv6Ranges": [{"CidrIpv6": str(network), "Description": "trainboard SSH"}]}
              if network.version == 6 else
              {"IpRanges": [{"CidrIp": str(network), "Description": "trainboard SSH"}]})
    try:
        ctx.aws.ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}],
        )
    except ClientError as exc:
        if error_code(exc) != "InvalidPermission.Duplicate":
            raise RunnerError(f"opening port 22 to {cidr} failed: {error_message(exc)}") from None


def launch_params(cfg: Ec2RunnerConfig, *, image_id: str, tags: dict[str, str], spot: bool,
                  root_device: str | None, group_ids: list[str], user_data: str | None,
                  token: str | None) -> dict[str, Any]:
    """RunInstances' parameters (also for its DryRun, without a root device, user data or token)."""
    tag_specs = [{"ResourceType": "instance", "Tags": tag_list(tags)},
                 {"ResourceType": "volume", "Tags": tag_list(tags)}]
    if spot:
        tag_specs.append({"ResourceType": "spot-instances-request", "Tags": tag_list(tags)})
    params: dict[str, Any] = {
        "ImageId": image_id,
        "InstanceType": cfg.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "TagSpecifications": tag_specs,
    }
    if root_device:
        params["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": {
            "VolumeSize": cfg.disk_gb, "VolumeType": "gp3", "DeleteOnTermination": True}}]
    if group_ids:
        params["SecurityGroupIds"] = group_ids
    if cfg.subnet_id:
        params["SubnetId"] = cfg.subnet_id
    if cfg.key_name:
        params["KeyName"] = cfg.key_name
    if cfg.instance_profile:
        key = "Arn" if cfg.instance_profile.startswith("arn:") else "Name"
        params["IamInstanceProfile"] = {key: cfg.instance_profile}
    if user_data is not None:
        params["UserData"] = user_data
    if token:
        params["ClientToken"] = token
    if spot:
        options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if cfg.max_price is not None:
            options["MaxPrice"] = f"{cfg.max_price:g}"
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    return params


def user_data(ctx: Ec2Context, plan: Plan) -> str:
    cfg = ctx.config
    run_folder = f"{ctx.runs_dir()}/{ctx.run_id}"
    script = watchdog_script(run_folder, cfg.user, round(cfg.max_duration_minutes * 60),
                             round(cfg.idle_timeout_minutes * 60))
    return cloud_config(host_private=plan.host_private, host_public=plan.host_public,
                        authorized_key=plan.client_public, watchdog=script)


async def authorize_and_launch(ctx: Ec2Context, plan: Plan, group_ids: list[str]) -> dict[str, Any]:
    """Wave 3: open port 22 on our group and launch, together (the rule is in place long before
    sshd). RunInstances' answer about the instance."""
    tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(_launch(ctx, plan, group_ids))]
    if not ctx.config.security_group_ids:
        tasks.append(ctx.call(lambda: _authorize(ctx, group_ids[0], plan.cidr), creates=True))
    results = await gather_or_raise(tasks)
    return dict(results[0])


def _run_instance(ctx: Ec2Context, plan: Plan, group_ids: list[str], data: str, spot: bool) -> dict[str, Any]:
    params = launch_params(ctx.config, image_id=plan.image_id, tags=plan.tags, spot=spot,
                           root_device=plan.root_device, group_ids=group_ids,
                           user_data=data, token=f"{ctx.run_id}-{'spot' if spot else 'od'}")
    ctx.trail.remember(launch_attempted=True, market="spot" if spot else "on-demand")
    resp = ctx.aws.ec2.run_instances(**params)
    instance = resp["Instances"][0]
    ctx.trail.remember(instance_id=instance["InstanceId"],
                       spot_request_id=instance.get("SpotInstanceRequestId"),
                       availability_zone=(instance.get("Placement") or {}).get("AvailabilityZone"))
    return dict(instance)


async def _launch(ctx: Ec2Context, plan: Plan, group_ids: list[str]) -> dict[str, Any]:
    cfg = ctx.config
    data = user_data(ctx, plan)
    spot = cfg.market == "spot"
    try:
        return await ctx.call(lambda: _run_instance(ctx, plan, group_ids, data, spot), creates=True)
    except ClientError as exc:
        code, message = error_code(exc), error_message(exc)
        if not (spot and code in SPOT_FALLBACK_CODES):
            if code in _NO_CAPACITY:
                raise RunnerError(
                    f"EC2 has no {cfg.instance_type} capacity right now ({message}); set runner.instance_type "
                    "to another type, runner.subnet_id to a subnet in another zone, or try again later"
                ) from None
            raise RunnerError(f"launching the instance failed: {message}") from None
        if not cfg.fallback_to_on_demand:
            hint = " or raise runner.max_price" if code == "SpotMaxPriceTooLow" else ""
            raise RunnerError(
                f"no spot {cfg.instance_type} could be launched ({message}); set "
                f"runner.fallback_to_on_demand: true to launch on-demand instead{hint}, "
                "or choose another runner.instance_type or region"
            ) from None
        ctx.notify(ev.Notice(f"spot {cfg.instance_type} unavailable ({code}): launching on-demand "
                             "instead (runner.fallback_to_on_demand)"))
    try:
        return await ctx.call(lambda: _run_instance(ctx, plan, group_ids, data, False), creates=True)
    except ClientError as exc:
        raise RunnerError(f"launching the on-demand fallback failed too: {error_message(exc)}") from None


async def wait_running(ctx: Ec2Context, launched: dict[str, Any], timeout: float) -> str:
    """Poll DescribeInstances with backoff until the instance runs with an address; the address."""
    instance_id = ctx.trail["instance_id"]
    instance = launched
    delay, deadline = 0.5, time.monotonic() + timeout
    while True:
        state = (instance.get("State") or {}).get("Name")
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
        if state == "running" and address:
            ctx.trail.remember(address=address, availability_zone=(instance.get("Placement") or {}).get(
                "AvailabilityZone", ctx.trail.get("availability_zone")))
            return str(address)
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            reason = (instance.get("StateReason") or {}).get("Message") or "no reason given"
            raise RunnerError(f"instance {instance_id} is {state} before it was ready: {reason}")
        if time.monotonic() > deadline:
            raise RunnerError(f"instance {instance_id} was not running after "
                              f"{timeout:.0f} s (state {state or 'unknown'})")
        if state is not None:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
        try:
            resp = await ctx.call(lambda: ctx.aws.ec2.describe_instances(InstanceIds=[instance_id]))
            instance = resp["Reservations"][0]["Instances"][0]
        except (ClientError, IndexError, KeyError) as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound" and not isinstance(exc, (IndexError, KeyError)):
                raise RunnerError(f"describing instance {instance_id} failed: {error_message(exc)}") from None
            instance = {"State": {"Name": "pending"}}  # not visible yet (eventual consistency)

"""Wave 1 of provisioning: everything that reads, and a DryRun of everything that creates.

All at once: ``ssm:GetParameter`` (an ``ssm:`` image), ``sts:GetCallerIdentity`` (the owner
tag), ``DescribeSpotPriceHistory`` (spot), ``DescribeSubnets`` (a subnet), this machine's
public address (``ssh_cidr: auto``), and DryRun calls of ``CreateSecurityGroup`` and
``ImportKeyPair``; as soon as the image id is known, ``DescribeImages`` (its root device)
and a DryRun ``RunInstances``. The run's keys are made meanwhile. A missing IAM permission
is a :class:`PreflightError` naming the actions, raised before anything exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from trainboard.backend import events as ev
from trainboard.backend.runners.base import PreflightError
from trainboard.backend.runners.ec2.context import KEY_FILE, TAG_EXPIRES, Ec2Context, Plan
from trainboard.backend.runners.ec2.errors import DENIED_CODES, error_code, error_message
from trainboard.backend.runners.ec2.launch import launch_params

CHECKIP_URL = "https://checkip.amazonaws.com"
# A fixed, valid public key for the DryRun of ImportKeyPair (nothing is imported).
_DRY_RUN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAtGeJ7ZdeZN2cId9uxr3e3CS4lwTj/YxP6S7QTtSciW trainboard-dry-run"
# The checks whose other errors are a problem to report (those of the rest are bugs).
_REPORTED = ("image", "root", "launch", "subnet", "dry_group", "dry_key")

Check = tuple[str, Any, str, str]  # name, awaitable, IAM action(s) it needs, the setting its errors point at


def detect_public_cidr(url: str | None = None, timeout: float = 5.0) -> str:
    """This machine's public IPv4 address as a /32, asked over HTTPS; PreflightError when unknown."""
    url = url or CHECKIP_URL
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a fixed https URL)
            text = response.read(64).decode("ascii", "replace").strip()
        address = ipaddress.IPv4Address(text)
    except (OSError, ValueError) as exc:
        raise PreflightError(
            f"runner.ssh_cidr is auto, but this machine's public IPv4 address could not be found from {url} "
            f"({exc}); set runner.ssh_cidr to the address block allowed to reach port 22, "
            "e.g. ssh_cidr: 203.0.113.7/32"
        ) from None
    return f"{address}/32"


def make_keys(ctx: Ec2Context) -> tuple[str | None, str, str]:
    """The per-run client key (saved 0600 in the run folder) and the instance's host key."""
    import asyncssh

    client_public = None
    if ctx.config.key_name is None:
        client = asyncssh.generate_private_key("ssh-ed25519", comment=f"trainboard-{ctx.run_id}")
        path = ctx.run_dir / KEY_FILE
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(client.export_private_key("openssh"))
        ctx.trail.remember(private_key=str(path))
        client_public = client.export_public_key("openssh").decode().strip()
    host = asyncssh.generate_private_key("ssh-ed25519", comment=f"trainboard-{ctx.run_id}-host")
    host_public = " ".join(host.export_public_key("openssh").decode().split()[:2])
    ctx.trail.remember(host_key=host_public)
    return client_public, host.export_private_key("openssh").decode(), host_public


async def preflight(ctx: Ec2Context) -> Plan:
    """Wave 1: everything that reads, and DryRun of everything that creates. Creates nothing."""
    checks = _Checks(ctx).all()
    results = await asyncio.gather(*(c[1] for c in checks), return_exceptions=True)
    out = _sort_out(ctx, checks, results)
    plan = Plan(image_id=out["image"], root_device=out["root"], owner=out["owner"], vpc_id=out["subnet"][0],
                cidr=out.get("cidr", ""), spot_prices=out.get("spot", {}))
    plan.tags = ctx.tags(plan.owner)
    plan.client_public, plan.host_private, plan.host_public = out["keys"]
    ctx.trail.remember(image_id=plan.image_id, owner=plan.owner, expires_at=plan.tags[TAG_EXPIRES],
                       ssh_cidr=plan.cidr or None)
    return plan


class _Checks:
    """Wave 1's calls. The image, owner and subnet start at once: other checks wait on them."""

    def __init__(self, ctx: Ec2Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.ec2 = ctx.aws.ec2
        self.image_task = asyncio.ensure_future(self.image())
        self.owner_task = asyncio.ensure_future(self.owner())
        self.subnet_task = asyncio.ensure_future(self.subnet())

    def all(self) -> list[Check]:
        cfg = self.cfg
        checks: list[Check] = [
            ("image", self.image_task, "ssm:GetParameter", "runner.ami"),
            ("owner", self.owner_task, "sts:GetCallerIdentity", "runner.owner"),
            ("subnet", self.subnet_task, "ec2:DescribeSubnets", "runner.subnet_id"),
            ("root", self.describe_image(), "ec2:DescribeImages", "runner.ami"),
            ("launch", self.dry_launch(), "ec2:RunInstances (and ec2:CreateTags on the instance and volume)",
             "runner.instance_type / runner.ami / runner.subnet_id / runner.security_group_ids / runner.key_name"),
            ("keys", self.ctx.call(lambda: make_keys(self.ctx)), "", ""),
        ]
        if not cfg.security_group_ids:
            checks.append(("cidr", self.cidr(), "", "runner.ssh_cidr"))
            checks.append(("dry_group", self.dry_group(), "ec2:CreateSecurityGroup (and ec2:CreateTags)",
                           "runner.subnet_id"))
        if cfg.key_name is None:
            checks.append(("dry_key", self.dry(self.ec2.import_key_pair, KeyName=self.ctx.key_name(),
                                               PublicKeyMaterial=_DRY_RUN_KEY.encode()),
                           "ec2:ImportKeyPair (and ec2:CreateTags)", "runner.key_name"))
        if cfg.market == "spot":
            checks.append(("spot", self.spot_prices(), "ec2:DescribeSpotPriceHistory", "runner.instance_type"))
        return checks

    def call(self, fn: Callable[..., Any], **params: Any) -> asyncio.Future[Any]:
        return self.ctx.call(lambda: fn(**params))

    async def image(self) -> str:
        if self.cfg.ami.startswith("ssm:"):
            name = self.cfg.ami.removeprefix("ssm:")
            resp = await self.call(self.ctx.aws.ssm.get_parameter, Name=name)
            return str(resp["Parameter"]["Value"])
        return self.cfg.ami

    async def owner(self) -> str:
        if self.cfg.owner:
            return self.cfg.owner
        return str((await self.call(self.ctx.aws.sts.get_caller_identity))["Arn"])

    async def subnet(self) -> tuple[str | None, str | None]:
        if not self.cfg.subnet_id:
            return None, None
        resp = await self.call(self.ec2.describe_subnets, SubnetIds=[self.cfg.subnet_id])
        sub = resp["Subnets"][0]
        return sub.get("VpcId"), sub.get("AvailabilityZone")

    async def describe_image(self) -> str:
        image_id = await self.image_task
        resp = await self.call(self.ec2.describe_images, ImageIds=[image_id])
        images = resp.get("Images") or []
        if not images:
            raise PreflightError(f"runner.ami: image {image_id} does not exist in {self.ctx.region} "
                                 "or is not visible to this account; set runner.ami to an image of this region")
        return str(images[0].get("RootDeviceName") or "/dev/xvda")

    async def dry_launch(self) -> None:
        image_id, who = await self.image_task, await self.owner_task
        params = launch_params(self.cfg, image_id=image_id, tags=self.ctx.tags(who), spot=self.cfg.market == "spot",
                               root_device=None, group_ids=list(self.cfg.security_group_ids),
                               user_data=None, token=None)
        await self.dry(self.ec2.run_instances, **params)

    async def dry(self, fn: Callable[..., Any], **params: Any) -> None:
        try:
            await self.call(fn, DryRun=True, **params)
        except ClientError as exc:
            if error_code(exc) != "DryRunOperation":
                raise

    async def dry_group(self) -> None:
        vpc_id, _ = await self.subnet_task
        await self.dry(self.ec2.create_security_group, GroupName=self.ctx.group_name(), Description="dry run",
                       **({"VpcId": vpc_id} if vpc_id else {}))

    async def spot_prices(self) -> dict[str, float]:
        resp = await self.call(self.ec2.describe_spot_price_history, InstanceTypes=[self.cfg.instance_type],
                               ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                               StartTime=dt.datetime.now(dt.UTC), MaxResults=100)
        prices: dict[str, float] = {}
        for item in resp.get("SpotPriceHistory", []):
            with contextlib.suppress(KeyError, ValueError):
                prices.setdefault(item["AvailabilityZone"], float(item["SpotPrice"]))
        return prices

    async def cidr(self) -> str:
        if self.cfg.ssh_cidr != "auto":
            return str(ipaddress.ip_network(self.cfg.ssh_cidr, strict=False))
        return await self.ctx.call(detect_public_cidr)


def _sort_out(ctx: Ec2Context, checks: list[Check], results: list[Any]) -> dict[str, Any]:
    """Each check's result by name; PreflightError naming every missing permission, else every problem."""
    out: dict[str, Any] = {}
    denied: list[str] = []
    problems: list[str] = []
    for (name, _, action, setting), result in zip(checks, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if not isinstance(result, BaseException):
            out[name] = result
        elif name == "spot":  # only the cost figure needs it
            ctx.notify(ev.Notice(f"spot price unknown ({error_message(result)}): "
                                 "the cost shown uses the on-demand table or runner.hourly_price"))
        elif error_code(result) in DENIED_CODES:
            denied.append(action)
        else:
            problems.append(_problem(name, setting, result))
    if denied:
        unique = list(dict.fromkeys(denied))
        raise PreflightError(
            "the AWS credentials lack permission for " + ", ".join(unique)
            + ". Nothing was created. Grant them (docs/ec2.md has the minimal IAM policy)."
        )
    if problems:  # every call that failed for one reason says it once
        raise PreflightError("EC2 preflight failed, nothing was created: " + "; ".join(dict.fromkeys(problems)))
    return out


def _problem(name: str, setting: str, result: BaseException) -> str:
    """A failed check's line for people; raises what is no problem of the setup (a bug)."""
    if isinstance(result, PreflightError):
        return str(result)
    if isinstance(result, (NoCredentialsError, NoRegionError)):
        return (f"AWS is not configured: {result} (set AWS_PROFILE, run `aws configure` or "
                "`aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if isinstance(result, ClientError):
        where = f" (check {setting})" if setting else ""
        return f"{error_message(result)}{where}"
    if name in _REPORTED:
        return f"{error_message(result)}"
    raise result

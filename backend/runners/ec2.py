"""The `ec2` runner: a fresh EC2 instance for the run, then the SSH runner on it.

``provision()`` keeps the number of *sequential* AWS round trips small by issuing
independent calls together (boto3 is blocking: each call runs in a worker thread):

1. preflight, all at once: ``ssm:GetParameter`` (an ``ssm:`` image), ``sts:GetCallerIdentity``
   (the owner tag), ``DescribeSpotPriceHistory`` (spot), ``DescribeSubnets`` (a subnet),
   this machine's public address (``ssh_cidr: auto``), and DryRun calls of
   ``CreateSecurityGroup`` and ``ImportKeyPair``; as soon as the image id is known,
   ``DescribeImages`` (its root device) and a DryRun ``RunInstances``. A missing IAM
   permission is a :class:`PreflightError` naming the actions, raised before anything exists;
2. ``ImportKeyPair`` (a per-run ed25519 key made here) and ``CreateSecurityGroup``;
3. ``AuthorizeSecurityGroupIngress`` (tcp/22 from ``ssh_cidr`` only) and ``RunInstances``;
4. ``DescribeInstances`` with backoff until the instance runs with an address; then SSH,
   verified with a host key made here and injected through the user data.

Every resource carries the tags ``trainboard:run-id``, ``trainboard:owner`` and
``trainboard:expires-at`` (which ``trainboard reap`` reads) and is written to
``<run_dir>/resources.json`` as soon as it exists, so even a crash leaves a trail.
The user data also installs a watchdog that shuts the instance down (which
terminates it) after ``max_duration_minutes``, ``idle_timeout_minutes`` after the
job ended, and that turns a spot interruption notice into an ``interruption``
file in the run folder plus SIGTERM to the job.

Test-only: ``TRAINBOARD_EC2_SSH_ADDRESS=host:port`` makes the SSH stage connect
there instead of the instance's address (tests point it at a local sshd standing
in for the instance). Never set it otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shlex
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3  # type: ignore[import-untyped]
import yaml
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)

from trainboard.backend import events as ev
from trainboard.backend.runners.base import (
    Capabilities,
    Host,
    JobHandle,
    JobSpec,
    JobStatus,
    Notify,
    PreflightError,
    RunnerError,
)

if TYPE_CHECKING:
    from trainboard.backend.config import Ec2RunnerConfig
    from trainboard.backend.runners.ssh import SshRunner

T = TypeVar("T")

TAG_RUN = "trainboard:run-id"
TAG_OWNER = "trainboard:owner"
TAG_EXPIRES = "trainboard:expires-at"
EXPIRY_MARGIN = dt.timedelta(minutes=30)  # expires-at = launch + max_duration + this

RESOURCES_FILE = "resources.json"  # the trail of what this run created, in the run folder
KEY_FILE = "ec2-key"  # the per-run client private key, in the run folder (0600)
SSH_ADDRESS_ENV = "TRAINBOARD_EC2_SSH_ADDRESS"  # test-only, see the module docstring
CHECKIP_URL = "https://checkip.amazonaws.com"
WATCHDOG_PATH = "/usr/local/sbin/trainboard-watchdog"

SSH_READY_TIMEOUT = 420.0  # boot + cloud-init until sshd answers with our host key
INSTANCE_READY_TIMEOUT = 600.0  # pending -> running with an address
TERMINATE_TIMEOUT = 300.0  # teardown: terminate -> terminated (the group can go only then)
GROUP_DELETE_TIMEOUT = 120.0  # teardown: retries of DependencyViolation
INFLIGHT_TIMEOUT = 90.0  # teardown waits this long for AWS calls already under way

# Approximate us-east-1 Linux on-demand list prices, USD an hour, for the live cost
# figure only. runner.hourly_price overrides them; spot runs use the spot price seen.
ON_DEMAND_PRICES: dict[str, float] = {
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "c5.xlarge": 0.17,
    "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006,
    "g6.xlarge": 0.805,
    "p3.2xlarge": 3.06,
}

# Launch errors that another market (on-demand) may not meet.
SPOT_FALLBACK_CODES = frozenset({
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
})
# Not transient: botocore retries 5xx answers, but capacity does not come back in seconds.
_NO_RETRY_CODES = SPOT_FALLBACK_CODES | {"InsufficientCapacity", "Unsupported"}
_DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
                           "UnauthorizedAccess"})
_GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "InvalidKeyPair.NotFound",
                         "InvalidSpotInstanceRequestID.NotFound"})


def aws_config() -> Config:
    """botocore settings for every trainboard client: standard retries that outlast throttling."""
    return Config(
        retries={"mode": "standard", "max_attempts": 10},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="trainboard",
    )


def aws_session(region: str | None) -> Any:
    """A boto3 session on the standard credential chain (AWS_ENDPOINT_URL is honoured by boto3)."""
    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    if not session.region_name:
        raise PreflightError("no AWS region: set runner.region in the config, or AWS_REGION / a profile's region")
    return session


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")
    return str(exc) or type(exc).__name__


def _fail_fast(response: Any = None, **_: Any) -> None:
    """A ``needs-retry`` hook: raise capacity errors at once instead of retrying them."""
    if response is not None and len(response) > 1 and isinstance(response[1], dict):
        parsed = response[1]
        if parsed.get("Error", {}).get("Code") in _NO_RETRY_CODES:
            raise ClientError(parsed, "RunInstances")
    return None


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def home_of(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def remote_runs_dir(remote_dir: str, user: str) -> str:
    """``remote_dir`` as an absolute path on the instance (``~`` is the login user's home)."""
    if remote_dir == "~" or remote_dir.startswith("~/"):
        return home_of(user) + remote_dir[1:].rstrip("/")
    if remote_dir.startswith("~"):
        name, _, rest = remote_dir[1:].partition("/")
        return (home_of(name) + ("/" + rest if rest else "")).rstrip("/")
    if not remote_dir.startswith("/"):
        return f"{home_of(user)}/{remote_dir}".rstrip("/")
    return remote_dir.rstrip("/") or "/"


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


# --------------------------------------------------------------------------- user data


WATCHDOG_SCRIPT = r"""
say() { echo "trainboard-watchdog: $*"; }
halt() {
  say "$1: shutting down"
  bash -c "$SHUTDOWN_CMD"
  exit 0
}
as_user() {  # files in the run folder belong to the login user
  if [ "$(id -u)" -eq 0 ] && [ "$RUN_USER" != root ] && command -v runuser >/dev/null 2>&1; then
    runuser -u "$RUN_USER" -- "$@"
  else
    "$@"
  fi
}
imds() {  # IMDSv2: a session token first, then the path; prints nothing unless 200
  local token
  token=$(curl -sf -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token") || return 1
  curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}
interrupt() {
  as_user mkdir -p "$RUN_DIR"
  printf 'spot interruption notice: %s\n' "$1" | as_user tee "$RUN_DIR/interruption.tmp" >/dev/null
  as_user mv -f "$RUN_DIR/interruption.tmp" "$RUN_DIR/interruption"
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    [ -e "${pidfile%.pid}.exit" ] && continue
    pid=$(cat "$pidfile" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    say "SIGTERM to job process group $pid"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
}
mkdir -p "$STATE_DIR"
# The deadline is fixed once, at first boot: a restarted watchdog keeps it.
[ -s "$STATE_DIR/deadline" ] || echo $(( $(date +%s) + MAX_SECONDS )) > "$STATE_DIR/deadline"
DEADLINE=$(cat "$STATE_DIR/deadline")
say "run folder $RUN_DIR, shutdown at $(date -u -d "@$DEADLINE" +%FT%TZ 2>/dev/null || echo "$DEADLINE")"
noticed=""
while :; do
  now=$(date +%s)
  [ "$now" -ge "$DEADLINE" ] && halt "max_duration_minutes reached"
  if [ -e "$RUN_DIR/job.exit" ]; then
    ended=$(stat -c %Y "$RUN_DIR/job.exit" 2>/dev/null || echo "$now")
    [ $(( now - ended )) -ge "$IDLE_SECONDS" ] && halt "idle for idle_timeout_minutes after the job ended"
  fi
  if [ -z "$noticed" ]; then
    action=$(imds spot/instance-action 2>/dev/null) || action=""
    if [ -n "$action" ]; then
      noticed=1
      say "spot interruption notice: $action"
      interrupt "$action"
    fi
  fi
  sleep "$POLL"
done
"""


def watchdog_script(run_dir: str, user: str, max_seconds: int, idle_seconds: int) -> str:
    """The instance's dead-man switch (bash). Its environment may override the IMDS URL,
    the shutdown command, the poll interval and its state folder (tests do, to run it safely)."""
    q = shlex.quote
    head = [
        "#!/bin/bash",
        "# trainboard watchdog: shuts the instance down (= terminates it) after max_duration_minutes,",
        "# or idle_timeout_minutes after the job ended; turns a spot interruption notice into",
        "# <run folder>/interruption and SIGTERM to the job's process group.",
        "set -u",
        f"RUN_DIR=${{TRAINBOARD_RUN_DIR:-{q(run_dir)}}}",
        f"RUN_USER={q(user)}",
        f"MAX_SECONDS={int(max_seconds)}",
        f"IDLE_SECONDS={int(idle_seconds)}",
        "IMDS=${TRAINBOARD_IMDS_URL:-http://169.254.169.254}",
        "SHUTDOWN_CMD=${TRAINBOARD_SHUTDOWN_CMD:-'shutdown -h now'}",
        "POLL=${TRAINBOARD_WATCHDOG_POLL:-5}",
        "STATE_DIR=${TRAINBOARD_WATCHDOG_STATE:-/var/lib/trainboard}",
    ]
    return "\n".join(head) + WATCHDOG_SCRIPT


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings (keys, the script) as literal blocks, readable in the console."""


def _str_block(dumper: Any, data: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_BlockDumper.add_representer(str, _str_block)


def cloud_config(*, host_private: str, host_public: str, authorized_key: str | None, watchdog: str) -> str:
    """The instance's user data: our host key, the run's client key, the watchdog."""
    doc: dict[str, Any] = {
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public},
    }
    if authorized_key:
        doc["ssh_authorized_keys"] = [authorized_key]
    doc["write_files"] = [{"path": WATCHDOG_PATH, "permissions": "0755", "owner": "root:root", "content": watchdog}]
    start = (f"systemd-run --unit=trainboard-watchdog --property=Restart=always --property=RestartSec=5 "
             f"{WATCHDOG_PATH} || (nohup {WATCHDOG_PATH} >>/var/log/trainboard-watchdog.log 2>&1 &)")
    doc["runcmd"] = [["sh", "-c", start]]
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=1000)


# --------------------------------------------------------------------------- the runner


@dataclass
class _Plan:
    """What preflight learned and made, for the calls that create things."""

    image_id: str = ""
    root_device: str = ""
    owner: str = ""
    cidr: str = ""
    vpc_id: str | None = None
    spot_prices: dict[str, float] = field(default_factory=dict)  # availability zone -> USD/h
    tags: dict[str, str] = field(default_factory=dict)
    client_public: str | None = None
    host_private: str = ""
    host_public: str = ""


class Ec2Runner:
    """A fresh EC2 instance per run; the SSH runner does the rest once it is up."""

    kind = "ec2"

    def __init__(self, config: Ec2RunnerConfig, run_dir: Path, run_id: str) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.capabilities = Capabilities(shares_filesystem=False, cloud_role=bool(config.instance_profile),
                                         relays_tracking=True, orphan_timeout=float(config.orphan_timeout))
        self.notify: Notify | None = None
        self.ssh_ready_timeout = SSH_READY_TIMEOUT
        self.instance_ready_timeout = INSTANCE_READY_TIMEOUT
        self.terminate_timeout = TERMINATE_TIMEOUT
        self._res: dict[str, Any] = {"run_id": run_id}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=12, thread_name_prefix="trainboard-aws")
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._session: Any = None
        self._ec2: Any = None
        self._ssm: Any = None
        self._sts: Any = None
        self._ssh: SshRunner | None = None
        self._launched: dict[str, Any] | None = None  # RunInstances' answer about the instance
        self._closing = False

    # ------------------------------------------------------------------ plumbing

    def _aws(self, fn: Callable[[], T], *, creates: bool = False) -> asyncio.Future[T]:
        """Run a blocking call in a worker thread. A call that creates something is refused
        once teardown began; teardown waits for the calls already under way."""
        if creates and self._closing:
            raise RunnerError("the runner is being torn down: nothing more is created")
        fut = self._pool.submit(fn)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return asyncio.wrap_future(fut)

    def _remember(self, **fields: Any) -> None:
        """Record resources as they come to exist (any thread) in resources.json."""
        with self._lock:
            self._res.update(fields)
            data = json.dumps(self._res, indent=2, sort_keys=True, default=str)
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                tmp = self.run_dir / (RESOURCES_FILE + ".tmp")
                tmp.write_text(data)
                os.replace(tmp, self.run_dir / RESOURCES_FILE)
            except OSError:
                pass  # the trail is a help; the tags are what reap relies on

    def _connect(self) -> None:
        if self._ec2 is not None:
            return
        region = self.config.region or self._res.get("region")
        session = aws_session(region)
        config = aws_config()
        ec2 = session.client("ec2", config=config)
        ec2.meta.events.register_first("needs-retry.ec2.RunInstances", _fail_fast)
        self._ssm = session.client("ssm", config=config)
        self._sts = session.client("sts", config=config)
        self._session, self._ec2 = session, ec2
        self._remember(region=session.region_name)

    @property
    def region(self) -> str:
        return str(self._res.get("region") or self.config.region or "")

    def _publish(self, event: ev.Event) -> None:
        if self.notify is not None:
            with contextlib.suppress(Exception):
                self.notify(event)

    def _step(self, step: str) -> None:
        self._publish(ev.RunnerChanged(state="provisioning", kind=self.kind, address=self._res.get("address", ""),
                                       details=(("step", step), *self._details())))

    def _details(self) -> tuple[tuple[str, str], ...]:
        res = self._res
        out = [("instance_id", res.get("instance_id")), ("instance_type", self.config.instance_type),
               ("region", res.get("region")), ("market", res.get("market", self.config.market)),
               ("hourly_price", f"{res['hourly_price']:g}" if res.get("hourly_price") is not None else None),
               ("address", res.get("address"))]
        return tuple((k, str(v)) for k, v in out if v)

    def _require_ssh(self) -> SshRunner:
        if self._ssh is None:
            raise RunnerError("the EC2 instance is not connected: provision() or reattach() first")
        return self._ssh

    # ------------------------------------------------------------------ provision

    async def provision(self) -> Host:
        if self._closing:
            raise RunnerError("this runner was torn down")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._remember(instance_type=self.config.instance_type, market=self.config.market,
                       user=self.config.user, remote_dir=self._runs_dir())
        self._step("checking credentials and permissions")
        try:
            await self._aws(self._connect)
        except (NoRegionError, NoCredentialsError, BotoCoreError) as exc:
            raise PreflightError(f"AWS is not configured: {exc}") from None
        plan = await self._preflight()
        self._step("creating the key pair and security group")
        group_id = await self._create_access(plan)
        self._step(f"launching a {self.config.instance_type} ({self.config.market})")
        await self._authorize_and_launch(plan, group_id)
        self._step("waiting for the instance to run")
        address = await self._wait_running()
        self._price(plan)
        self._step(f"waiting for SSH at {address}")
        return await self._open_ssh(address)

    def _runs_dir(self) -> str:
        return remote_runs_dir(self.config.remote_dir, self.config.user)

    def _tags(self, owner: str) -> dict[str, str]:
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=self.config.max_duration_minutes)
                   + EXPIRY_MARGIN)
        tags = dict(self.config.tags)
        tags.update({
            "Name": f"trainboard-{self.run_id}",
            TAG_RUN: self.run_id,
            TAG_OWNER: owner[:256],
            TAG_EXPIRES: expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
        return tags

    def _make_keys(self) -> tuple[str | None, str, str]:
        """The per-run client key (saved 0600 in the run folder) and the instance's host key."""
        import asyncssh

        client_public = None
        if self.config.key_name is None:
            client = asyncssh.generate_private_key("ssh-ed25519", comment=f"trainboard-{self.run_id}")
            path = self.run_dir / KEY_FILE
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(client.export_private_key("openssh"))
            self._remember(private_key=str(path))
            client_public = client.export_public_key("openssh").decode().strip()
        host = asyncssh.generate_private_key("ssh-ed25519", comment=f"trainboard-{self.run_id}-host")
        host_public = " ".join(host.export_public_key("openssh").decode().split()[:2])
        self._remember(host_key=host_public)
        return client_public, host.export_private_key("openssh").decode(), host_public

    async def _preflight(self) -> _Plan:
        """Wave 1: everything that reads, and DryRun of everything that creates. Creates nothing."""
        cfg = self.config
        ec2 = self._ec2
        plan = _Plan()
        make_group = not cfg.security_group_ids
        make_key = cfg.key_name is None
        denied: list[str] = []
        problems: list[str] = []

        def call(fn: Callable[..., Any], **params: Any) -> asyncio.Future[Any]:
            return self._aws(lambda: fn(**params))

        async def image() -> str:
            if cfg.ami.startswith("ssm:"):
                name = cfg.ami.removeprefix("ssm:")
                resp = await call(self._ssm.get_parameter, Name=name)
                return str(resp["Parameter"]["Value"])
            return cfg.ami

        async def owner() -> str:
            if cfg.owner:
                return cfg.owner
            return str((await call(self._sts.get_caller_identity))["Arn"])

        async def subnet() -> tuple[str | None, str | None]:
            if not cfg.subnet_id:
                return None, None
            resp = await call(ec2.describe_subnets, SubnetIds=[cfg.subnet_id])
            sub = resp["Subnets"][0]
            return sub.get("VpcId"), sub.get("AvailabilityZone")

        image_task = asyncio.ensure_future(image())
        owner_task = asyncio.ensure_future(owner())
        subnet_task = asyncio.ensure_future(subnet())

        async def describe_image() -> str:
            image_id = await image_task
            resp = await call(ec2.describe_images, ImageIds=[image_id])
            images = resp.get("Images") or []
            if not images:
                raise PreflightError(f"runner.ami: image {image_id} does not exist in {self.region} "
                                     "or is not visible to this account; set runner.ami to an image of this region")
            return str(images[0].get("RootDeviceName") or "/dev/xvda")

        async def dry_launch() -> None:
            image_id, who = await image_task, await owner_task
            params = self._launch_params(image_id=image_id, tags=self._tags(who), spot=cfg.market == "spot",
                                         root_device=None, group_ids=list(cfg.security_group_ids),
                                         user_data=None, token=None)
            await dry(ec2.run_instances, **params)

        async def dry(fn: Callable[..., Any], **params: Any) -> None:
            try:
                await call(fn, DryRun=True, **params)
            except ClientError as exc:
                if error_code(exc) != "DryRunOperation":
                    raise

        async def dry_group() -> None:
            vpc_id, _ = await subnet_task
            await dry(ec2.create_security_group, GroupName=self._group_name(), Description="dry run",
                      **({"VpcId": vpc_id} if vpc_id else {}))

        async def spot_prices() -> dict[str, float]:
            resp = await call(ec2.describe_spot_price_history, InstanceTypes=[cfg.instance_type],
                              ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                              StartTime=dt.datetime.now(dt.UTC), MaxResults=100)
            prices: dict[str, float] = {}
            for item in resp.get("SpotPriceHistory", []):
                with contextlib.suppress(KeyError, ValueError):
                    prices.setdefault(item["AvailabilityZone"], float(item["SpotPrice"]))
            return prices

        async def cidr() -> str:
            if cfg.ssh_cidr != "auto":
                return str(ipaddress.ip_network(cfg.ssh_cidr, strict=False))
            return await self._aws(detect_public_cidr)

        # (name, awaitable, IAM action(s) it needs, the setting its other errors point at)
        checks: list[tuple[str, Any, str, str]] = [
            ("image", image_task, "ssm:GetParameter", "runner.ami"),
            ("owner", owner_task, "sts:GetCallerIdentity", "runner.owner"),
            ("subnet", subnet_task, "ec2:DescribeSubnets", "runner.subnet_id"),
            ("root", describe_image(), "ec2:DescribeImages", "runner.ami"),
            ("launch", dry_launch(), "ec2:RunInstances (and ec2:CreateTags on the instance and volume)",
             "runner.instance_type / runner.ami / runner.subnet_id / runner.security_group_ids / runner.key_name"),
            ("keys", self._aws(self._make_keys), "", ""),
        ]
        if make_group:
            checks.append(("cidr", cidr(), "", "runner.ssh_cidr"))
            checks.append(("dry_group", dry_group(), "ec2:CreateSecurityGroup (and ec2:CreateTags)",
                           "runner.subnet_id"))
        if make_key:
            checks.append(("dry_key", dry(ec2.import_key_pair, KeyName=self._key_name(),
                                          PublicKeyMaterial=_DRY_RUN_KEY.encode()),
                           "ec2:ImportKeyPair (and ec2:CreateTags)", "runner.key_name"))
        if cfg.market == "spot":
            checks.append(("spot", spot_prices(), "ec2:DescribeSpotPriceHistory", "runner.instance_type"))

        results = await asyncio.gather(*(c[1] for c in checks), return_exceptions=True)
        out: dict[str, Any] = {}
        for (name, _, action, setting), result in zip(checks, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if not isinstance(result, BaseException):
                out[name] = result
                continue
            code = error_code(result)
            if name == "spot":  # only the cost figure needs it
                self._publish(ev.Notice(f"spot price unknown ({error_message(result)}): "
                                        "the cost shown uses the on-demand table or runner.hourly_price"))
                continue
            if code in _DENIED_CODES:
                denied.append(action)
            elif isinstance(result, PreflightError):
                problems.append(str(result))
            elif isinstance(result, (NoCredentialsError, NoRegionError)):
                problems.append(f"AWS is not configured: {result} (set AWS_PROFILE, run `aws configure` or "
                                "`aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
            elif isinstance(result, ClientError):
                where = f" (check {setting})" if setting else ""
                problems.append(f"{error_message(result)}{where}")
            elif name in ("image", "root", "launch", "subnet", "dry_group", "dry_key"):
                problems.append(f"{error_message(result)}")
            else:
                raise result
        if denied:
            unique = list(dict.fromkeys(denied))
            raise PreflightError(
                "the AWS credentials lack permission for " + ", ".join(unique)
                + ". Nothing was created. Grant them (docs/ec2.md has the minimal IAM policy)."
            )
        if problems:  # every call that failed for one reason says it once
            raise PreflightError("EC2 preflight failed, nothing was created: " + "; ".join(dict.fromkeys(problems)))
        plan.image_id = out["image"]
        plan.root_device = out["root"]
        plan.owner = out["owner"]
        plan.vpc_id = out["subnet"][0]
        plan.cidr = out.get("cidr", "")
        plan.spot_prices = out.get("spot", {})
        plan.tags = self._tags(plan.owner)
        plan.client_public, plan.host_private, plan.host_public = out["keys"]
        self._remember(image_id=plan.image_id, owner=plan.owner, expires_at=plan.tags[TAG_EXPIRES],
                       ssh_cidr=plan.cidr or None)
        return plan

    def _key_name(self) -> str:
        return self.config.key_name or f"trainboard-{self.run_id}"

    def _group_name(self) -> str:
        return f"trainboard-{self.run_id}"

    async def _create_access(self, plan: _Plan) -> list[str]:
        """Wave 2: the run's key pair and security group, together. The group ids to launch in."""
        cfg = self.config
        tasks = []
        if cfg.key_name is None:
            tasks.append(self._aws(lambda: self._import_key(plan), creates=True))
        if not cfg.security_group_ids:
            tasks.append(self._aws(lambda: self._create_group(plan), creates=True))
        await _gather_or_raise(tasks)
        if cfg.security_group_ids:
            return list(cfg.security_group_ids)
        return [self._res["security_group_id"]]

    def _import_key(self, plan: _Plan) -> None:
        name = self._key_name()
        self._remember(key_name=name, key_created=True)  # before: a lost answer still leaves the name
        try:
            resp = self._ec2.import_key_pair(
                KeyName=name, PublicKeyMaterial=(plan.client_public or "").encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(plan.tags)}],
            )
        except ClientError as exc:
            raise RunnerError(f"importing the key pair {name} failed: {error_message(exc)}") from None
        self._remember(key_pair_id=resp.get("KeyPairId"))

    def _create_group(self, plan: _Plan) -> None:
        name = self._group_name()
        self._remember(security_group_name=name)
        params: dict[str, Any] = {
            "GroupName": name,
            "Description": f"trainboard run {self.run_id}: SSH from {plan.cidr}",
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": tag_list(plan.tags)}],
        }
        if plan.vpc_id:
            params["VpcId"] = plan.vpc_id
        try:
            resp = self._ec2.create_security_group(**params)
        except ClientError as exc:
            raise RunnerError(f"creating the security group {name} failed: {error_message(exc)}") from None
        self._remember(security_group_id=resp["GroupId"])

    def _authorize(self, group_id: str, cidr: str) -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        ranges = ({"Ipv6Ranges": [{"CidrIpv6": str(network), "Description": "trainboard SSH"}]}
                  if network.version == 6 else
                  {"IpRanges": [{"CidrIp": str(network), "Description": "trainboard SSH"}]})
        try:
            self._ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}],
            )
        except ClientError as exc:
            if error_code(exc) != "InvalidPermission.Duplicate":
                raise RunnerError(f"opening port 22 to {cidr} failed: {error_message(exc)}") from None

    def _launch_params(self, *, image_id: str, tags: dict[str, str], spot: bool, root_device: str | None,
                       group_ids: list[str], user_data: str | None, token: str | None) -> dict[str, Any]:
        cfg = self.config
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

    def _user_data(self, plan: _Plan) -> str:
        cfg = self.config
        run_folder = f"{self._runs_dir()}/{self.run_id}"
        script = watchdog_script(run_folder, cfg.user, round(cfg.max_duration_minutes * 60),
                                 round(cfg.idle_timeout_minutes * 60))
        return cloud_config(host_private=plan.host_private, host_public=plan.host_public,
                            authorized_key=plan.client_public, watchdog=script)

    async def _authorize_and_launch(self, plan: _Plan, group_ids: list[str]) -> None:
        """Wave 3: open port 22 on our group and launch, together (the rule is in place long before sshd)."""
        tasks: list[asyncio.Future[None]] = [asyncio.ensure_future(self._launch(plan, group_ids))]
        if not self.config.security_group_ids:
            tasks.append(self._aws(lambda: self._authorize(group_ids[0], plan.cidr), creates=True))
        await _gather_or_raise(tasks)

    async def _launch(self, plan: _Plan, group_ids: list[str]) -> None:
        cfg = self.config
        user_data = self._user_data(plan)
        spot = cfg.market == "spot"

        def run(spot: bool) -> dict[str, Any]:
            params = self._launch_params(image_id=plan.image_id, tags=plan.tags, spot=spot,
                                         root_device=plan.root_device, group_ids=group_ids,
                                         user_data=user_data, token=f"{self.run_id}-{'spot' if spot else 'od'}")
            self._remember(launch_attempted=True, market="spot" if spot else "on-demand")
            resp = self._ec2.run_instances(**params)
            instance = resp["Instances"][0]
            self._remember(instance_id=instance["InstanceId"],
                           spot_request_id=instance.get("SpotInstanceRequestId"),
                           availability_zone=(instance.get("Placement") or {}).get("AvailabilityZone"))
            self._launched = instance
            return dict(instance)

        try:
            await self._aws(lambda: run(spot), creates=True)
            return
        except ClientError as exc:
            code, message = error_code(exc), error_message(exc)
            if not (spot and code in SPOT_FALLBACK_CODES):
                if code in ("InsufficientInstanceCapacity", "InsufficientCapacity"):
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
            self._publish(ev.Notice(f"spot {cfg.instance_type} unavailable ({code}): launching on-demand "
                                    "instead (runner.fallback_to_on_demand)"))
        try:
            await self._aws(lambda: run(False), creates=True)
        except ClientError as exc:
            raise RunnerError(f"launching the on-demand fallback failed too: {error_message(exc)}") from None

    async def _wait_running(self) -> str:
        """Poll DescribeInstances with backoff until the instance runs with an address."""
        instance_id = self._res["instance_id"]
        instance = self._launched or {}
        delay, deadline = 0.5, time.monotonic() + self.instance_ready_timeout
        while True:
            state = (instance.get("State") or {}).get("Name")
            address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
            if state == "running" and address:
                self._remember(address=address, availability_zone=(instance.get("Placement") or {}).get(
                    "AvailabilityZone", self._res.get("availability_zone")))
                return str(address)
            if state in ("shutting-down", "terminated", "stopping", "stopped"):
                reason = (instance.get("StateReason") or {}).get("Message") or "no reason given"
                raise RunnerError(f"instance {instance_id} is {state} before it was ready: {reason}")
            if time.monotonic() > deadline:
                raise RunnerError(f"instance {instance_id} was not running after "
                                  f"{self.instance_ready_timeout:.0f} s (state {state or 'unknown'})")
            if state is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 5.0)
            try:
                resp = await self._aws(lambda: self._ec2.describe_instances(InstanceIds=[instance_id]))
                instance = resp["Reservations"][0]["Instances"][0]
            except (ClientError, IndexError, KeyError) as exc:
                if error_code(exc) != "InvalidInstanceID.NotFound" and not isinstance(exc, (IndexError, KeyError)):
                    raise RunnerError(f"describing instance {instance_id} failed: {error_message(exc)}") from None
                instance = {"State": {"Name": "pending"}}  # not visible yet (eventual consistency)

    def _price(self, plan: _Plan) -> None:
        cfg = self.config
        price: float | None = cfg.hourly_price
        if price is None and self._res.get("market") == "spot" and plan.spot_prices:
            zone = self._res.get("availability_zone")
            price = plan.spot_prices.get(zone) if zone else None
            if price is None:
                price = max(plan.spot_prices.values())
        if price is None:
            price = ON_DEMAND_PRICES.get(cfg.instance_type)
        self._remember(hourly_price=price)

    def _ssh_target_address(self, address: str) -> tuple[str, int]:
        override = os.environ.get(SSH_ADDRESS_ENV, "")
        if override:
            host, _, port = override.rpartition(":")
            return host or "127.0.0.1", int(port)
        return address, 22

    def _make_ssh(self, address: str) -> SshRunner:
        from trainboard.backend.runners.ssh import SshRunner, SshTarget

        cfg = self.config
        host, port = self._ssh_target_address(address)
        key = cfg.identity_file or self._res.get("private_key")
        target = SshTarget(
            host=host,
            port=port,
            user=cfg.user,
            client_keys=[os.path.expanduser(key)] if key else None,
            host_keys=[self._res["host_key"]],
            keepalive=cfg.keepalive_seconds,
            connect_timeout=cfg.connect_timeout,
            stall_timeout=float(cfg.stall_timeout),
            orphan_timeout=float(cfg.orphan_timeout),
        )
        self._remember(ssh_host=host, ssh_port=port)
        ssh = SshRunner(target, self.run_dir, self.run_id, remote_dir=self._runs_dir(),
                        reconnect_timeout=cfg.reconnect_timeout, kind=self.kind)
        ssh.notify = self.notify
        return ssh

    async def _open_ssh(self, address: str) -> Host:
        self._ssh = self._make_ssh(address)
        await self._ssh.wait_ready(self.ssh_ready_timeout)
        return self._host(address, await self._ssh.provision())

    def _host(self, address: str, ssh_host: Host) -> Host:
        """The SSH runner's host, with the instance's details first (then its python, cpus)."""
        mine = self._details()
        known = {key for key, _ in mine}
        extra = tuple((k, v) for k, v in ssh_host.details if k not in known and v)
        return Host(kind=self.kind, address=address, workspace=ssh_host.workspace, details=mine + extra)

    # ------------------------------------------------------------------ reattach, state

    def state(self) -> dict[str, Any]:
        with self._lock:
            data = dict(self._res)
        data["kind"] = self.kind
        if self._ssh is not None:
            with contextlib.suppress(Exception):
                data["ssh"] = self._ssh.state()
        return data

    async def reattach(self, state: dict[str, Any]) -> Host:
        if not state.get("instance_id") or not state.get("host_key"):
            raise RunnerError("the run's record has no EC2 instance to reattach to")
        self._remember(**{k: v for k, v in state.items() if k not in ("ssh", "kind")})
        await self._aws(self._connect)
        instance_id = state["instance_id"]
        try:
            resp = await self._aws(lambda: self._ec2.describe_instances(InstanceIds=[instance_id]))
            instance = resp["Reservations"][0]["Instances"][0]
        except (ClientError, IndexError, KeyError) as exc:
            raise RunnerError(f"instance {instance_id} cannot be found: {error_message(exc)}") from None
        status = (instance.get("State") or {}).get("Name")
        if status != "running":
            reason = (instance.get("StateReason") or {}).get("Message") or ""
            raise RunnerError(f"instance {instance_id} is {status}" + (f": {reason}" if reason else ""))
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress") or state.get("address", "")
        self._remember(address=address)
        self._ssh = self._make_ssh(address)
        ssh_state = state.get("ssh")
        if ssh_state:
            host = await self._ssh.reattach(ssh_state)
        else:
            await self._ssh.wait_ready(self.config.connect_timeout)
            host = await self._ssh.provision()
        return self._host(address, host)

    # ------------------------------------------------------------------ the job (the SSH runner's)

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
        await self._require_ssh().sync(source, files, extra)

    async def start(self, spec: JobSpec) -> JobHandle:
        return await self._require_ssh().start(spec)

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        return await self._require_ssh().tail(handle, offset, limit)

    async def status(self, handle: JobHandle) -> JobStatus:
        return await self._require_ssh().status(handle)

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        await self._require_ssh().stop(handle, grace)

    async def fetch(self, relpath: str, dest: Path) -> bool:
        return await self._require_ssh().fetch(relpath, dest)

    async def forward(self, port: int) -> int:
        return await self._require_ssh().forward(port)

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        """The job's environment from its 0600 file on the instance (for attach's masker)."""
        return await self._require_ssh().read_job_env(handle)

    async def undelivered_metrics(self) -> float | None:
        """Whether the job's MLflow calls through the forward relay were given up on (see SshRunner)."""
        return await self._require_ssh().undelivered_metrics()

    # ------------------------------------------------------------------ leaving

    async def detach(self) -> None:
        """Close SSH and leave the instance running: its watchdog still bounds its life."""
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            await ssh.detach()

    async def teardown(self) -> None:
        """Terminate the instance, delete the security group and key pair, forget the key.

        Safe at any point, and again: during or after a provision that failed or was
        cancelled, it waits for the AWS calls under way, finds what they made (by
        the trail, else by the run's tag) and deletes it. Raises RunnerError naming
        whatever it could not delete (``trainboard reap`` finds those later).
        """
        self._closing = True
        pending = list(self._inflight)  # no creating call can start from now on
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ssh.detach(), 15)
        if pending:
            await asyncio.to_thread(concurrent.futures.wait, pending, INFLIGHT_TIMEOUT)
        problems: list[str] = []
        res = self._res
        if res.get("launch_attempted") or res.get("key_created") or res.get("security_group_name"):
            try:
                await self._aws(self._connect)
            except Exception as exc:  # no credentials any more, no region: say what is left
                problems = [f"could not reach AWS ({exc}) to delete {self._leftovers()}"]
            else:
                problems = await self._release()
        key = res.get("private_key")
        if key:
            with contextlib.suppress(FileNotFoundError):
                Path(key).unlink()
            self._remember(private_key=None)
        if problems:
            raise RunnerError("EC2 teardown left resources behind: " + "; ".join(problems)
                              + " (`trainboard reap` deletes them later)")

    def _leftovers(self) -> str:
        res = self._res
        items = [f"instance {res['instance_id']}" if res.get("instance_id") and not res.get("instance_terminated")
                 else "", f"key pair {res.get('key_name')}" if res.get("key_created") and not res.get("key_deleted")
                 else "", f"security group {res.get('security_group_id') or res.get('security_group_name')}"
                 if res.get("security_group_name") and not res.get("security_group_deleted") else ""]
        return ", ".join(i for i in items if i) or "the run's resources"

    async def _release(self) -> list[str]:
        res = self._res
        problems: list[str] = []
        run_filter = {"Name": f"tag:{TAG_RUN}", "Values": [self.run_id]}

        def find_instances() -> list[str]:
            if res.get("instance_id") or not res.get("launch_attempted"):
                return [res["instance_id"]] if res.get("instance_id") else []
            resp = self._ec2.describe_instances(Filters=[run_filter, {
                "Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
            return [i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", [])]

        def find_group() -> str | None:
            if res.get("security_group_id") or not res.get("security_group_name"):
                return res.get("security_group_id")
            resp = self._ec2.describe_security_groups(Filters=[run_filter, {
                "Name": "group-name", "Values": [res["security_group_name"]]}])
            groups = resp.get("SecurityGroups", [])
            return groups[0]["GroupId"] if groups else None

        async def terminate(ids: list[str]) -> None:
            if not ids or res.get("instance_terminated"):
                return
            try:
                await self._aws(lambda: self._ec2.terminate_instances(InstanceIds=ids))
            except ClientError as exc:
                if error_code(exc) not in _GONE_CODES:
                    raise
            spot = res.get("spot_request_id")
            if spot:
                with contextlib.suppress(ClientError):
                    await self._aws(lambda: self._ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[spot]))

        async def delete_key() -> None:
            if not res.get("key_created") or res.get("key_deleted"):
                return
            try:
                await self._aws(lambda: self._ec2.delete_key_pair(KeyName=res["key_name"]))
            except ClientError as exc:
                if error_code(exc) not in _GONE_CODES:
                    raise
            self._remember(key_deleted=True)

        try:
            ids, group = await asyncio.gather(self._aws(find_instances), self._aws(find_group))
        except (ClientError, BotoCoreError) as exc:
            return [f"finding the run's resources: {error_message(exc)}"]
        if ids and not res.get("instance_id"):
            self._remember(instance_id=ids[0], other_instance_ids=ids[1:] or None)
        if group:
            self._remember(security_group_id=group)
        term, key = await asyncio.gather(terminate(ids), delete_key(), return_exceptions=True)
        if isinstance(term, BaseException):
            problems.append(f"instance {', '.join(ids)}: {error_message(term)}")
        if isinstance(key, BaseException):
            problems.append(f"key pair {res.get('key_name')}: {error_message(key)}")
        if ids and not isinstance(term, BaseException):
            try:
                reason = await self._wait_terminated(ids)
                self._remember(instance_terminated=True, state_reason=reason or None)
                if reason and "UserInitiated" not in reason:  # it had ended on its own: spot, watchdog
                    self._publish(ev.Notice(f"instance {ids[0]} had ended before teardown: {reason}"))
            except RunnerError as exc:
                problems.append(str(exc))
        if group and not res.get("security_group_deleted") and not (ids and not res.get("instance_terminated")):
            try:
                await self._delete_group(group)
                self._remember(security_group_deleted=True)
            except RunnerError as exc:
                problems.append(str(exc))
        elif group and not res.get("security_group_deleted"):
            problems.append(f"security group {group}: kept, its instance is not terminated yet")
        return problems

    async def _wait_terminated(self, ids: list[str]) -> str:
        """Poll until every instance is terminated; the state reason of the first."""
        delay, deadline = 0.5, time.monotonic() + self.terminate_timeout
        while True:
            try:
                resp = await self._aws(lambda: self._ec2.describe_instances(InstanceIds=ids))
                instances = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
            except ClientError as exc:
                if error_code(exc) == "InvalidInstanceID.NotFound":
                    return ""
                raise RunnerError(f"instance {', '.join(ids)}: {error_message(exc)}") from None
            if all((i.get("State") or {}).get("Name") == "terminated" for i in instances):
                return str(((instances[0].get("StateReason") or {}).get("Message") or "") if instances else "")
            if time.monotonic() > deadline:
                raise RunnerError(f"instance {', '.join(ids)} not terminated after {self.terminate_timeout:.0f} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    async def _delete_group(self, group_id: str) -> None:
        delay, deadline = 1.0, time.monotonic() + GROUP_DELETE_TIMEOUT
        while True:
            try:
                await self._aws(lambda: self._ec2.delete_security_group(GroupId=group_id))
                return
            except ClientError as exc:
                code = error_code(exc)
                if code in _GONE_CODES:
                    return
                if code != "DependencyViolation" or time.monotonic() > deadline:
                    raise RunnerError(f"security group {group_id}: {error_message(exc)}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 10.0)


async def _gather_or_raise(tasks: list[Any]) -> list[Any]:
    """Await all (none is left running behind our back), then raise the first failure."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# A fixed, valid public key for the DryRun of ImportKeyPair (nothing is imported).
_DRY_RUN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAtGeJ7ZdeZN2cId9uxr3e3CS4lwTj/YxP6S7QTtSciW trainboard-dry-run"

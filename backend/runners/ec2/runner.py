"""The ec2 runner itself: provision in waves (preflight, access, launch, wait), then the SSH
runner on the instance for the job; teardown deletes what the run made."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from trainboard.backend.runners.ec2 import launch, teardown
from trainboard.backend.runners.ec2.context import Ec2Context
from trainboard.backend.runners.ec2.errors import error_message
from trainboard.backend.runners.ec2.preflight import preflight
from trainboard.backend.runners.ec2.pricing import hourly_price

if TYPE_CHECKING:
    from trainboard.backend.config import Ec2RunnerConfig
    from trainboard.backend.runners.ssh import SshRunner

SSH_ADDRESS_ENV = "TRAINBOARD_EC2_SSH_ADDRESS"  # test-only, see the package's docstring
SSH_READY_TIMEOUT = 420.0  # boot + cloud-init until sshd answers with our host key
INSTANCE_READY_TIMEOUT = 600.0  # pending -> running with an address


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
        self.terminate_timeout = teardown.TERMINATE_TIMEOUT
        self._ctx = Ec2Context(config, run_id, self.run_dir, self._notify)
        self._ssh: SshRunner | None = None

    @property
    def region(self) -> str:
        return self._ctx.region

    def _notify(self, event: ev.Event) -> None:
        if self.notify is not None:
            with contextlib.suppress(Exception):
                self.notify(event)

    def _step(self, step: str) -> None:
        self._notify(ev.RunnerChanged(state="provisioning", kind=self.kind, address=self._ctx.trail.get("address", ""),
                                      details=(("step", step), *self._details())))

    def _details(self) -> tuple[tuple[str, str], ...]:
        res, cfg = self._ctx.trail, self.config
        out = [("instance_id", res.get("instance_id")), ("instance_type", cfg.instance_type),
               ("region", res.get("region")), ("market", res.get("market", cfg.market)),
               ("hourly_price", f"{res['hourly_price']:g}" if res.get("hourly_price") is not None else None),
               ("address", res.get("address"))]
        return tuple((k, str(v)) for k, v in out if v)

    def _require_ssh(self) -> SshRunner:
        if self._ssh is None:
            raise RunnerError("the EC2 instance is not connected: provision() or reattach() first")
        return self._ssh

    # ------------------------------------------------------------------ provision

    async def provision(self) -> Host:
        ctx, cfg = self._ctx, self.config
        if ctx.aws.closing:
            raise RunnerError("this runner was torn down")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ctx.trail.remember(instance_type=cfg.instance_type, market=cfg.market, user=cfg.user,
                           remote_dir=ctx.runs_dir())
        self._step("checking credentials and permissions")
        try:
            await ctx.call(ctx.connect)
        except (NoRegionError, NoCredentialsError, BotoCoreError) as exc:
            raise PreflightError(f"AWS is not configured: {exc}") from None
        plan = await preflight(ctx)
        self._step("creating the key pair and security group")
        group_ids = await launch.create_access(ctx, plan)
        self._step(f"launching a {cfg.instance_type} ({cfg.market})")
        launched = await launch.authorize_and_launch(ctx, plan, group_ids)
        self._step("waiting for the instance to run")
        address = await launch.wait_running(ctx, launched, self.instance_ready_timeout)
        ctx.trail.remember(hourly_price=hourly_price(cfg, ctx.trail.get("market"), ctx.trail.get("availability_zone"),
                                                     plan.spot_prices))
        self._step(f"waiting for SSH at {address}")
        return await self._open_ssh(address)

    # ------------------------------------------------------------------ SSH on the instance

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
        key = cfg.identity_file or self._ctx.trail.get("private_key")
        target = SshTarget(
            host=host,
            port=port,
            user=cfg.user,
            client_keys=[os.path.expanduser(key)] if key else None,
            host_keys=[self._ctx.trail["host_key"]],
            keepalive=cfg.keepalive_seconds,
            connect_timeout=cfg.connect_timeout,
            stall_timeout=float(cfg.stall_timeout),
            orphan_timeout=float(cfg.orphan_timeout),
        )
        self._ctx.trail.remember(ssh_host=host, ssh_port=port)
        ssh = SshRunner(target, self.run_dir, self.run_id, remote_dir=self._ctx.runs_dir(),
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
        data = self._ctx.trail.snapshot()
        data["kind"] = self.kind
        if self._ssh is not None:
            with contextlib.suppress(Exception):
                data["ssh"] = self._ssh.state()
        return data

    async def reattach(self, state: dict[str, Any]) -> Host:
        if not state.get("instance_id") or not state.get("host_key"):
            raise RunnerError("the run's record has no EC2 instance to reattach to")
        self._ctx.trail.remember(**{k: v for k, v in state.items() if k not in ("ssh", "kind")})
        await self._ctx.call(self._ctx.connect)
        instance_id = state["instance_id"]
        try:
            resp = await self._ctx.call(lambda: self._ctx.aws.ec2.describe_instances(InstanceIds=[instance_id]))
            instance = resp["Reservations"][0]["Instances"][0]
        except (ClientError, IndexError, KeyError) as exc:
            raise RunnerError(f"instance {instance_id} cannot be found: {error_message(exc)}") from None
        status = (instance.get("State") or {}).get("Name")
        if status != "running":
            reason = (instance.get("StateReason") or {}).get("Message") or ""
            raise RunnerError(f"instance {instance_id} is {status}" + (f": {reason}" if reason else ""))
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress") or state.get("address", "")
        self._ctx.trail.remember(address=address)
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

    async def idle(self, handle: JobHandle, seconds: float) -> None:
        await asyncio.sleep(seconds)

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
        pending = self._ctx.aws.close()  # no creating call can start from now on
        ssh, self._ssh = self._ssh, None
        if ssh is not None:
            with contextlib.suppress(Exception):  # the instance ends it too; on a host that outlives it, not
                await asyncio.wait_for(ssh.forwards.stop_relay(), 15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ssh.detach(), 15)
        problems = await teardown.tear_down(self._ctx, pending, self.terminate_timeout)
        if problems:
            raise RunnerError("EC2 teardown left resources behind: " + "; ".join(problems)
                              + " (`trainboard reap` deletes them later)")

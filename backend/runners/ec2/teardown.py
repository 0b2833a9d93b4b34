"""Deleting what a run created: the one implementation, for the runner's teardown and for
``trainboard reap`` (backend/reap.py).

The steps (terminate instances, cancel spot requests, delete a key pair, wait until
instances are terminated, delete a security group once nothing uses it) take ``call``,
which runs one blocking boto3 call: the runner's worker threads, or :func:`in_this_thread`
for reap. A resource that is gone already counts as deleted.

:func:`tear_down` is the runner's: it deletes what the run's trail names, or, when a
call's answer was lost, what carries the run's tag.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from trainboard.backend import events as ev
from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ec2.context import TAG_RUN, Ec2Context, Trail
from trainboard.backend.runners.ec2.errors import GONE_CODES, error_code, error_message

TERMINATE_TIMEOUT = 300.0  # terminate -> terminated (the group can go only then)
GROUP_DELETE_TIMEOUT = 120.0  # retries of DependencyViolation
INFLIGHT_TIMEOUT = 90.0  # the runner's teardown waits this long for AWS calls already under way
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]

Call = Callable[[Callable[[], Any]], Awaitable[Any]]


async def in_this_thread(fn: Callable[[], Any]) -> Any:
    """A ``call`` that makes the blocking call right here, one after another."""
    return fn()


async def terminate_instances(call: Call, ec2: Any, ids: list[str]) -> None:
    try:
        await call(lambda: ec2.terminate_instances(InstanceIds=ids))
    except ClientError as exc:
        if error_code(exc) not in GONE_CODES:
            raise


async def cancel_spot_requests(call: Call, ec2: Any, ids: list[str]) -> None:
    await call(lambda: ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids))


async def delete_key_pair(call: Call, ec2: Any, name: str) -> None:
    try:
        await call(lambda: ec2.delete_key_pair(KeyName=name))
    except ClientError as exc:
        if error_code(exc) not in GONE_CODES:
            raise


async def wait_terminated(call: Call, ec2: Any, ids: list[str], timeout: float, noun: str = "instance") -> str:
    """Poll until every instance is terminated (or gone); the state reason of the first.
    RunnerError, its text starting with ``noun`` and the ids, when that does not happen in time."""
    delay, deadline = 0.5, time.monotonic() + timeout
    while True:
        try:
            resp = await call(lambda: ec2.describe_instances(InstanceIds=ids))
            instances = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        except ClientError as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return ""
            raise RunnerError(f"{noun} {', '.join(ids)}: {error_message(exc)}") from None
        if all((i.get("State") or {}).get("Name") == "terminated" for i in instances):
            return str(((instances[0].get("StateReason") or {}).get("Message") or "") if instances else "")
        if time.monotonic() > deadline:
            raise RunnerError(f"{noun} {', '.join(ids)} not terminated after {timeout:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 5.0)


async def delete_group(call: Call, ec2: Any, group_id: str, timeout: float = GROUP_DELETE_TIMEOUT) -> None:
    """Delete a security group, retrying while an instance still holds it (DependencyViolation)."""
    delay, deadline = 1.0, time.monotonic() + timeout
    while True:
        try:
            await call(lambda: ec2.delete_security_group(GroupId=group_id))
            return
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc)
            if code in GONE_CODES:
                return
            if code != "DependencyViolation" or time.monotonic() > deadline:
                raise RunnerError(f"security group {group_id}: {error_message(exc)}") from None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 10.0)


# --------------------------------------------------------------------------- the runner's teardown


async def tear_down(ctx: Ec2Context, pending: list[concurrent.futures.Future[Any]],
                    terminate_timeout: float) -> list[str]:
    """Wait for the calls under way (``pending``), delete what the run made, forget its key.
    A line per resource that could not be deleted."""
    if pending:
        await asyncio.to_thread(concurrent.futures.wait, pending, INFLIGHT_TIMEOUT)
    problems: list[str] = []
    trail = ctx.trail
    if trail.get("launch_attempted") or trail.get("key_created") or trail.get("security_group_name"):
        try:
            await ctx.call(ctx.connect)
        except Exception as exc:  # no credentials any more, no region: say what is left
            problems = [f"could not reach AWS ({exc}) to delete {leftovers(trail)}"]
        else:
            problems = await release(ctx, terminate_timeout)
    key = trail.get("private_key")
    if key:
        with contextlib.suppress(FileNotFoundError):
            Path(key).unlink()
        trail.remember(private_key=None)
    return problems


def leftovers(trail: Trail) -> str:
    """What the trail says still exists, for people."""
    items = [f"instance {trail['instance_id']}" if trail.get("instance_id") and not trail.get("instance_terminated")
             else "", f"key pair {trail.get('key_name')}" if trail.get("key_created") and not trail.get("key_deleted")
             else "", f"security group {trail.get('security_group_id') or trail.get('security_group_name')}"
             if trail.get("security_group_name") and not trail.get("security_group_deleted") else ""]
    return ", ".join(i for i in items if i) or "the run's resources"


async def release(ctx: Ec2Context, terminate_timeout: float) -> list[str]:
    """Terminate the instance and delete the key pair together, then the group once the
    instance is terminated. A line per problem."""
    trail = ctx.trail
    try:
        ids, group = await asyncio.gather(ctx.call(lambda: _find_instances(ctx)), ctx.call(lambda: _find_group(ctx)))
    except (ClientError, BotoCoreError) as exc:
        return [f"finding the run's resources: {error_message(exc)}"]
    if ids and not trail.get("instance_id"):
        trail.remember(instance_id=ids[0], other_instance_ids=ids[1:] or None)
    if group:
        trail.remember(security_group_id=group)
    problems: list[str] = []
    term, key = await asyncio.gather(_terminate(ctx, ids), _delete_key(ctx), return_exceptions=True)
    if isinstance(term, BaseException):
        problems.append(f"instance {', '.join(ids)}: {error_message(term)}")
    if isinstance(key, BaseException):
        problems.append(f"key pair {trail.get('key_name')}: {error_message(key)}")
    if ids and not isinstance(term, BaseException):
        try:
            await _wait_terminated(ctx, ids, terminate_timeout)
        except RunnerError as exc:
            problems.append(str(exc))
    if group and not trail.get("security_group_deleted") and not (ids and not trail.get("instance_terminated")):
        try:
            await delete_group(ctx.call, ctx.aws.ec2, group)
            trail.remember(security_group_deleted=True)
        except RunnerError as exc:
            problems.append(str(exc))
    elif group and not trail.get("security_group_deleted"):
        problems.append(f"security group {group}: kept, its instance is not terminated yet")
    return problems


def _run_filter(ctx: Ec2Context) -> dict[str, Any]:
    return {"Name": f"tag:{TAG_RUN}", "Values": [ctx.run_id]}


def _find_instances(ctx: Ec2Context) -> list[str]:
    """The trail's instance; by the run's tag when a launch was attempted but its answer lost."""
    trail = ctx.trail
    if trail.get("instance_id") or not trail.get("launch_attempted"):
        return [trail["instance_id"]] if trail.get("instance_id") else []
    resp = ctx.aws.ec2.describe_instances(Filters=[_run_filter(ctx), {
        "Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}])
    return [i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", [])]


def _find_group(ctx: Ec2Context) -> str | None:
    """The trail's group id; by tag and name when it was asked for but its answer lost."""
    trail = ctx.trail
    if trail.get("security_group_id") or not trail.get("security_group_name"):
        return trail.get("security_group_id")
    resp = ctx.aws.ec2.describe_security_groups(Filters=[_run_filter(ctx), {
        "Name": "group-name", "Values": [trail["security_group_name"]]}])
    groups = resp.get("SecurityGroups", [])
    return groups[0]["GroupId"] if groups else None


async def _terminate(ctx: Ec2Context, ids: list[str]) -> None:
    if not ids or ctx.trail.get("instance_terminated"):
        return
    await terminate_instances(ctx.call, ctx.aws.ec2, ids)
    spot = ctx.trail.get("spot_request_id")
    if spot:
        with contextlib.suppress(ClientError):
            await cancel_spot_requests(ctx.call, ctx.aws.ec2, [spot])


async def _delete_key(ctx: Ec2Context) -> None:
    trail = ctx.trail
    if not trail.get("key_created") or trail.get("key_deleted"):
        return
    await delete_key_pair(ctx.call, ctx.aws.ec2, trail["key_name"])
    trail.remember(key_deleted=True)


async def _wait_terminated(ctx: Ec2Context, ids: list[str], timeout: float) -> None:
    reason = await wait_terminated(ctx.call, ctx.aws.ec2, ids, timeout)
    ctx.trail.remember(instance_terminated=True, state_reason=reason or None)
    if reason and "UserInitiated" not in reason:  # it had ended on its own: spot, watchdog
        ctx.notify(ev.Notice(f"instance {ids[0]} had ended before teardown: {reason}"))

"""`trainboard reap`: find and delete the EC2 resources that runs left behind.

Every resource the ec2 runner creates carries the tag ``trainboard:run-id`` (and
``trainboard:owner``, ``trainboard:expires-at``). A tagged resource is an orphan when

- its run is recorded here (``.trainboard/runs/<id>/record.json``) and is no longer
  active: its status is neither "running" nor "detached", or it says "running" but
  the trainboard process it names (``trainboard_pid``) is gone (a crashed run); or
- its ``trainboard:expires-at`` time has passed, whatever the record says.

A resource whose run is not recorded here and whose expiry has not passed is left
alone: it may belong to a run on another machine (a CI job, a colleague). Resources
without the ``trainboard:run-id`` tag are never looked at, let alone touched.

Orphans are instances (not yet terminated), open or active spot requests, key pairs
and security groups. Instances go first; a security group is deleted once the
instances that used it are terminated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from trainboard.backend.reap_ray import reap_heads
from trainboard.backend.runners.base import PreflightError, RunnerError
from trainboard.backend.runners.ec2 import teardown
from trainboard.backend.runners.ec2.client import aws_config, aws_session
from trainboard.backend.runners.ec2.context import TAG_EXPIRES, TAG_RUN
from trainboard.backend.runners.ec2.errors import error_message
from trainboard.backend.store import RunRecord, RunStatus, RunStore

ACTIVE = tuple(s for s in RunStatus if s.is_live)  # running, detached
LIVE_INSTANCE_STATES = teardown.LIVE_INSTANCE_STATES
NO_REGION = ("no AWS region: pass `trainboard reap --region R`, or set AWS_REGION (or AWS_DEFAULT_REGION, "
             "or a region in your AWS profile); reap reads no trainboard config, so runner.region does not apply")
TERMINATE_WAIT = teardown.TERMINATE_TIMEOUT  # seconds for orphan instances to terminate before their groups go
GROUP_RETRY_WAIT = teardown.GROUP_DELETE_TIMEOUT  # seconds of DependencyViolation retries per group
OK, FAILED = 0, 3  # exit codes (trainboard.backend.exitcodes: OK, INFRA_ERROR)


@dataclass(frozen=True)
class Orphan:
    kind: str  # "instance", "spot-request", "key-pair" or "security-group"
    id: str  # instance id, spot request id, key pair name, group id
    run_id: str
    reason: str  # why it is an orphan, for people
    name: str = ""  # the Name tag or group name, when there is one


@dataclass(frozen=True)
class Kept:
    """A tagged resource that is left alone, and why."""

    kind: str
    id: str
    run_id: str
    reason: str


def pid_alive(pid: Any) -> bool:
    """Whether the process ``pid`` may still be running (True when the pid is missing or unusable)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return True  # no usable pid: do not call the run crashed
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def verdict(tags: dict[str, str], runs: dict[str, RunRecord], now: dt.datetime) -> tuple[bool, str] | None:
    """(is an orphan, why) for a resource's tags; None when it is not trainboard's at all."""
    run_id = tags.get(TAG_RUN)
    if not run_id:
        return None
    expires = _parse_time(tags.get(TAG_EXPIRES))
    if expires is not None and expires <= now:
        return True, f"expired at {expires:%Y-%m-%dT%H:%M:%SZ}"
    record = runs.get(run_id)
    if record is None:
        until = f" until {expires:%Y-%m-%dT%H:%M:%SZ}" if expires else ""
        return False, f"run not recorded here, not expired{until}: may belong to another machine"
    status = record.status
    if status not in ACTIVE:
        return True, f"run {status or 'without a status'}"
    if status is RunStatus.RUNNING and not pid_alive(record.trainboard_pid):
        return True, f"run crashed (trainboard pid {record.trainboard_pid} is gone)"
    return False, f"run {status}"


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or [] if "Key" in t}


def _pages(ec2: Any, op: str, key: str, **params: Any) -> Iterable[dict[str, Any]]:
    if ec2.can_paginate(op):
        for page in ec2.get_paginator(op).paginate(**params):
            yield from page.get(key, [])
    else:
        yield from getattr(ec2, op)(**params).get(key, [])


def survey(ec2: Any, store: RunStore, now: dt.datetime) -> tuple[list[Orphan], list[Kept]]:
    """Every resource tagged ``trainboard:run-id`` in the client's region: orphans, and those kept."""
    runs = {r.run_id: r for r in store.all()}
    tagged = [{"Name": "tag-key", "Values": [TAG_RUN]}]
    found: list[tuple[str, str, str, dict[str, str]]] = []  # kind, id, name, tags
    for reservation in _pages(ec2, "describe_instances", "Reservations",
                              Filters=[*tagged, {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]):
        for inst in reservation.get("Instances", []):
            tags = _tags(inst)
            found.append(("instance", inst["InstanceId"], tags.get("Name", ""), tags))
    for req in _pages(ec2, "describe_spot_instance_requests", "SpotInstanceRequests",
                      Filters=[*tagged, {"Name": "state", "Values": ["open", "active"]}]):
        found.append(("spot-request", req["SpotInstanceRequestId"], "", _tags(req)))
    for key in ec2.describe_key_pairs(Filters=tagged).get("KeyPairs", []):
        found.append(("key-pair", key["KeyName"], key["KeyName"], _tags(key)))
    for group in _pages(ec2, "describe_security_groups", "SecurityGroups", Filters=tagged):
        found.append(("security-group", group["GroupId"], group.get("GroupName", ""), _tags(group)))
    orphans: list[Orphan] = []
    kept: list[Kept] = []
    for kind, rid, name, tags in found:
        decided = verdict(tags, runs, now)
        if decided is None:
            continue  # a filter gone wrong: only tagged resources are ever considered
        orphan, reason = decided
        if orphan:
            orphans.append(Orphan(kind, rid, tags[TAG_RUN], reason, name))
        else:
            kept.append(Kept(kind, rid, tags[TAG_RUN], reason))
    return orphans, kept


def find_orphans(ec2_client: Any, store: RunStore, now: dt.datetime) -> list[Orphan]:
    """The resources tagged ``trainboard:run-id`` whose run is over, crashed, or past its expiry.

    Resources of runs not recorded in ``store`` are left out unless expired (they
    may be another machine's); untagged or foreign-tagged ones are never included.
    """
    return survey(ec2_client, store, now)[0]


def delete_orphans(ec2_client: Any, orphans: list[Orphan]) -> list[str]:
    """Delete the orphans: instances (terminate), spot requests (cancel), key pairs, then
    security groups once those instances are terminated. Returns a line per failure."""
    return asyncio.run(_delete_orphans(ec2_client, orphans))


async def _delete_orphans(ec2: Any, orphans: list[Orphan]) -> list[str]:
    """The ec2 runner's teardown steps, one after another in this thread."""
    call = teardown.in_this_thread
    problems: list[str] = []
    by_kind: dict[str, list[Orphan]] = {}
    for orphan in orphans:
        by_kind.setdefault(orphan.kind, []).append(orphan)
    instances = [o.id for o in by_kind.get("instance", [])]
    if instances:
        try:
            await teardown.terminate_instances(call, ec2, instances)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"terminating {', '.join(instances)}: {error_message(exc)}")
            instances = []
    requests = [o.id for o in by_kind.get("spot-request", [])]
    if requests:
        try:
            await teardown.cancel_spot_requests(call, ec2, requests)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"cancelling spot requests {', '.join(requests)}: {error_message(exc)}")
    for key in by_kind.get("key-pair", []):
        try:
            await teardown.delete_key_pair(call, ec2, key.id)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"key pair {key.id}: {error_message(exc)}")
    groups = by_kind.get("security-group", [])
    if groups and instances:
        try:
            await teardown.wait_terminated(call, ec2, instances, TERMINATE_WAIT, noun="instances")
        except RunnerError as exc:
            problems.append(str(exc))
    for group in groups:
        try:
            await teardown.delete_group(call, ec2, group.id, GROUP_RETRY_WAIT)
        except RunnerError as exc:
            problems.append(str(exc))
    return problems


def reap(root: Path, region: str | None, dry_run: bool, echo: Callable[[str], None]) -> int:
    """The `trainboard reap [--dry-run] [--region R]` command. ``root``: the .trainboard folder.

    Prints a line per resource (deleted, or would be with ``dry_run``; and those
    left alone, with why), then a summary. Returns 0, or 3 when AWS could not be
    asked or something could not be deleted.
    """
    store = RunStore(Path(root))
    reap_heads(store, pid_alive, dry_run, echo)  # Ray heads of this machine's runs: no AWS needed
    try:
        session = aws_session(region)
    except PreflightError:  # its only one: no region; the run's own message names the config
        echo(f"reap: {NO_REGION}")
        return FAILED
    try:
        ec2 = session.client("ec2", config=aws_config())
        where = session.region_name
        orphans, kept = survey(ec2, store, dt.datetime.now(dt.UTC))
    except RunnerError as exc:
        echo(f"reap: {exc}")
        return FAILED
    except (ClientError, BotoCoreError) as exc:
        echo(f"reap: could not list EC2 resources: {error_message(exc)}")
        return FAILED
    for item in kept:
        echo(f"keep    {item.kind:<14} {item.id:<24} run {item.run_id}: {item.reason}")
    verb = "would delete" if dry_run else "delete"
    for orphan in orphans:
        echo(f"{verb:<7} {orphan.kind:<14} {orphan.id:<24} run {orphan.run_id}: {orphan.reason}")
    if dry_run:
        echo(f"{len(orphans)} orphaned resource(s) in {where} would be deleted, {len(kept)} kept "
             "(dry run: nothing was deleted)")
        return OK
    if not orphans:
        echo(f"nothing to reap in {where} ({len(kept)} tagged resource(s) kept)")
        return OK
    problems = delete_orphans(ec2, orphans)
    for problem in problems:
        echo(f"problem: {problem}")
    if problems:
        echo(f"{len(orphans)} orphaned resource(s) in {where}: {len(problems)} problem(s) above, "
             f"the rest deleted; {len(kept)} kept. Run `trainboard reap` again to retry.")
        return FAILED
    echo(f"{len(orphans)} orphaned resource(s) in {where} deleted, {len(kept)} kept")
    return OK

"""What the ec2 modules share about one run: its settings, its AWS calls, the trail of what
exists (``resources.json``), the tags every resource carries, and what preflight planned."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainboard.backend import events as ev
from trainboard.backend.runners.ec2.client import AwsCalls

if TYPE_CHECKING:
    from trainboard.backend.config import Ec2RunnerConfig

T = TypeVar("T")

TAG_RUN = "trainboard:run-id"
TAG_OWNER = "trainboard:owner"
TAG_EXPIRES = "trainboard:expires-at"
EXPIRY_MARGIN = dt.timedelta(minutes=30)  # expires-at = launch + max_duration + this

RESOURCES_FILE = "resources.json"  # the trail of what this run created, in the run folder
KEY_FILE = "ec2-key"  # the per-run client private key, in the run folder (0600)


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


class Trail:
    """The run's resources as they come to exist (from any thread), mirrored to resources.json."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.run_dir = run_dir
        self._res: dict[str, Any] = {"run_id": run_id}
        self._lock = threading.Lock()

    def remember(self, **fields: Any) -> None:
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

    def get(self, key: str, default: Any = None) -> Any:
        return self._res.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._res[key]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._res)


@dataclass
class Plan:
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


@dataclass
class Ec2Context:
    """One run's settings, AWS calls and trail; ``notify`` sends an event and never raises."""

    config: Ec2RunnerConfig
    run_id: str
    run_dir: Path
    notify: Callable[[ev.Event], None]
    aws: AwsCalls = field(default_factory=AwsCalls)
    trail: Trail = field(init=False)

    def __post_init__(self) -> None:
        self.trail = Trail(self.run_dir, self.run_id)

    def call(self, fn: Callable[[], T], *, creates: bool = False) -> asyncio.Future[T]:
        return self.aws.call(fn, creates=creates)

    def connect(self) -> None:
        """The AWS clients (blocking: run it through :meth:`call`)."""
        region = self.aws.open(self.config.region or self.trail.get("region"))
        if region is not None:
            self.trail.remember(region=region)

    @property
    def region(self) -> str:
        return str(self.trail.get("region") or self.config.region or "")

    def runs_dir(self) -> str:
        return remote_runs_dir(self.config.remote_dir, self.config.user)

    def key_name(self) -> str:
        return self.config.key_name or f"trainboard-{self.run_id}"

    def group_name(self) -> str:
        return f"trainboard-{self.run_id}"

    def tags(self, owner: str) -> dict[str, str]:
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

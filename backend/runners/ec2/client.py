"""The AWS session and clients, and the worker threads that boto3's blocking calls run in.

boto3 blocks, so every call runs in a thread of :class:`AwsCalls`' pool and is awaited
as an asyncio future; independent calls are issued together. Once teardown begins,
calls that would create something are refused, and teardown waits for those under way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from trainboard.backend.runners.base import PreflightError, RunnerError
from trainboard.backend.runners.ec2.errors import NO_RETRY_CODES

T = TypeVar("T")


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


def fail_fast(response: Any = None, **_: Any) -> None:
    """A ``needs-retry`` hook: raise capacity errors at once instead of retrying them."""
    if response is not None and len(response) > 1 and isinstance(response[1], dict):
        parsed = response[1]
        if parsed.get("Error", {}).get("Code") in NO_RETRY_CODES:
            raise ClientError(parsed, "RunInstances")
    return None


class AwsCalls:
    """One run's clients (ec2, ssm, sts) and the threads their calls run in."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=12, thread_name_prefix="trainboard-aws")
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self.closing = False
        self.session: Any = None
        self.ec2: Any = None
        self.ssm: Any = None
        self.sts: Any = None

    def call(self, fn: Callable[[], T], *, creates: bool = False) -> asyncio.Future[T]:
        """Run a blocking call in a worker thread. A call that creates something is refused
        once teardown began; teardown waits for the calls already under way."""
        if creates and self.closing:
            raise RunnerError("the runner is being torn down: nothing more is created")
        fut = self._pool.submit(fn)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return asyncio.wrap_future(fut)

    def open(self, region: str | None) -> str | None:
        """Make the clients (blocking; once). The session's region when they were made just now."""
        if self.ec2 is not None:
            return None
        session = aws_session(region)
        config = aws_config()
        ec2 = session.client("ec2", config=config)
        ec2.meta.events.register_first("needs-retry.ec2.RunInstances", fail_fast)
        self.ssm = session.client("ssm", config=config)
        self.sts = session.client("sts", config=config)
        self.session, self.ec2 = session, ec2
        return str(session.region_name)

    def close(self) -> list[concurrent.futures.Future[Any]]:
        """Refuse creating calls from now on; the calls still under way."""
        self.closing = True
        return list(self._inflight)

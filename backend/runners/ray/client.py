"""The Ray cluster's job server, asynchronously: submit, look up, stop, read the log.

Ray's ``JobSubmissionClient`` does what needs its packaging (the working dir's upload) and its
error mapping, in a thread; the log is read over the dashboard's log API (64 KiB blocks) with
aiohttp, as the job-logs websocket sends ten lines a message. Headers (a token) come from the
environment and are never printed: errors name the address, not the request.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from trainboard.backend.runners.base import PreflightError, RunnerError
from trainboard.backend.tracking_calls import in_thread

CONNECT_TIMEOUT = 20.0  # seconds for the job server's first answer
CALL_TIMEOUT = 60.0  # seconds for any later call (a submit uploads the working dir)
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def cluster_headers(token_env: str | None) -> dict[str, str]:
    """Ray's ``RAY_JOB_HEADERS`` (a JSON object) and a bearer token from ``token_env``."""
    headers: dict[str, str] = {}
    if raw := os.environ.get("RAY_JOB_HEADERS"):
        try:
            loaded = json.loads(raw)
        except ValueError:
            raise PreflightError("RAY_JOB_HEADERS is not a JSON object of header names and values") from None
        if not isinstance(loaded, dict):
            raise PreflightError("RAY_JOB_HEADERS is not a JSON object of header names and values")
        headers.update({str(k): str(v) for k, v in loaded.items()})
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise PreflightError(f"runner.token_env names {token_env}, which is not set in this environment")
        headers["Authorization"] = f"Bearer {token}"
    return headers


def check_address(address: str) -> str:
    """``http(s)://host[:port]`` without a path; the address with no trailing slash."""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
        raise PreflightError(f"runner.address {address!r} is not a Ray job server's URL: use http://HOST:8265")
    return address.rstrip("/")


class ServerError(RunnerError):
    """The job server answered with an error (its whole text in ``detail``)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class JobServer:
    """One cluster's job server (its dashboard's HTTP API)."""

    def __init__(self, address: str, headers: dict[str, str]) -> None:
        self.address = check_address(address)
        self._headers = headers
        self._client: Any = None
        self._session: Any = None  # aiohttp, for the log stream

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> str:
        """Reach the server (its version check); the cluster's Ray version."""
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError:
            raise PreflightError("Ray is not installed: pip install 'trainboard[ray]'") from None
        for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
            # their INFO lines on stderr would draw over the dashboard
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            # Ray's client sets no timeout on its requests: a daemon thread, given up on after
            # ``timeout``, never holds trainboard's exit.
            self._client = await in_thread(lambda: JobSubmissionClient(self.address, headers=self._headers),
                                           timeout=timeout)
        except TimeoutError:
            raise RunnerError(f"the Ray cluster at {self.address} did not answer within {timeout:g} s") from None
        except Exception as exc:  # ConnectionError, its RuntimeError for a refused version check
            raise RunnerError(f"cannot reach the Ray cluster at {self.address}: {_reason(exc)}") from None
        about = await self._call(self._about)
        return str(about.get("ray_version") or about.get("version") or "?")

    def _about(self) -> dict[str, Any]:
        """The job server's /api/version: its Ray version among others."""
        import requests

        answer = requests.get(f"{self.address}/api/version", headers=self._headers, timeout=CONNECT_TIMEOUT)
        answer.raise_for_status()
        return dict(answer.json())

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._client is None:
            raise RunnerError("not connected to the Ray cluster")
        try:
            return await in_thread(lambda: fn(*args, **kwargs), timeout=CALL_TIMEOUT)
        except TimeoutError:
            raise RunnerError(f"the Ray cluster at {self.address} did not answer within {CALL_TIMEOUT:g} s") from None
        except RuntimeError as exc:
            raise ServerError(f"the Ray cluster at {self.address}: {_reason(exc)}", str(exc)) from None
        except Exception as exc:  # requests' connection errors, mostly
            raise RunnerError(f"the Ray cluster at {self.address} is unreachable: {_reason(exc)}") from None

    async def submit(self, submission_id: str, entrypoint: str, runtime_env: dict[str, Any],
                     resources: dict[str, float], metadata: dict[str, str]) -> bool:
        """Submit a job; False when one with this id is there already (a retried start)."""
        # The snapshot honours .gitignore already; Ray would apply it again and drop params.yaml
        # where a repository ignores it.
        os.environ["RAY_RUNTIME_ENV_IGNORE_GITIGNORE"] = "1"
        try:
            await self._call(self._client.submit_job, entrypoint=entrypoint, submission_id=submission_id,
                             runtime_env=runtime_env, metadata=metadata,
                             entrypoint_num_cpus=resources.get("num_cpus"),
                             entrypoint_num_gpus=resources.get("num_gpus") or None)
        except ServerError as exc:
            if "already exists" in exc.detail:
                return False
            raise
        return True

    async def info(self, submission_id: str) -> Any:
        """Ray's JobDetails; None when the cluster has no such job."""
        try:
            return await self._call(self._client.get_job_info, submission_id)
        except ServerError as exc:
            if "does not exist" in exc.detail:
                return None
            raise

    async def stop(self, submission_id: str) -> None:
        await self._call(self._client.stop_job, submission_id)

    async def full_log(self, submission_id: str) -> bytes:
        """The job's whole log, as ``get_job_logs`` gives it."""
        text = await self._call(self._client.get_job_logs, submission_id)
        return str(text).encode("utf-8", errors="surrogateescape")

    async def stream(self, node_id: str, submission_id: str, follow: bool = True) -> AsyncIterator[bytes]:
        """The job's driver log from its first byte, then as it grows (until the caller stops);
        without ``follow``, up to its end."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT, sock_read=None))
        params = {"node_id": node_id, "filename": f"job-driver-{submission_id}.log", "lines": "-1"}
        if follow:
            params["interval"] = "0.1"
        url = f"{self.address}/api/v0/logs/{'stream' if follow else 'file'}"
        async with self._session.get(url, params=params) as answer:
            if answer.status != 200:
                raise RunnerError(f"the Ray cluster's log API answered {answer.status}")
            async for block in answer.content.iter_any():
                yield block

    async def whole(self, node_id: str, submission_id: str) -> bytes:
        """The driver log read to its end through the log API (faster than get_job_logs)."""
        blocks = [block async for block in self.stream(node_id, submission_id, follow=False)]
        return b"".join(blocks)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)

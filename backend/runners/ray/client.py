"""The Ray cluster's job server, asynchronously: submit, look up, stop, read the log.

Its REST API (the one Ray's ``JobSubmissionClient`` speaks, and ``ray job submit``) over aiohttp,
with timeouts: no ``import ray`` in trainboard's process (most of a second), no thread left
hanging on a silent server. The working dir goes the way Ray's client sends it: a zip package
uploaded once to the cluster (``PUT /api/packages/gcs/_ray_pkg_<hash>.zip``), named in the job's
``runtime_env``. The log is read over the dashboard's log API (64 KiB blocks), as the job-logs
websocket sends ten lines a message. Headers (a token) come from the environment and are never
printed: errors name the address, not the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from trainboard.backend.runners.base import PreflightError, RunnerError

CONNECT_TIMEOUT = 20.0  # seconds for the job server's first answer
CALL_TIMEOUT = 60.0  # seconds for any later call (an upload of the working dir)
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's: the same files make the same package


@dataclass(frozen=True)
class JobInfo:
    """What trainboard reads of a job's details (Ray's JobDetails, as JSON)."""

    status: str
    message: str = ""
    driver_exit_code: int | None = None
    driver_node_id: str = ""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInfo:
        return cls(status=str(data.get("status") or ""), message=str(data.get("message") or ""),
                   driver_exit_code=data.get("driver_exit_code"), driver_node_id=str(data.get("driver_node_id") or ""),
                   runtime_env=dict(data.get("runtime_env") or {}), metadata=dict(data.get("metadata") or {}))


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


def package(folder: Path) -> tuple[str, bytes]:
    """The folder as Ray's working-dir package: its name (after its content) and its zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zipped:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(path.relative_to(folder).as_posix(), _ZIP_TIME)
            entry.external_attr = (path.stat().st_mode & 0o777) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zipped.writestr(entry, path.read_bytes())
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha1(data).hexdigest()[:16]}.zip", data


class ServerError(RunnerError):
    """The job server answered with an error (its whole text in ``detail``)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class JobServer:
    """One cluster's job server (its dashboard's HTTP API)."""

    def __init__(self, address: str, headers: dict[str, str]) -> None:
        self.address = address.rstrip("/")  # its shape is checked with the config (runner.address)
        self._headers = headers
        self._session: Any = None

    def _http(self) -> Any:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def _request(self, method: str, path: str, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> tuple[int, bytes]:
        import aiohttp

        try:
            async with self._http().request(method, self.address + path, timeout=aiohttp.ClientTimeout(
                    total=timeout), **kwargs) as answer:
                return answer.status, await answer.read()
        except TimeoutError:
            raise RunnerError(f"the Ray cluster at {self.address} did not answer within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise RunnerError(f"cannot reach the Ray cluster at {self.address}: {_reason(exc)}") from None

    async def _json(self, method: str, path: str, timeout: float = CALL_TIMEOUT, **kwargs: Any) -> Any:
        status, body = await self._request(method, path, timeout, **kwargs)
        text = body.decode("utf-8", "replace")
        if status != 200:
            raise ServerError(f"the Ray cluster at {self.address} answered {status}: {_reason(text)}", text)
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            raise RunnerError(f"the Ray cluster at {self.address} answered what is not JSON: {_reason(text)}") from None

    async def connect(self, timeout: float = CONNECT_TIMEOUT) -> str:
        """Reach the server; the cluster's Ray version."""
        try:
            about = await self._json("GET", "/api/version", timeout)
        except ServerError as exc:
            raise RunnerError(f"{exc} (is it a Ray dashboard's address?)") from None
        if not isinstance(about, dict) or "ray_version" not in about:
            raise RunnerError(f"{self.address} does not answer as a Ray job server does")
        return str(about["ray_version"])

    async def upload(self, folder: Path) -> str:
        """The folder as a package on the cluster (sent when it is not there yet); its URI."""
        name, data = await asyncio.to_thread(package, folder)
        path = f"/api/packages/gcs/{name}"
        status, _ = await self._request("GET", path)  # also pins it while the job is submitted
        if status == 404:
            await self._json("PUT", path, data=data)
            await self._request("GET", path)
        elif status != 200:
            raise RunnerError(f"the Ray cluster at {self.address} answered {status} about a package")
        return f"gcs://{name}"

    async def submit(self, submission_id: str, entrypoint: str, runtime_env: dict[str, Any],
                     resources: dict[str, float], metadata: dict[str, str]) -> bool:
        """Submit a job (``runtime_env["working_dir"]``: a folder here, uploaded); False when one
        with this id is there already (a retried start)."""
        env = dict(runtime_env)
        if env.get("working_dir"):
            env["working_dir"] = await self.upload(Path(env["working_dir"]))
        body = {"entrypoint": entrypoint, "submission_id": submission_id, "runtime_env": env,
                "metadata": metadata, "entrypoint_num_cpus": resources.get("num_cpus") or 0,
                "entrypoint_num_gpus": resources.get("num_gpus") or 0}
        try:
            await self._json("POST", "/api/jobs/", json=body)
        except ServerError as exc:
            if "already exists" in exc.detail:
                return False
            raise
        return True

    async def info(self, submission_id: str) -> JobInfo | None:
        """The job's details; None when the cluster has no such job."""
        try:
            return JobInfo.from_json(await self._json("GET", f"/api/jobs/{quote(submission_id)}"))
        except ServerError as exc:
            if "does not exist" in exc.detail:
                return None
            raise

    async def stop(self, submission_id: str) -> None:
        await self._json("POST", f"/api/jobs/{quote(submission_id)}/stop")

    async def full_log(self, submission_id: str) -> bytes:
        """The job's whole log, as ``get_job_logs`` gives it."""
        answer = await self._json("GET", f"/api/jobs/{quote(submission_id)}/logs")
        return str(answer.get("logs") or "").encode("utf-8", errors="surrogateescape")

    async def stream(self, node_id: str, submission_id: str, follow: bool = True) -> AsyncIterator[bytes]:
        """The job's driver log from its first byte, then as it grows (until the caller stops);
        without ``follow``, up to its end."""
        import aiohttp

        params = {"node_id": node_id, "filename": f"job-driver-{submission_id}.log", "lines": "-1"}
        if follow:
            params["interval"] = "0.1"
        url = f"{self.address}/api/v0/logs/{'stream' if follow else 'file'}"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=None)
        async with self._http().get(url, params=params, timeout=timeout) as answer:
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


def _reason(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)

"""A real Ray head for the tests, and a proxy in front of it that breaks its log stream.

The head is trainboard's own ``LocalHead`` (``ray start --head`` on 127.0.0.1, free ports, a temp
folder of its own), started once per test session by the worker that runs the ``ray`` group.
The proxy forwards every request to the head as it is; told to, it cuts each log stream after
some bytes (a dropped connection), or ends the first one early and refuses the log API after it
(the stream that stops short, ray#46413), while ``get_job_logs`` still answers.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from trainboard.backend.runners.ray.head import LocalHead

LOG_API = "/api/v0/logs/"


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalHead]:
    loop = asyncio.new_event_loop()
    head = loop.run_until_complete(LocalHead.start(cpus=4))
    try:
        yield head
    finally:
        loop.run_until_complete(head.stop())
        loop.close()


@dataclass
class Faults:
    cut_after: int = 0  # log stream k (from 0) is dropped after (k + 1) x this many bytes (0: never)
    end_early_after: int = 0  # bytes of the first log stream before it ends; then the log API refuses
    streams: int = 0  # log-stream connections served
    cuts: int = 0
    refused: int = 0
    requests: list[str] = field(default_factory=list)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 to ``target``, in a thread of its own."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.faults = Faults()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        from aiohttp import ClientSession, web

        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = ClientSession(loop=self._loop)
        self._ready.set()
        self._loop.run_forever()

    async def _forward(self, request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        faults = self.faults
        faults.requests.append(request.path)
        is_log = request.path.startswith(LOG_API)
        if is_log and faults.end_early_after and faults.streams >= 1:
            faults.refused += 1
            return web.Response(status=503, text="log API unavailable (test proxy)")
        nth = faults.streams
        if is_log:
            faults.streams += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.target + request.path_qs, headers=headers,
                                         data=await request.read()) as upstream:
            if not is_log:
                body = await upstream.read()
                return web.Response(status=upstream.status, body=body,
                                    content_type=upstream.content_type or "application/octet-stream")
            response = web.StreamResponse(status=upstream.status)
            await response.prepare(request)
            limit = faults.end_early_after or faults.cut_after * (nth + 1)
            sent = 0
            async for block in upstream.content.iter_any():
                if limit and sent + len(block) > limit:
                    await response.write(block[:limit - sent])
                    if faults.end_early_after:
                        await response.write_eof()  # a clean end, short of the log's end
                        return response
                    faults.cuts += 1
                    request.transport.close()  # a dropped connection, mid-stream
                    return response
                await response.write(block)
                sent += len(block)
            await response.write_eof()
            return response


@pytest.fixture
def proxy(ray_head: LocalHead) -> Iterator[FaultProxy]:
    p = FaultProxy(ray_head.address).start()
    try:
        yield p
    finally:
        p.stop()


def processes_with(text: str) -> list[str]:
    """Live processes whose command line holds ``text``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and " Z" not in line and "ps -ww" not in line]

"""A local MLflow tracking server for jobs on remote runners.

A job on an SSH host or an EC2 instance cannot open this machine's SQLite
store. When the tracking URI is local (``sqlite:`` or ``file:``) and the runner
is remote, trainboard serves the same store over HTTP on 127.0.0.1 here and the
runner forwards a port on *its* 127.0.0.1 to it through the SSH connection: the
job logs to ``http://127.0.0.1:<port>`` there, and nothing listens on a public
address. trainboard itself keeps reading the store directly.

The server is MLflow's own tracking app, served from a thread of this process
(werkzeug, threaded): it starts in about a second once mlflow is imported
(``mlflow server`` takes 5 to 10 s to start its own interpreters) and cannot
outlive the run.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from trainboard.backend.compat_mlflow import tracking_app
from trainboard.backend.store_template import seed_store
from trainboard.backend.tracking import TrackingError, prefetch

LOCAL_SCHEMES = ("sqlite:", "file:")


def needs_forwarding(tracking_uri: str, shares_filesystem: bool) -> bool:
    """Whether a job on a runner (sharing this machine's files or not) needs the local server to reach the store."""
    return not shares_filesystem and tracking_uri.startswith(LOCAL_SCHEMES)


class LocalTrackingServer:
    """MLflow's tracking API for ``backend_uri`` on 127.0.0.1:<port> (a free one by default), in a thread."""

    def __init__(self, backend_uri: str, artifact_root: Path, port: int = 0) -> None:
        self.backend_uri = backend_uri
        self.artifact_root = artifact_root
        self.port = port  # 0: a free port, known once started
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self._start)
        except Exception as exc:
            raise TrackingError(f"could not start the local MLflow server: {type(exc).__name__}: {exc}") from exc

    def _start(self) -> None:
        prefetch().join()
        seed_store(self.backend_uri)  # a new store: a copy of an empty one, not seconds of migrations
        # MLflow's app with our store made now (so a bad store fails here), not a store an
        # earlier server of this process left cached: MLflow's privates, see compat_mlflow.
        app = tracking_app(self.backend_uri, str(self.artifact_root))
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
                pass  # a request log on stderr would draw over the dashboard

        self._server = make_server("127.0.0.1", self.port, app, threaded=True, request_handler=QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mlflow-server", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()

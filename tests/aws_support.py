"""AWS for tests, offline: moto's server, a fault/latency proxy in front of it, an instance "boot".

    moto = MotoServer.start()                      # moto's ThreadedMotoServer on 127.0.0.1
    proxy = AwsProxy(moto.url, latency=0.1)        # every call 100 ms slower; faults by rule
    proxy.faults.append(Fault("RunInstances", contains="MarketType=spot", unless="DryRun=true",
                              status=500, code="InsufficientInstanceCapacity"))
    boot = BootEmulator(moto.url, port=free_port(), workdir=tmp)   # "boots" what RunInstances made
    boot.start()

The proxy answers a request matching a :class:`Fault` with an AWS-shaped error (EC2
XML, STS XML or JSON as the protocol expects) and forwards the rest to moto. It
records every request's action and times, so :func:`sequential_round_trips` can
tell how many calls had to wait for one another.

The boot emulator stands in for EC2 starting the instance: it watches moto for
new instances, reads their user data and starts a real OpenSSH sshd (via
tests/sshd_support.py) with the host key and authorized key the user data
injects, on the port the test names in TRAINBOARD_EC2_SSH_ADDRESS. It can also
run the user data's watchdog script for real, with the IMDS URL pointing at
:class:`ImdsServer` and the shutdown command replaced by touching a file: the
real ``shutdown`` never runs here.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.sshd_support import Sshd, free_port, start_sshd

REGION = "us-east-1"
EC2_VERSION = "Version=2016-11-15"  # in the body of every EC2 (query protocol) request
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


# --------------------------------------------------------------------------- moto


class MotoServer:
    """moto's ThreadedMotoServer on 127.0.0.1 and a free port."""

    def __init__(self, server: Any, url: str) -> None:
        self.server = server
        self.url = url

    @classmethod
    def start(cls) -> MotoServer:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return cls(server, f"http://127.0.0.1:{port}")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, service: str, region: str = REGION) -> Any:
        """A client straight to moto (not through any proxy): the test's own view of AWS."""
        return boto3.client(service, region_name=region, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.server.stop()


# --------------------------------------------------------------------------- the proxy


@dataclass
class Fault:
    """Answer matching requests with an AWS error instead of forwarding them.

    ``action``: the API action (``RunInstances``), or None for any; ``contains`` /
    ``unless``: substrings the raw request body must / must not hold; ``count``:
    how many requests it answers (None: all).
    """

    action: str | None
    contains: str = ""
    unless: str = ""
    count: int | None = None
    status: int = 400
    code: str = "InternalError"
    message: str = "injected by the test proxy"
    hits: int = 0

    def matches(self, action: str, body: str) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.action is not None and self.action != action:
            return False
        if self.contains and self.contains not in body:
            return False
        return not (self.unless and self.unless in body)


def throttling(count: int) -> Fault:
    """EC2's throttling answer for the next ``count`` EC2 calls."""
    return Fault(None, contains=EC2_VERSION, count=count, status=503, code="RequestLimitExceeded",
                 message="Request limit exceeded.")


@dataclass(frozen=True)
class Call:
    action: str
    start: float
    end: float
    status: int
    dry_run: bool
    faulted: str = ""  # the injected error code, "" when moto answered


def sequential_round_trips(calls: list[Call]) -> int:
    """The longest chain of calls each starting after the previous one ended.

    Earliest-end-first greedy picks a largest set of pairwise non-overlapping
    intervals, and such a set is exactly a chain.
    """
    count, free_at = 0, float("-inf")
    for call in sorted(calls, key=lambda c: c.end):
        if call.start >= free_at:
            count += 1
            free_at = call.end
    return count


def _action(headers: Any, body: str) -> str:
    target = headers.get("X-Amz-Target", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    params = urllib.parse.parse_qs(body)
    return params.get("Action", ["?"])[0]


def _error_body(action: str, json_protocol: bool, body: str, fault: Fault) -> tuple[bytes, str]:
    request_id = secrets.token_hex(16)
    if json_protocol:
        data = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        return data, "application/x-amz-json-1.1"
    if EC2_VERSION in body:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{fault.code}</Code>'
               f"<Message>{fault.message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    else:
        kind = "Receiver" if fault.status >= 500 else "Sender"
        xml = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{fault.code}</Code><Message>{fault.message}"
               f"</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return xml.encode(), "text/xml"


class AwsProxy:
    """An HTTP reverse proxy in front of moto: added latency, injected faults, a log of calls."""

    def __init__(self, upstream: str, latency: float = 0.0) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.latency = latency
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        # action -> callbacks run (in the proxy's thread) once its answer has been sent
        self.after: dict[str, list[Callable[[Call], None]]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="aws-proxy", daemon=True)
        self._thread.start()

    def _handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        start = time.monotonic()
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        body = raw.decode("utf-8", "replace")
        action = _action(req.headers, body)
        json_protocol = bool(req.headers.get("X-Amz-Target"))
        dry_run = "DryRun=true" in body
        with self._lock:
            fault = next((f for f in self.faults if f.matches(action, body)), None)
            if fault is not None:
                fault.hits += 1
        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            data, ctype = _error_body(action, json_protocol, body, fault)
            status, headers = fault.status, [("Content-Type", ctype)]
            if json_protocol:
                headers.append(("x-amzn-ErrorType", fault.code))
        else:
            status, headers, data = self._forward(req, raw)
        req.send_response(status)
        for name, value in headers:
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)
        req.wfile.flush()
        call = Call(action, start, time.monotonic(), status, dry_run, fault.code if fault else "")
        with self._lock:
            self.calls.append(call)
            hooks = list(self.after.get(action, ()))
        for hook in hooks:
            hook(call)

    def _forward(self, req: http.server.BaseHTTPRequestHandler, raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            skip = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
            headers = {k: v for k, v in req.headers.items() if k.lower() not in skip}
            headers["Host"] = f"{self.upstream.hostname}:{self.upstream.port}"
            conn.request(req.command, req.path, body=raw, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in skip | {"date", "server"}]
            return resp.status, out, data
        finally:
            conn.close()

    def actions(self, *, dry_run: bool | None = None, answered: bool = False) -> list[str]:
        """The actions called so far, in order; ``answered``: only those moto answered."""
        with self._lock:
            calls = list(self.calls)
        return [c.action for c in calls
                if (dry_run is None or c.dry_run == dry_run) and (not answered or not c.faulted)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- IMDS


class ImdsServer:
    """Just enough of the instance metadata service (IMDSv2 only) for the watchdog.

    ``interrupt(notice)`` makes ``spot/instance-action`` answer ``notice`` (200);
    until then it is 404, as on an instance with no interruption scheduled.
    Requests without a valid session token get 401, as with ``HttpTokens: required``.
    """

    def __init__(self) -> None:
        self.notice: str | None = None
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        imds = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: str = "") -> None:
                imds.requests.append((self.command, self.path, status))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._reply(400)
                token = secrets.token_urlsafe(16)
                imds.tokens.add(token)
                self._reply(200, token)

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self._reply(401)
                if self.path == "/latest/meta-data/spot/instance-action" and imds.notice is not None:
                    return self._reply(200, imds.notice)
                self._reply(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="imds", daemon=True).start()

    def interrupt(self, action: str = "terminate", seconds: int = 120) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        self.notice = json.dumps({"action": action, "time": when})
        return self.notice

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- the boot


@dataclass
class Booted:
    instance_id: str
    user_data: str
    cloud_config: dict[str, Any]
    sshd: Sshd | None = None
    watchdog: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=Path)

    @property
    def shutdown_marker(self) -> Path:
        return self.workdir / "shutdown-requested"


class BootEmulator:
    """Boots what RunInstances made: a real sshd per new instance, per its user data.

    ``mode``: "boot" (the injected host key), "wrong-host-key" (a different one: an
    impostor), or "never" (the instance never answers SSH). ``imds_url``: also run
    the watchdog from the user data against that IMDS stand-in.
    """

    def __init__(self, moto_url: str, port: int, workdir: Path, *, mode: str = "boot",
                 imds_url: str | None = None, region: str = REGION) -> None:
        self.ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_url,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        self.port = port
        self.workdir = Path(workdir)
        self.mode = mode
        self.imds_url = imds_url
        self.booted: dict[str, Booted] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="boot-emulator", daemon=True)

    def start(self) -> BootEmulator:
        self._thread.start()
        return self

    def wait_booted(self, timeout: float = 10.0) -> Booted:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.booted:
                return next(iter(self.booted.values()))
            time.sleep(0.02)
        raise AssertionError(f"no instance booted within {timeout} s; errors: {self.errors}")

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                resp = self.ec2.describe_instances()
                for reservation in resp.get("Reservations", []):
                    for inst in reservation.get("Instances", []):
                        self._see(inst)
            except Exception as exc:  # keep watching: the test reads the errors
                self.errors.append(repr(exc))
            self._stop.wait(0.05)

    def _see(self, inst: dict[str, Any]) -> None:
        iid, state = inst["InstanceId"], inst["State"]["Name"]
        booted = self.booted.get(iid)
        if booted is None and state in ("pending", "running"):
            self._boot(iid)
        elif booted is not None and state in ("shutting-down", "terminated"):
            self._halt(booted)

    def _boot(self, iid: str) -> None:
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        encoded = (attr.get("UserData") or {}).get("Value") or ""
        text = base64.b64decode(encoded).decode() if encoded else ""
        config = yaml.safe_load(text) if text.startswith("#cloud-config") else {}
        workdir = self.workdir / iid
        workdir.mkdir(parents=True, exist_ok=True)
        booted = Booted(iid, text, config or {}, workdir=workdir)
        self.booted[iid] = booted
        if self.mode == "never":
            return
        host_key = None
        if self.mode == "boot":
            host_key = workdir / "injected_host_key"
            host_key.write_text(config["ssh_keys"]["ed25519_private"])
            os.chmod(host_key, 0o600)
        booted.sshd = start_sshd(workdir / "sshd", host_key=host_key,
                                 authorized_keys=config.get("ssh_authorized_keys") or [], port=self.port)
        if self.imds_url:
            booted.watchdog = self._run_watchdog(booted)

    def _run_watchdog(self, booted: Booted) -> subprocess.Popen[bytes]:
        files = {f["path"]: f["content"] for f in booted.cloud_config.get("write_files", [])}
        script = booted.workdir / "watchdog.sh"
        script.write_text(files["/usr/local/sbin/trainboard-watchdog"])
        env = dict(os.environ)
        env.update({
            "TRAINBOARD_IMDS_URL": self.imds_url or "",
            "TRAINBOARD_SHUTDOWN_CMD": f"touch {booted.shutdown_marker}",
            "TRAINBOARD_WATCHDOG_POLL": "0.2",
            "TRAINBOARD_WATCHDOG_STATE": str(booted.workdir / "watchdog-state"),
        })
        assert env["TRAINBOARD_SHUTDOWN_CMD"].startswith("touch "), "never run the real shutdown here"
        log = open(booted.workdir / "watchdog.log", "ab")  # noqa: SIM115 (the child holds it)
        return subprocess.Popen(["bash", str(script)], env=env, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def _halt(self, booted: Booted) -> None:
        if booted.sshd is not None:
            booted.sshd.stop()
        if booted.watchdog is not None and booted.watchdog.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(booted.watchdog.pid, signal.SIGKILL)
            booted.watchdog.wait(5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for booted in self.booted.values():
            self._halt(booted)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Aws:
    """One test's AWS: moto (reset), the proxy the code under test talks to, the test's own clients."""

    moto: MotoServer
    proxy: AwsProxy
    region: str = REGION

    def client(self, service: str) -> Any:
        return self.moto.client(service, self.region)


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp: Path) -> None:
    """Point boto3 at ``endpoint`` with test credentials, and away from any real ones."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Aws]:
    """moto reset to empty, a fresh proxy in front of it, boto3's environment pointed at the proxy."""
    moto_server.reset()
    proxy = AwsProxy(moto_server.url)
    aws_env(monkeypatch, proxy.url, tmp_path)
    try:
        yield Aws(moto_server, proxy)
    finally:
        proxy.close()


def run_resources(aws: Aws, run_id: str) -> dict[str, list[str]]:
    """What AWS still holds for a run (by its tag): live instances, key pairs, security groups."""
    from trainboard.backend.runners.ec2 import TAG_RUN

    ec2 = aws.client("ec2")
    by_tag = [{"Name": f"tag:{TAG_RUN}", "Values": [run_id]}]
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    instances = [i["InstanceId"]
                 for r in ec2.describe_instances(Filters=[*by_tag, {"Name": "instance-state-name", "Values": live}])
                 ["Reservations"] for i in r["Instances"]]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs(Filters=by_tag)["KeyPairs"]]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=by_tag)["SecurityGroups"]]
    return {"instances": instances, "key_pairs": keys, "security_groups": groups}

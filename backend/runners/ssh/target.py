"""Where the ssh runner connects: the target, completed from the ssh config, and its host keys.

Host keys are always verified: against ``known_hosts`` (or ~/.ssh/known_hosts, or
the ssh config's UserKnownHostsFile), or, when the target lists ``host_keys``,
against those only.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from trainboard.backend.runners.base import RunnerError

KEEPALIVE_COUNT_MAX = 3  # unanswered keepalives before the connection counts as lost
STALL_TIMEOUT = 10.0  # default: seconds without an answer before a connection counts as lost (see health.py)
ORPHAN_TIMEOUT = 900.0  # seconds without word from trainboard before a job's watchdog stops it (0: never)
# AES-GCM first (AES-NI makes it the cheapest cipher here: ~1.5x the log throughput of
# asyncssh's default chacha20-poly1305); the rest of asyncssh's list after it. An ssh
# config's Ciphers line wins.
PREFERRED_CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"


class HostKeyError(RunnerError):
    """The host's key is unknown or does not match: never retried, never skipped."""


@dataclass
class SshTarget:
    """Where and how to connect. ``None`` fields come from the ssh config, then the defaults."""

    host: str
    port: int | None = 22  # None: the ssh config's Port, else 22
    user: str | None = None
    client_keys: list[str] | None = None  # private key paths; None = asyncssh defaults (agent, ~/.ssh/id_*)
    known_hosts: str | None = None  # known_hosts path; None = ~/.ssh/known_hosts
    host_keys: list[str] = field(default_factory=list)  # "ssh-ed25519 AAAA..." lines; when given, ONLY these
    config_path: str | None = None  # ssh config file; None = ~/.ssh/config if it exists
    keepalive: float = 15.0
    connect_timeout: float = 20.0
    stall_timeout: float = STALL_TIMEOUT  # no answer this long: the connection is dropped and made again
    orphan_timeout: float = ORPHAN_TIMEOUT  # no word from trainboard this long: the host stops the job

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "user": self.user, "client_keys": self.client_keys,
            "known_hosts": self.known_hosts, "host_keys": list(self.host_keys), "config_path": self.config_path,
            "keepalive": self.keepalive, "connect_timeout": self.connect_timeout,
            "stall_timeout": self.stall_timeout, "orphan_timeout": self.orphan_timeout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SshTarget:
        return cls(
            host=str(data["host"]), port=data.get("port"), user=data.get("user"),
            client_keys=data.get("client_keys"), known_hosts=data.get("known_hosts"),
            host_keys=list(data.get("host_keys") or []), config_path=data.get("config_path"),
            keepalive=float(data.get("keepalive", 15.0)), connect_timeout=float(data.get("connect_timeout", 20.0)),
            stall_timeout=float(data.get("stall_timeout", STALL_TIMEOUT)),
            orphan_timeout=float(data.get("orphan_timeout", ORPHAN_TIMEOUT)),
        )


def expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path


async def connect_options(t: SshTarget) -> tuple[dict[str, Any], asyncssh.SSHClientConnectionOptions]:
    """asyncssh.connect arguments for ``t`` (without ``known_hosts``: see :func:`trusted`), and the
    options they make, completed from the ssh config (user, host name, port, known hosts files)."""
    kwargs: dict[str, Any] = {
        "host": t.host,
        "keepalive_interval": t.keepalive,
        "keepalive_count_max": KEEPALIVE_COUNT_MAX,
        "connect_timeout": t.connect_timeout,
    }
    if t.config_path:
        if not os.path.isfile(t.config_path):
            raise RunnerError(f"ssh config file {t.config_path} does not exist")
        kwargs["config"] = [t.config_path]
    elif os.access(default_config := os.path.expanduser("~/.ssh/config"), os.R_OK):
        # Named explicitly: building the options by hand does not read the default file.
        kwargs["config"] = [default_config]
    if t.port is not None:
        kwargs["port"] = t.port
    if t.user:
        kwargs["username"] = t.user
    if t.client_keys is not None:
        kwargs["client_keys"] = [expand(k) for k in t.client_keys]
    try:
        probe = await asyncssh.SSHClientConnectionOptions.construct(**kwargs)
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise RunnerError(f"bad ssh settings for {t.host}: {exc}") from exc
    if probe.config.get("Ciphers") is None:
        kwargs["encryption_algs"] = PREFERRED_CIPHERS
    return kwargs, probe


def trusted(t: SshTarget, from_config: Any) -> tuple[Any, list[str]]:
    """What asyncssh's ``known_hosts`` gets (never None: that would turn checking off), and the
    known hosts files it names (for the messages)."""
    if t.host_keys:
        try:
            keys = [asyncssh.import_public_key(k) for k in t.host_keys]
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise RunnerError(f"bad host key for {t.host}: {exc}") from exc
        return (keys, [], []), []
    if t.known_hosts:
        candidates = [t.known_hosts]
    elif isinstance(from_config, list | tuple) and from_config and all(isinstance(p, str) for p in from_config):
        candidates = [os.path.expanduser(p) for p in from_config]  # UserKnownHostsFile from the ssh config
    else:
        candidates = [os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts"]
    existing = [p for p in candidates if os.path.isfile(p)]
    return (existing if existing else ([], [], [])), existing or candidates[:1]  # no file: nothing is trusted


def host_key_message(t: SshTarget, host: str, port: int, address: str, files: list[str], exc: Exception) -> str:
    """Why the host key of ``host``:``port`` was refused, and what to do about it."""
    shown = host if port == 22 else f"[{host}]:{port}"
    if t.host_keys:
        return (f"the host key of {shown} does not match the key trainboard expected for it ({exc}): "
                "refusing to connect")
    known: list[Any] = []
    with contextlib.suppress(Exception):
        known = list(asyncssh.read_known_hosts([f for f in files if os.path.isfile(f)])
                     .match(host, host, None if port == 22 else port)[0])
    where = ", ".join(files) or "~/.ssh/known_hosts"
    if known:
        return (f"the host key of {shown} does not match the one in {where}: it may be a different machine "
                f"(or an attack). If the host was reinstalled, remove the old key (ssh-keygen -R '{shown}'"
                f"{' -f ' + files[0] if files else ''}) and add the new one after checking its fingerprint")
    port_opt = "" if port == 22 else f"-p {port} "
    return (f"the host key of {shown} is unknown (not in {where}). Check its fingerprint and add it: "
            f"ssh-keyscan {port_opt}{host} >> {files[0] if files else '~/.ssh/known_hosts'} "
            f"(or connect once with ssh {port_opt}{address.split(':')[0]})")

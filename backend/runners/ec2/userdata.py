"""The instance's user data: ``cloud-config.yaml`` filled in with the run's keys and the
watchdog, ``instance_watchdog.sh`` filled in with the run's folder, user and limits.

Both are package data next to this module. The watchdog's ``@NAME@`` placeholders are
replaced whole; the environment of a running watchdog may still override the IMDS URL,
the shutdown command, the poll interval and its state folder (tests do, to run it safely).
"""

from __future__ import annotations

import functools
import shlex
from importlib import resources
from typing import Any

import yaml

PACKAGE = "trainboard.backend.runners.ec2"
WATCHDOG_SOURCE = "instance_watchdog.sh"
CLOUD_CONFIG_SOURCE = "cloud-config.yaml"


@functools.cache
def _source(name: str) -> str:
    return resources.files(PACKAGE).joinpath(name).read_text()


def watchdog_script(run_dir: str, user: str, max_seconds: int, idle_seconds: int) -> str:
    """The instance's dead-man switch (bash): shutdown after ``max_seconds``, or ``idle_seconds``
    after the job ended; a spot interruption notice becomes a file and SIGTERM to the job."""
    q = shlex.quote
    values = {
        "@RUN_DIR@": q(run_dir),
        "@RUN_USER@": q(user),
        "@MAX_SECONDS@": str(int(max_seconds)),
        "@IDLE_SECONDS@": str(int(idle_seconds)),
    }
    script = _source(WATCHDOG_SOURCE)
    for placeholder, value in values.items():
        if placeholder not in script:
            raise RuntimeError(f"{WATCHDOG_SOURCE} lacks {placeholder}: a broken installation")
        script = script.replace(placeholder, value)
    return script


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings (keys, the script) as literal blocks, readable in the console."""


def _str_block(dumper: Any, data: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_BlockDumper.add_representer(str, _str_block)


def cloud_config(*, host_private: str, host_public: str, authorized_key: str | None, watchdog: str) -> str:
    """The instance's user data: our host key, the run's client key, the watchdog."""
    doc: dict[str, Any] = yaml.safe_load(_source(CLOUD_CONFIG_SOURCE))
    doc["ssh_keys"] = {"ed25519_private": host_private, "ed25519_public": host_public}
    if authorized_key:
        doc["ssh_authorized_keys"] = [authorized_key]
    else:
        del doc["ssh_authorized_keys"]
    doc["write_files"][0]["content"] = watchdog
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=1000)

"""DVC's settings and the repository-relative paths shared by the reading side (``dvc``) and the
runner's commands (``dvc_commands``): the remote, the AWS environment, path checks, a bounded git call."""

from __future__ import annotations

import posixpath
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

REMOTE_NAME = "trainboard"  # the remote's name in the workspace's .dvc/config.local
DVC_ENV = {"DVC_NO_ANALYTICS": "1"}  # for the JobSpec env of every job that runs dvc
DEFAULT_STORAGE = ".trainboard/dvc-storage"  # the default remote, under the repository root
# What a job that pushes to S3 from a remote runner needs from this machine's environment
# (none of it is written to a file by this module; EC2 instance profiles need none of it).
AWS_ENV_NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)

_MISSING_DVC = 'trainboard: dvc is not installed on the runner (pip install "dvc[s3]")'
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S")


class DvcError(ValueError):
    """A DVC setting or file trainboard cannot use; ``str()`` says which and why."""


# --------------------------------------------------------------------------- paths and settings


def normalize_path(path: str) -> str:
    """A repository-relative POSIX path without ``./`` or a trailing slash (``model/`` -> ``model``)."""
    text = path.replace("\\", "/").strip()
    if not text or text.startswith("/") or re.match(r"^[a-zA-Z]:", text):
        raise DvcError(f"{path!r} must be a path relative to the repository root")
    norm = posixpath.normpath(text)
    if norm == "." or norm == ".." or norm.startswith("../"):
        raise DvcError(f"{path!r} must name something inside the repository")
    if norm == ".dvc" or norm.startswith(".dvc/") or norm == ".git" or norm.startswith(".git/"):
        raise DvcError(f"{path!r} is DVC's or git's own folder")
    return norm


def check_remote(url: str) -> str:
    """A remote trainboard can push to: an absolute local path or a ``scheme://`` URL."""
    text = url.strip()
    if _URL.match(text) or Path(text).is_absolute():
        return text
    raise DvcError(f"DVC remote {url!r} must be an absolute path or a URL such as s3://bucket/prefix")


def default_remote(repo_root: Path) -> str:
    """The default remote: a local folder under trainboard's own, absolute."""
    return str((repo_root / DEFAULT_STORAGE).resolve())


def is_local_remote(url: str) -> bool:
    return not _URL.match(url.strip())


def aws_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The AWS settings of ``environ`` that a remote runner's push to S3 needs (see AWS_ENV_NAMES)."""
    return {name: environ[name] for name in AWS_ENV_NAMES if environ.get(name)}


def _sibling(path: str, name: str) -> str:
    parent = posixpath.dirname(path)
    return posixpath.join(parent, name) if parent else name


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _git(repo_root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None

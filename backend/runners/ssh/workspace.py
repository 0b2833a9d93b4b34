"""The ssh runner's workspace transfers: the code in (one tar over one channel), files back out."""

from __future__ import annotations

import asyncio
import io
import os
import posixpath
import shlex
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from trainboard.backend.runners.base import RunnerError
from trainboard.backend.runners.ssh.connection import SshLink
from trainboard.backend.runners.ssh.shell import as_text


async def sync(link: SshLink, workspace: str, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
    """The listed files (and ``extra`` members) into ``workspace`` on the host."""
    data = await asyncio.to_thread(build_tar, Path(source), files, extra)
    ws = shlex.quote(workspace)
    with link.health.bulk_transfer():
        status, _, err = await link.execute(f"mkdir -p {ws} && tar -xzf - --no-same-owner -C {ws}", input=data)
    if status != 0:
        raise RunnerError(f"could not unpack the code on {link.address}: {as_text(err).strip()}")


async def fetch(link: SshLink, workspace: str, relpath: str, dest: Path) -> bool:
    """A file or folder of ``workspace`` into ``dest`` (a tar stream back); False when missing."""
    rel = posixpath.normpath(relpath)
    if rel.startswith("../") or rel == ".." or posixpath.isabs(rel):
        raise RunnerError(f"{relpath!r} is outside the workspace")
    parent, base = posixpath.split(rel)
    q = shlex.quote
    script = (
        f"cd {q(posixpath.join(workspace, parent or '.'))} 2>/dev/null || exit 44\n"
        f"[ -e {q(base)} ] || [ -L {q(base)} ] || exit 44\n"
        f"exec tar -cf - -- {q(base)}\n"
    )
    with link.health.bulk_transfer():
        status, out, err = await link.execute(script)
    if status == 44:
        return False
    if status != 0:
        raise RunnerError(f"could not fetch {relpath} from {link.address}: {as_text(err).strip()}")
    try:
        await asyncio.to_thread(unpack_one, out, base, Path(dest))
    except (tarfile.TarError, OSError) as exc:
        raise RunnerError(f"could not unpack {relpath} from {link.address} into {dest}: {exc}") from exc
    return True


def build_tar(source: Path, files: list[str], extra: dict[str, bytes]) -> bytes:
    """A gzip (level 1) tar of ``files`` (relative to ``source``; symlinks kept as links) plus ``extra``."""
    buf = io.BytesIO()

    def owned_by_nobody(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1, format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            src = source / rel
            if src.is_symlink() or src.is_file():
                tar.add(str(src), arcname=rel, recursive=False, filter=owned_by_nobody)
        now = time.time()
        for rel, data in extra.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = int(now)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack_one(data: bytes, base: str, dest: Path) -> None:
    """Extract a one-member tar (``base``: a file or folder) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            tar.extractall(tmp, filter="data")
        got = Path(tmp) / base
        if got.is_dir() and not got.is_symlink():
            shutil.copytree(got, dest, symlinks=True, dirs_exist_ok=True)
        else:
            if dest.is_symlink() or dest.is_file():
                dest.unlink()
            os.replace(got, dest)

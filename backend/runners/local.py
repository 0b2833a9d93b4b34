"""The `local` runner: this machine, the embedded default.

The job runs detached in its own process session (it survives trainboard),
writing its output to a log file and, when it ends, its exit code to another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainboard.backend.runners.base import Capabilities, Host, JobHandle, JobSpec, JobStatus, Notify, RunnerError
from trainboard.backend.runners.jobscript import job_script


class LocalRunner:
    kind = "local"
    capabilities = Capabilities(shares_filesystem=True)

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.workspace = self.run_dir / "workspace"
        # The job's own files: its script, raw log (secrets and all) and exit code. The
        # session writes the masked <run_dir>/<name>.log; teardown removes the raw logs.
        self.files = self.run_dir / "runner"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.notify: Notify | None = None

    def state(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace)}

    async def reattach(self, state: dict[str, Any]) -> Host:
        return await self.provision()

    async def forward(self, port: int) -> int:
        return port  # the job runs here: 127.0.0.1 is the same machine

    async def detach(self) -> None:
        self._children.clear()  # the job runs on in its own session; nothing to close

    async def provision(self) -> Host:
        self.workspace.mkdir(parents=True, exist_ok=True)
        if shutil.which("bash") is None:
            raise RunnerError("bash is not on PATH: the local runner needs it to run jobs")
        return Host(
            kind=self.kind,
            address="localhost",
            workspace=str(self.workspace),
            details=(("python", sys.executable), ("cpus", str(os.cpu_count() or 1))),
        )

    async def sync(self, source: Path, files: list[str], extra: dict[str, bytes]) -> None:
        await asyncio.to_thread(copy_files, source, files, extra, self.workspace)

    def job_env(self, spec: JobSpec) -> dict[str, str]:
        env = dict(os.environ)
        # `python` in a job means the interpreter trainboard runs in.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("VIRTUAL_ENV", None)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(spec.env)
        return env

    async def start(self, spec: JobSpec) -> JobHandle:
        self.files.mkdir(parents=True, exist_ok=True)
        log_path = self.files / f"{spec.name}.log"
        exit_path = self.files / f"{spec.name}.exit"
        script_path = self.files / f"{spec.name}.sh"
        workdir = self.workspace / spec.workdir
        if not workdir.is_dir():
            raise RunnerError(f"the job's workdir {spec.workdir!r} does not exist in the workspace")
        for stale in (exit_path, log_path):
            stale.unlink(missing_ok=True)
        log_path.touch()
        script_path.write_text(job_script(spec, str(workdir), str(log_path), str(exit_path)))
        try:
            proc = subprocess.Popen(
                ["bash", str(script_path)],
                cwd=str(workdir),
                env=self.job_env(spec),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own session: it outlives trainboard
                close_fds=True,
            )
        except OSError as exc:
            raise RunnerError(f"could not start the {spec.name}: {exc}") from exc
        self._children[proc.pid] = proc
        return JobHandle(
            name=spec.name,
            pid=proc.pid,
            log_path=str(log_path),
            exit_path=str(exit_path),
            started_at=time.time(),
        )

    async def undelivered_metrics(self) -> float | None:
        return None  # the job talks to MLflow directly: nothing in between can lose a call

    async def read_job_env(self, handle: JobHandle) -> dict[str, str]:
        """The running job's environment (its secrets for the redactor on attach), read from
        /proc: the local runner writes it to no file. {} when the job is gone."""
        try:
            data = Path(f"/proc/{handle.pid}/environ").read_bytes()
        except OSError:
            return {}
        pairs = (item.decode("utf-8", "replace").partition("=") for item in data.split(b"\0") if item)
        return {name: value for name, sep, value in pairs if sep}

    async def tail(self, handle: JobHandle, offset: int, limit: int) -> bytes:
        try:
            with open(handle.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read(limit)
        except FileNotFoundError:
            return b""

    async def idle(self, handle: JobHandle, seconds: float) -> None:
        """Wait ``seconds``, or less: until the job's wrapper exits (it writes the exit code first),
        told by a pidfd of the process this runner started; a plain wait for another."""
        child = self._children.get(handle.pid)
        fd = None
        if child is not None and child.returncode is None:  # not reaped: its pidfd says when it ends
            with contextlib.suppress(OSError, AttributeError):  # a kernel before 5.3, not Linux
                fd = os.pidfd_open(child.pid)
        if fd is None:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, exited)
        try:
            await asyncio.wait({exited}, timeout=seconds)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            exited.cancel()

    async def status(self, handle: JobHandle) -> JobStatus:
        code = read_exit_code(handle.exit_path)
        if code is not None:
            self._reap(handle.pid)
            return JobStatus(running=False, exit_code=code)
        if _group_alive(handle.pid, self._children.get(handle.pid)):
            return JobStatus(running=True, exit_code=None)
        code = read_exit_code(handle.exit_path)  # it may have finished in between
        return JobStatus(running=False, exit_code=code)

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        """SIGTERM the job's whole process group, then SIGKILL after ``grace``."""
        child = self._children.get(handle.pid)
        if not _group_alive(handle.pid, child):
            return
        _signal_group(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(handle.pid, child):
                return
            await asyncio.sleep(0.05)
        _signal_group(handle.pid, signal.SIGKILL)
        while _group_alive(handle.pid, child) and time.monotonic() < deadline + 5:
            await asyncio.sleep(0.05)

    async def fetch(self, relpath: str, dest: Path) -> bool:
        return copy_out(self.workspace / relpath, dest)

    async def teardown(self) -> None:
        for pid in list(self._children):
            self._reap(pid)
        for raw in self.files.glob("*.log"):  # the masked copies in run_dir are the logs that stay
            raw.unlink(missing_ok=True)

    def _reap(self, pid: int) -> None:
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            del self._children[pid]


def copy_files(source: Path, files: list[str], extra: dict[str, bytes], dest: Path) -> None:
    """Copy ``files`` (relative to ``source``; symlinks as links) into ``dest``, then write ``extra``."""
    made: set[Path] = set()
    for rel in files:
        src = source / rel
        dst = dest / rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        if src.is_symlink():
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dst)
    for rel, data in extra.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def copy_out(src: Path, dest: Path) -> bool:
    """Copy a file or folder to ``dest`` (a folder merged into what is there); False when missing."""
    if not src.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dest)
    return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def read_exit_code(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int, child: subprocess.Popen[bytes] | None) -> bool:
    """Whether any process of the job's group is still alive (zombies excluded)."""
    if child is not None and child.poll() is None:
        return True  # the leader itself is alive (poll() also reaps it once it exits)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies: check the members' states.
    return _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the ")" that ends the command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False

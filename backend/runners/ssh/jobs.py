"""The ssh runner's jobs: started detached in their own session (setsid) from a wrapper in the
run folder, their status (over SFTP when it can tell), stopping them, and their secrets file."""

from __future__ import annotations

import asyncio
import posixpath
import secrets
import shlex
import time

import asyncssh

from trainboard.backend.runners.base import JobHandle, JobSpec, JobStatus, RunnerError
from trainboard.backend.runners.jobscript import job_script
from trainboard.backend.runners.ssh.connection import SshLink
from trainboard.backend.runners.ssh.files import LogReader, read_small
from trainboard.backend.runners.ssh.shell import (
    ALIVE_FN,
    ENV_NAME,
    MARK,
    PID_WAIT_STEPS,
    RUN_ID,
    as_text,
    exit_code,
    marked,
    valid_pid,
)
from trainboard.backend.runners.ssh.watchdog import Watchdog


class Jobs:
    """Starts, checks and stops the run's jobs on the host."""

    def __init__(self, link: SshLink, logs: LogReader, watchdog: Watchdog) -> None:
        self.link = link
        self.logs = logs
        self.watchdog = watchdog

    def _paths(self, name: str) -> dict[str, str]:
        base = posixpath.join(self.link.run_folder, name)
        return {k: f"{base}.{k}" for k in ("sh", "log", "exit", "pid", "env")}

    async def start(self, spec: JobSpec, workspace: str) -> JobHandle:
        """Write the job's wrapper and start it detached (setsid); its pid, log and exit-file paths."""
        if not RUN_ID.match(spec.name):
            raise RunnerError(f"bad job name {spec.name!r}")
        for name in spec.env:
            if not ENV_NAME.match(name):
                raise RunnerError(f"bad environment variable name {name!r}")
        p = self._paths(spec.name)
        workdir = posixpath.normpath(posixpath.join(workspace, spec.workdir))
        nonce = secrets.token_hex(8)
        env = {"PYTHONUNBUFFERED": "1", **spec.env}
        header, _, body = job_script(spec, workdir, p["log"], p["exit"], p["pid"]).partition("\n")
        # The values (job.env, forwarded MLflow credentials) are in a 0600 file the wrapper
        # sources, never in the wrapper itself; teardown removes it (detach leaves it for attach).
        await self._write_env(p["env"], env)
        script = f"{header}\n# trainboard job {nonce}\n. {shlex.quote(p['env'])} || exit 95\n{body}".encode()
        command = self._start_command(spec, p, workdir, nonce, len(script))
        command += self.watchdog.command(spec.name, p["pid"], p["exit"])
        await self.watchdog.send()
        self.logs.forget(p["log"])
        status, out, err = await self.link.execute(command, input=script)
        pid_text = marked(as_text(out)).get("pid", "")
        if status != 0 or not pid_text.isdigit() or int(pid_text) <= 1:
            why = as_text(err).strip() or f"exit status {status}"
            raise RunnerError(f"could not start the {spec.name} on {self.link.address}: {why}")
        self.watchdog.keep_alive()
        return JobHandle(name=spec.name, pid=int(pid_text), log_path=p["log"], exit_path=p["exit"],
                         started_at=time.time())

    def _start_command(self, spec: JobSpec, p: dict[str, str], workdir: str, nonce: str, size: int) -> str:
        """Shell that puts the wrapper (``size`` bytes, on stdin) in place and starts it; it prints the pid.

        Idempotent, so that it can run again after a drop: a wrapper carrying this
        start's nonce is in place only once the job has been started.
        """
        q = shlex.quote
        sh, tmp = q(p["sh"]), q(p["sh"] + ".tmp")
        return (
            f"cd {q(self.link.run_folder)} || exit 97\n"
            f"[ -d {q(workdir)} ] || {{ echo {q('no such folder in the workspace: ' + spec.workdir)} >&2; exit 98; }}\n"
            f"if ! grep -qsF {nonce} {sh}; then\n"
            f"  rm -f {q(p['exit'])} {q(p['exit'] + '.tmp')} {q(p['pid'])} {q(p['pid'] + '.tmp')} &&"
            f" : > {q(p['log'])} && cat > {tmp} && [ $(( $(wc -c < {tmp}) )) -eq {size} ] &&"
            f" chmod 700 {tmp} && mv -f {tmp} {sh} || exit 96\n"
            f"  (setsid bash {sh} </dev/null >/dev/null 2>&1 &)\n"
            "fi\n"
            f"i=0; while [ ! -s {q(p['pid'])} ] && [ $i -lt {PID_WAIT_STEPS} ]; do sleep 0.025; i=$((i+1)); done\n"
            f"printf '{MARK}pid=%s\\n' \"$(cat {q(p['pid'])} 2>/dev/null)\"\n"
        )

    async def _write_env(self, path: str, env: dict[str, str]) -> None:
        """``export NAME='value'`` lines into ``path`` on the host, created 0600 (umask 077:
        never readable by others, not even while it is written), through stdin."""
        data = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode()
        q = shlex.quote
        tmp = q(path + ".tmp")
        command = (f"umask 077 && cat > {tmp} && [ $(( $(wc -c < {tmp}) )) -eq {len(data)} ] &&"
                   f" chmod 600 {tmp} && mv -f {tmp} {q(path)}")
        status, _, err = await self.link.execute(command, input=data)  # idempotent: retried after a drop
        if status != 0:
            raise RunnerError(f"could not write the job's environment file {path} on {self.link.address}: "
                              f"{as_text(err).strip() or f'exit status {status}'}")

    async def read_env(self, handle: JobHandle) -> dict[str, str]:
        """The job's environment as its secrets file holds it (attach's redactor needs the
        values); {} when the file is gone (after teardown)."""
        path = posixpath.join(posixpath.dirname(handle.exit_path), f"{handle.name}.env")

        async def read(conn: asyncssh.SSHClientConnection) -> bytes | None:
            sftp = await self.link.sftp_client(conn, self.link.gen)
            try:
                async with sftp.open(path, "rb") as fh:
                    data = await fh.read()
            except asyncssh.SFTPNoSuchFile:
                return None
            return data if isinstance(data, bytes) else data.encode()

        data = await self.link.retry(read)
        if not data:
            return {}
        try:
            words = shlex.split(data.decode("utf-8", "replace"))
        except ValueError as exc:
            raise RunnerError(f"the job's environment file {path} on {self.link.address} is unreadable: "
                              f"{exc}") from exc
        pairs = (w.partition("=") for w in words if w != "export")
        return {name: value for name, sep, value in pairs if sep and ENV_NAME.match(name)}

    async def status(self, handle: JobHandle) -> JobStatus:
        """Running or not, the exit code, and the host's interruption notice.

        Over the SFTP session while the job's leader is alive or its exit code is
        written (three small reads, no process started on the host); otherwise
        (the leader gone without an exit code, or a host without /proc) one remote
        command checks the job's whole process group.
        """
        pid = valid_pid(handle.pid)
        known = await self.link.retry(lambda conn: self._status_over_sftp(conn, handle, pid))
        if known is not None:
            return known
        return await self._status_of_group(handle, pid)

    async def _status_over_sftp(self, conn: asyncssh.SSHClientConnection, handle: JobHandle,
                                pid: int) -> JobStatus | None:
        """The status when the exit code or the leader's /proc entry tells it; None otherwise."""
        sftp = await self.link.sftp_client(conn, self.link.gen)
        interruption_path = posixpath.join(posixpath.dirname(handle.exit_path), "interruption")
        code, stat, notice = await asyncio.gather(
            read_small(sftp, handle.exit_path), read_small(sftp, f"/proc/{pid}/stat"),
            read_small(sftp, interruption_path))
        interruption = as_text(notice).strip()
        found = exit_code(as_text(code))
        if found is not None:
            return JobStatus(running=False, exit_code=found, interruption=interruption)
        # /proc/<pid>/stat: "pid (comm) state ppid pgrp ...": the leader, alive, of its own group
        fields = as_text(stat)[as_text(stat).rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pid):
            return JobStatus(running=True, exit_code=None, interruption=interruption)
        return None

    async def _status_of_group(self, handle: JobHandle, pid: int) -> JobStatus:
        """The status from one remote command that checks the job's whole process group."""
        q = shlex.quote
        script = (
            f"{ALIVE_FN}\n"
            f"if alive {pid}; then a=1; else a=0; fi\n"
            f"printf '{MARK}alive=%s\\n' $a\n"
            f"printf '{MARK}exit=%s\\n' \"$(cat {q(handle.exit_path)} 2>/dev/null)\"\n"
            f"printf '{MARK}interruption=\\n'\n"
            f"cat {q(posixpath.join(posixpath.dirname(handle.exit_path), 'interruption'))} 2>/dev/null\n"
        )
        _, out, _ = await self.link.execute(script)
        answer = as_text(out)
        head, sep, interruption = answer.partition(f"{MARK}interruption=\n")
        found = marked(head)
        if not sep or "alive" not in found:
            raise RunnerError(f"unexpected answer from {self.link.address} about the {handle.name}: "
                              f"{answer[-300:]!r}")
        code = exit_code(found.get("exit", ""))
        running = found["alive"] == "1" and code is None
        return JobStatus(running=running, exit_code=code, interruption=interruption.strip())

    async def stop(self, handle: JobHandle, grace: float = 5.0) -> None:
        """SIGTERM the job's process group, SIGKILL what is left after ``grace`` s (all on the host)."""
        pid = valid_pid(handle.pid)
        steps = max(1, int(grace / 0.05))
        script = (
            f"{ALIVE_FN}\n"
            f"alive {pid} || exit 0\n"
            f"kill -TERM -- -{pid} 2>/dev/null\n"
            f"n=0; while alive {pid} && [ $n -lt {steps} ]; do sleep 0.05; n=$((n+1)); done\n"
            f"alive {pid} || exit 0\n"
            f"kill -KILL -- -{pid} 2>/dev/null\n"
            f"n=0; while alive {pid} && [ $n -lt 100 ]; do sleep 0.05; n=$((n+1)); done\n"
            "exit 0\n"
        )
        await self.link.execute(script)

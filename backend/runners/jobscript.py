"""The job wrapper: the bash script every runner (local, ssh, ec2) starts for a job.

It runs the job's commands in its workdir, appends everything they print to the
log, and writes the exit code to a file when the job ends (or is stopped).
"""

from __future__ import annotations

import shlex

from trainboard.backend.runners.base import JobSpec


def job_script(spec: JobSpec, workdir: str, log_path: str | None, exit_path: str | None,
               pid_path: str | None = None) -> str:
    """The bash wrapper that runs a job's commands and records its exit code.

    Every value is shell-quoted: commands run exactly as written, paths and
    names execute nothing. With ``pid_path``, the wrapper first writes its own
    pid (its session and process-group id when started with setsid) there.
    Without ``log_path`` it prints to its own stdout, and without ``exit_path`` its exit
    status is the record (the Ray runner: Ray keeps both).
    """
    q = shlex.quote
    lines = ["#!/usr/bin/env bash"]
    if pid_path is not None:
        lines.append(f"printf '%s\\n' \"$$\" > {q(pid_path + '.tmp')} && mv -f {q(pid_path + '.tmp')} {q(pid_path)}")
    if log_path is not None:
        lines.append(f"exec >>{q(log_path)} 2>&1 </dev/null")
    lines.append("finish() {")
    if exit_path is not None:
        tmp = q(exit_path + ".tmp")
        lines.append(f"  printf '%s\\n' \"$1\" > {tmp} && mv -f {tmp} {q(exit_path)}")
    lines += [
        '  exit "$1"',
        "}",
        "trap 'finish 143' TERM",
        "trap 'finish 130' INT",
        f"cd -- {q(workdir)} || finish 127",
        "rc=0",
    ]
    for command in spec.commands:
        lines.append(f"printf '%s\\n' {q('$ ' + command)}")
        # --norc: over SSH, bash would source ~/.bashrc again for each command (SSH_CLIENT is
        # set) and undo job.env (pyenv or conda init prepending PATH); the wrapper already
        # has the login environment, with job.env exported on top of it.
        lines.append(f"bash --norc -c {q(command)} & wait $!; rc=$?")
        if spec.stop_on_error:
            lines.append('[ "$rc" -eq 0 ] || finish "$rc"')
    lines.append('finish "$rc"')
    return "\n".join(lines) + "\n"

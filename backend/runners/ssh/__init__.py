"""The `ssh` runner: any host reached over SSH (asyncssh). The ec2 runner reuses it.

On the host, each run has one folder, ``<remote_dir>/<run_id>/`` (mode 0700;
``~`` is the remote home, resolved once), holding::

    workspace/            the synced code (and params.yaml)
    <name>.sh             the job wrapper (name: setup or job), see jobscript.job_script
    <name>.env            the job's environment (0600), sourced by the wrapper; gone at teardown
    <name>.log            everything the job printed; tailed by byte offset; gone at teardown
                          (the session keeps the masked copy)
    <name>.exit           its exit code, written when it ends
    <name>.pid            the wrapper's pid: the job's session and process-group id
    interruption          written by the EC2 watchdog on a spot interruption notice

The job is started detached in its own session (``setsid``), so it outlives
the SSH connection. Host keys are always verified (see target.py). A dropped
connection is re-established with exponential backoff by every operation that
needs it (connection.py).

The modules: ``target`` (where to connect, host keys), ``connection`` (the link to
the host: connect, reconnect, retry), ``health`` (the stall check), ``files`` (the
log, tailed over SFTP), ``workspace`` (sync and fetch), ``jobs`` (start, status,
stop), ``watchdog`` (the orphan watchdog and heartbeat), ``forwarding`` (the
MLflow forward and its relay), ``runner`` (SshRunner, which holds them all).
"""

from __future__ import annotations

from trainboard.backend.runners.ssh.runner import SshRunner
from trainboard.backend.runners.ssh.target import HostKeyError, SshTarget

__all__ = ["HostKeyError", "SshRunner", "SshTarget"]

"""Several processes per job: the job's command wrapped in torchrun (``job.processes``).

With ``job.processes: N`` > 1 the training command runs as::

    <launcher> --standalone --nproc-per-node N --no-python bash --norc -c '<command>'

``--standalone`` makes torchrun host its own rendezvous on localhost with a port
the system picks (port 0), so two such jobs on one machine never collide.
``--no-python bash --norc -c`` runs the command exactly as written, once per
rank, through bash as every runner (local, ssh, ec2, ray) runs a command: in the
job's workdir, with the job's env (``MLFLOW_RUN_ID`` included, so every rank
logs into the one MLflow run), plus torchrun's ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``.

The launcher: torchrun is ``python -m torch.distributed.run`` of some Python
that has torch. A remote login's PATH (ssh, ec2) often has no virtual
environment on it, so a bare ``torchrun`` may not be found there although the
command names a Python that has torch (``/opt/venv/bin/python train.py``). So
when the command starts with a Python interpreter, that interpreter launches
(``<it> -m torch.distributed.run``: the one that trains has torch); else
``torchrun`` when it is on PATH, else ``python3 -m torch.distributed.run``.
"""

from __future__ import annotations

import re
import shlex

__all__ = ["distributed_command", "launcher"]

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")


def _interpreter(command: str) -> str | None:
    """The Python the command starts with (after any ``NAME=value`` words), if it does."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: bash will say so; no interpreter to pick
        return None
    for word in words:
        if _ASSIGNMENT.match(word):
            continue
        name = word.rsplit("/", 1)[-1]
        return word if _PYTHON.fullmatch(name) else None
    return None


def launcher(command: str) -> str:
    """The shell words that start torchrun for ``command`` (see the module's docstring)."""
    python = _interpreter(command)
    if python is not None:
        return f"{shlex.quote(python)} -m torch.distributed.run"
    return "$(command -v torchrun >/dev/null 2>&1 && echo torchrun || echo python3 -m torch.distributed.run)"


def distributed_command(command: str, processes: int) -> str:
    """``command`` run by ``processes`` ranks under torchrun; ``command`` itself for one process."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    if processes == 1:
        return command
    return (f"exec {launcher(command)} --standalone --nproc-per-node {processes} "
            f"--no-python bash --norc -c {shlex.quote(command)}")

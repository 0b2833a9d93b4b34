"""What a Ray job runs: the run's snapshot as its working dir, with trainboard's scripts in it.

``job.sh`` is the job wrapper every runner uses (``jobscript.py``), printing to the driver log
Ray keeps; ``outputs.sh`` then copies the job's outputs into ``$TRAINBOARD_OUTPUT_DIR`` (a folder
here for a local head) and, on a remote cluster, uploads them to the MLflow run's artifacts,
where :meth:`RayRunner.fetch` finds them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from trainboard.backend.runners.base import JobSpec
from trainboard.backend.runners.jobscript import job_script

SCRIPTS = ".trainboard-ray"  # in the working dir
ARTIFACT_DIR = "trainboard-outputs"  # the MLflow run's artifact folder of a remote cluster's outputs

_UPLOAD = f"""import os
import mlflow
mlflow.MlflowClient().log_artifacts(os.environ["MLFLOW_RUN_ID"], os.environ["TRAINBOARD_OUTPUT_DIR"], "{ARTIFACT_DIR}")
"""


def write_scripts(working_dir: Path, spec: JobSpec, outputs: list[str], upload: bool) -> str:
    """Write the job's scripts into ``working_dir``; the entrypoint that runs them."""
    folder = working_dir / SCRIPTS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.sh").write_text(job_script(spec, spec.workdir, None, None))
    (folder / "outputs.sh").write_text(outputs_script(spec.workdir, outputs, upload))
    return (f': "${{TRAINBOARD_OUTPUT_DIR:=$PWD/{SCRIPTS}/outputs}}"; export TRAINBOARD_OUTPUT_DIR; '
            f"bash {SCRIPTS}/job.sh; rc=$?; bash {SCRIPTS}/outputs.sh; exit $rc")


def outputs_script(workdir: str, outputs: list[str], upload: bool) -> str:
    """Copy each output (relative to the workdir) to ``$TRAINBOARD_OUTPUT_DIR/<workdir>/<output>``,
    unless the job wrote it there itself; then upload the folder to MLflow when asked."""
    q = shlex.quote
    lines = ["#!/usr/bin/env bash", 'out="$TRAINBOARD_OUTPUT_DIR"', 'mkdir -p -- "$out"']
    for rel in outputs:
        src = (Path(workdir) / rel).as_posix()
        lines.append(f'if [ -e {q(src)} ]; then mkdir -p -- "$out"/{q(str(Path(src).parent))} '
                     f'&& cp -a -- {q(src)} "$out"/{q(src)}; fi')
    if upload:
        lines.append('[ -n "$(ls -A -- "$out")" ] || exit 0')
        lines.append(f"python -c {q(_UPLOAD)} || echo 'trainboard: could not upload the outputs to MLflow' >&2")
    return "\n".join(lines) + "\n"

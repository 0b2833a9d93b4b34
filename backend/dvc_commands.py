"""DVC on the runner and in the checkout: the shell commands that make the workspace a DVC
repository without git, track and push the outputs, the files that come back, and the
``.gitignore`` entries ``dvc add`` would have written in a git checkout."""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from trainboard.backend.dvc_paths import (
    _MISSING_DVC,
    REMOTE_NAME,
    _git,
    _sibling,
    _unique,
    check_remote,
    normalize_path,
)

# --------------------------------------------------------------------------- commands on the runner


def _root_prefix(workdir: str) -> str:
    """How a command that runs in ``workdir`` gets to the workspace root: "" or ``cd -- ../.. && ``."""
    if workdir in ("", "."):
        return ""
    norm = normalize_path(workdir)
    return f"cd -- {shlex.quote('/'.join('..' for _ in norm.split('/')))} && "


def dvc_prepare_commands(workdir: str = ".") -> list[str]:
    """Make the workspace a DVC repository that works without git: before the job
    (``dvc repro`` needs it) and before :func:`dvc_output_commands`.

    ``workdir``: the folder (relative to the workspace root) the commands run in.
    Idempotent. Runs dvc at most once (``dvc init --no-scm``, when the repository
    has no ``.dvc/``): ``core.no_scm`` goes into ``.dvc/config.local`` as a fixed
    text when that file does not exist yet, else through ``dvc config --local``.
    """
    cd = _root_prefix(workdir)
    return [
        f"{cd}command -v dvc >/dev/null 2>&1 || {{ echo {shlex.quote(_MISSING_DVC)} >&2; exit 127; }}",
        f"{cd}test -d .dvc || dvc init --no-scm -q",
        f"{cd}if [ -f .dvc/config.local ]; then dvc config --local core.no_scm true; "
        f"else printf '[core]\\n    no_scm = true\\n' > .dvc/config.local; fi",
    ]


def added_outputs(outputs: Iterable[str], stage_outs: Iterable[str] = ()) -> list[str]:
    """The outputs ``dvc add`` tracks: those that are not (inside) a stage output dvc.lock tracks."""
    stages = [normalize_path(s) for s in stage_outs]
    out = []
    for o in _unique(normalize_path(o) for o in outputs):
        if not any(o == s or o.startswith(s + "/") for s in stages):
            out.append(o)
    return out


def pushed_outputs(outputs: Iterable[str], stage_outs: Iterable[str] = ()) -> list[str]:
    """What :func:`dvc_output_commands` pushes: the added outputs, then the pipeline's cached outputs.
    In a git checkout DVC would list each in a .gitignore: see :func:`ensure_gitignored`."""
    return _unique([*added_outputs(outputs, stage_outs), *(normalize_path(s) for s in stage_outs)])


def dvc_output_commands(
    outputs: Sequence[str],
    remote_url: str,
    *,
    stage_outs: Sequence[str] = (),
    workdir: str = ".",
    endpoint_url: str | None = None,
    prepare: bool = True,
    remote_name: str = REMOTE_NAME,
) -> list[str]:
    """The commands the session runs on the runner after the job: track ``outputs`` with DVC
    and push them, and the cached outputs of the pipeline (``stage_outs``, see
    :class:`DvcProject`), to ``remote_url``. [] when there is nothing to push.

    The remote goes into ``.dvc/config.local`` under ``remote_name``; for S3 its
    ``endpointurl`` is ``endpoint_url`` when given, else ``$AWS_ENDPOINT_URL`` as the
    runner has it, when set; credentials come from the runner's AWS environment and
    are never written. ``prepare``: begin with :func:`dvc_prepare_commands` (harmless
    when they already ran before the job). Every value is shell-quoted.
    """
    q = shlex.quote
    url = check_remote(remote_url)
    added = added_outputs(outputs, stage_outs)
    pushed = pushed_outputs(outputs, stage_outs)
    if not pushed:
        return []
    cd = _root_prefix(workdir)
    name = q(remote_name)
    commands = dvc_prepare_commands(workdir) if prepare else []
    commands.append(f"{cd}dvc remote add --local -f {name} {q(url)}")
    if url.startswith("s3://"):
        if endpoint_url:
            commands.append(f"{cd}dvc remote modify --local {name} endpointurl {q(endpoint_url)}")
        else:
            commands.append(f'{cd}if [ -n "${{AWS_ENDPOINT_URL:-}}" ]; then '
                            f'dvc remote modify --local {name} endpointurl "$AWS_ENDPOINT_URL"; fi')
    if added:
        commands.append(f"{cd}dvc add -q -- {' '.join(q(o) for o in added)}")
    # Path targets only, as ./path (never a stage's name): after a target that names a stage
    # or dvc.yaml, dvc 3.67 leaves out the targets that follow it.
    commands.append(f"{cd}dvc push -r {name} -- {' '.join(q('./' + p) for p in pushed)}")
    return commands


def dvc_return_files(
    outputs: Iterable[str],
    repo_has_dvc_yaml: bool | Iterable[str],
    metrics_files: Iterable[str],
    *,
    stage_outs: Iterable[str] = (),
) -> list[str]:
    """The files to bring back from the workspace into the checkout, at the same relative path:
    ``<output>.dvc`` for each output ``dvc add`` tracked, the ``dvc.lock`` beside each dvc.yaml
    (``repo_has_dvc_yaml``: True for the root one, or the dvc.yaml paths), and the metrics files.
    Some may be missing on the runner (a pipeline that wrote no lock): fetch returns False for them."""
    if isinstance(repo_has_dvc_yaml, bool):
        locks = ["dvc.lock"] if repo_has_dvc_yaml else []
    else:
        locks = [_sibling(normalize_path(p), "dvc.lock") for p in repo_has_dvc_yaml]
    pointers = [f"{o}.dvc" for o in added_outputs(outputs, stage_outs)]
    return _unique([*pointers, *locks, *(normalize_path(m) for m in metrics_files)])


# --------------------------------------------------------------------------- the checkout


def ensure_gitignored(repo_root: Path, paths: Iterable[str]) -> list[str]:
    """Add ``/<name>`` to ``<parent>/.gitignore`` for each path git does not ignore yet, as
    ``dvc add`` does in a git repository (on the runner, without git, it writes none).
    Returns the .gitignore files it changed (repository-relative), for the pull request."""
    changed: list[str] = []
    for rel in _unique(normalize_path(p) for p in paths):
        done = _git(repo_root, "check-ignore", "-q", "--no-index", "--", rel)
        if done is not None and done.returncode == 0:
            continue  # already ignored
        parent, name = posixpath.split(rel)
        ignore = repo_root / parent / ".gitignore" if parent else repo_root / ".gitignore"
        entry = "/" + _escape_gitignore(name)
        text = ignore.read_text() if ignore.exists() else ""
        if entry in text.splitlines():
            continue
        ignore.parent.mkdir(parents=True, exist_ok=True)
        ignore.write_text(text + ("" if not text or text.endswith("\n") else "\n") + entry + "\n")
        changed.append(posixpath.join(parent, ".gitignore") if parent else ".gitignore")
    return _unique(changed)


def _escape_gitignore(name: str) -> str:
    escaped = re.sub(r"([*?\[\]\\!#])", r"\\\1", name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped

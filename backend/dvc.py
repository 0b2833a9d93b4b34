"""DVC: metrics files as a metric source, outputs pushed from the runner, the base branch's metrics.

Nothing here imports DVC: trainboard reads ``dvc.yaml`` and the metrics files
itself, and everything DVC does runs on the runner, as shell commands the
session starts there like any other job (see :func:`dvc_prepare_commands` and
:func:`dvc_output_commands`). All paths in this module are POSIX paths
relative to the repository root, which is also the workspace root on the
runner and the DVC root.

The workspace on the runner is a copy of the repository without ``.git``:
DVC refuses to work there ("... is not a git repository") unless
``core.no_scm`` is set. It is set in ``.dvc/config.local``, which git never
syncs (DVC's own ``.dvc/.gitignore`` lists it) and which never comes back,
as is the remote trainboard pushes to: the committed ``.dvc/config`` is left
as the user wrote it, and no credential is written anywhere (DVC's S3 remote
reads the standard AWS environment).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainboard.backend.tracking import Baseline

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


# --------------------------------------------------------------------------- dvc.yaml


@dataclass(frozen=True, slots=True)
class DvcProject:
    """What trainboard needs to know of a repository's DVC files (all repository-relative)."""

    dvc_yamls: tuple[str, ...]  # every dvc.yaml, the root one first
    metrics_files: tuple[str, ...]  # the `metrics:` of their stages, and their top-level `metrics:`
    stage_outs: tuple[str, ...]  # cached stage outputs (outs, metrics, plots): dvc.lock tracks them
    has_dvc_dir: bool  # the repository has a `.dvc/` at its root

    @property
    def has_pipeline(self) -> bool:
        return bool(self.dvc_yamls)

    @property
    def lock_files(self) -> tuple[str, ...]:
        return tuple(_sibling(p, "dvc.lock") for p in self.dvc_yamls)


def _sibling(path: str, name: str) -> str:
    parent = posixpath.dirname(path)
    return posixpath.join(parent, name) if parent else name


def find_dvc_yamls(repo_root: Path) -> list[str]:
    """Every ``dvc.yaml`` git would sync (tracked, or untracked and not ignored); the root one first."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "dvc.yaml", "**/dvc.yaml"],
            cwd=repo_root, capture_output=True, check=True, timeout=60,
        ).stdout
        names = {n for n in out.decode("utf-8", "surrogateescape").split("\0") if n}
    except (OSError, subprocess.SubprocessError):
        names = {"dvc.yaml"} if (repo_root / "dvc.yaml").is_file() else set()
    names = {n for n in names if not n.startswith(".trainboard/") and (repo_root / n).is_file()}
    return sorted(names, key=lambda n: (n.count("/"), n))


def _entries(items: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    """The (path, options) of a dvc.yaml list of outputs: ``- a`` or ``- a: {cache: false}``."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, str):
            yield item, {}
        elif isinstance(item, dict):
            for key, options in item.items():
                yield str(key), options if isinstance(options, dict) else {}


def _under(base: str, path: str) -> str | None:
    """``path`` (relative to ``base``) relative to the repository root; None if it leaves it or is templated."""
    if "${" in path or "${" in base:
        return None  # parametrized (vars, foreach, matrix): only DVC can resolve it
    joined = posixpath.normpath(posixpath.join(base, path.replace("\\", "/")))
    if joined.startswith("../") or joined in ("..", ".") or posixpath.isabs(joined):
        return None
    return joined


def parse_dvc_yaml(text: str, path: str = "dvc.yaml") -> tuple[list[str], list[str]]:
    """The (metrics files, cached stage outputs) one dvc.yaml at ``path`` declares, repository-relative."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DvcError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DvcError(f"{path}: expected a mapping with `stages:`")
    here = posixpath.dirname(path)
    metrics: list[str] = []
    outs: list[str] = []
    for name, _ in _entries(data.get("metrics")):
        if (p := _under(here, name)) is not None:
            metrics.append(p)
    stages = data.get("stages") or {}
    for stage in stages.values() if isinstance(stages, dict) else ():
        if not isinstance(stage, dict) or "foreach" in stage or "matrix" in stage:
            continue
        wdir = str(stage.get("wdir") or ".")
        if "${" in wdir:
            continue
        base = posixpath.normpath(posixpath.join(here, wdir))
        if base == ".." or base.startswith("../") or posixpath.isabs(base):
            continue
        base = "" if base == "." else base
        for kind in ("outs", "metrics", "plots"):
            for name, options in _entries(stage.get(kind)):
                p = _under(base, name)
                if p is None:
                    continue
                if kind == "metrics":
                    metrics.append(p)
                if options.get("cache", True) is not False:
                    outs.append(p)
    return _unique(metrics), _unique(outs)


def scan_project(repo_root: Path) -> DvcProject:
    """Read the repository's dvc.yaml files (without DVC: nothing is run)."""
    yamls = find_dvc_yamls(repo_root)
    metrics: list[str] = []
    outs: list[str] = []
    for rel in yamls:
        try:
            text = (repo_root / rel).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DvcError(f"{rel}: cannot read it: {exc}") from exc
        m, o = parse_dvc_yaml(text, rel)
        metrics += m
        outs += o
    return DvcProject(tuple(yamls), tuple(_unique(metrics)), tuple(_unique(outs)), (repo_root / ".dvc").is_dir())


def dvc_metrics_files(repo_root: Path) -> list[str]:
    """The metrics files the repository's dvc.yaml files declare (what `dvc metrics show` reads)."""
    return list(scan_project(repo_root).metrics_files)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- metrics files


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """Numbers of a metrics document under dotted keys, as `dvc metrics show` names them:
    ``{"eval": {"f1": 0.9}}`` -> ``{"eval.f1": 0.9}``. Lists, strings and booleans are left out."""
    out: dict[str, float] = {}
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def parse_metrics(content: bytes | str, name: str) -> dict[str, float]:
    """A metrics file's flattened numbers; its format by suffix, as DVC does (.json, .toml, else YAML)."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    suffix = posixpath.splitext(name)[1].lower()
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise DvcError(f"{name}: not a metrics file trainboard can read: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise DvcError(f"{name}: expected a mapping of metric names to numbers")
    return flatten_metrics(data or {})


def read_metrics(path: str | Path) -> dict[str, float]:
    """One metrics file's numbers (see :func:`parse_metrics`); DvcError when missing or unreadable."""
    p = Path(path)
    try:
        content = p.read_bytes()
    except OSError as exc:
        raise DvcError(f"{p}: cannot read it: {exc.strerror or exc}") from exc
    try:
        return parse_metrics(content, p.name)
    except UnicodeDecodeError as exc:
        raise DvcError(f"{p}: not text: {exc}") from exc


def merge_metrics(per_file: Iterable[dict[str, float]]) -> dict[str, float]:
    """Several files' metrics as one mapping; a key in two files keeps the first file's value."""
    out: dict[str, float] = {}
    for metrics in per_file:
        for key, value in metrics.items():
            out.setdefault(key, value)
    return out


def collect_metrics(root: Path, metrics_files: Iterable[str]) -> tuple[dict[str, float], list[str]]:
    """The metrics of the files under ``root`` that exist and parse, merged; and a problem per other file."""
    found: list[dict[str, float]] = []
    problems: list[str] = []
    for rel in metrics_files:
        try:
            found.append(read_metrics(root / rel))
        except DvcError as exc:
            problems.append(str(exc))
    return merge_metrics(found), problems


# --------------------------------------------------------------------------- the base branch


def _git(repo_root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", *args], cwd=repo_root, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None


def resolve_base(repo_root: Path, base_branch: str) -> str | None:
    """The commit of ``base_branch``: the local branch (or any ref git resolves), else
    ``origin/<base>`` (a CI checkout often has only that); None when neither exists."""
    if not base_branch or base_branch.startswith("-"):
        return None
    for ref in (f"refs/heads/{base_branch}", base_branch, f"refs/remotes/origin/{base_branch}"):
        done = _git(repo_root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        if done is not None and done.returncode == 0 and done.stdout.strip():
            return done.stdout.decode().strip()
    return None


def metrics_at(repo_root: Path, commit: str, metrics_files: Iterable[str]) -> dict[str, float] | None:
    """The metrics the files hold at ``commit`` (`git show`); None when none of them exists there."""
    found: list[dict[str, float]] = []
    for rel in metrics_files:
        path = normalize_path(rel)
        done = _git(repo_root, "show", f"{commit}:{path}")
        if done is None or done.returncode != 0:
            continue  # not in that commit
        try:
            found.append(parse_metrics(done.stdout, path))
        except (DvcError, UnicodeDecodeError):
            continue  # a file the base branch cannot be compared with counts as absent
    return merge_metrics(found) if found else None


def base_branch_metrics(repo_root: Path, base_branch: str, metrics_files: Iterable[str]) -> dict[str, float] | None:
    """The metrics committed on the base branch (`dvc metrics diff` semantics): the baseline
    when MLflow has no run of that branch. None: no such branch, or none of the files on it."""
    commit = resolve_base(repo_root, base_branch)
    if commit is None:
        return None
    return metrics_at(repo_root, commit, metrics_files)


def base_branch_baseline(repo_root: Path, base_branch: str, metrics_files: Iterable[str]) -> Baseline | None:
    """:func:`base_branch_metrics` as a :class:`~trainboard.backend.tracking.Baseline` (no MLflow run:
    ``mlflow_run_id`` is ""), its label "main @ 1a2b3c4"; None when there is none."""
    commit = resolve_base(repo_root, base_branch)
    metrics = metrics_at(repo_root, commit, metrics_files) if commit else None
    if commit is None or metrics is None:
        return None
    return Baseline(mlflow_run_id="", metrics=metrics, params={}, commit=commit, trainboard_run_id="")


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

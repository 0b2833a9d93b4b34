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

The settings and path checks live in ``dvc_paths`` and the runner's commands in
``dvc_commands``; every public name of both is importable from here.
"""

from __future__ import annotations

import json
import posixpath
import subprocess
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainboard.backend.dvc_commands import (
    added_outputs,
    dvc_output_commands,
    dvc_prepare_commands,
    dvc_return_files,
    ensure_gitignored,
    pushed_outputs,
)
from trainboard.backend.dvc_paths import (
    AWS_ENV_NAMES,
    DEFAULT_STORAGE,
    DVC_ENV,
    REMOTE_NAME,
    DvcError,
    _git,
    _sibling,
    _unique,
    aws_env,
    check_remote,
    default_remote,
    is_local_remote,
    normalize_path,
)
from trainboard.backend.tracking import Baseline

__all__ = [
    "AWS_ENV_NAMES",
    "DEFAULT_STORAGE",
    "DVC_ENV",
    "REMOTE_NAME",
    "DvcError",
    "DvcProject",
    "added_outputs",
    "aws_env",
    "base_branch_baseline",
    "base_branch_metrics",
    "check_remote",
    "collect_metrics",
    "default_remote",
    "dvc_metrics_files",
    "dvc_output_commands",
    "dvc_prepare_commands",
    "dvc_return_files",
    "ensure_gitignored",
    "find_dvc_yamls",
    "flatten_metrics",
    "is_local_remote",
    "merge_metrics",
    "metrics_at",
    "normalize_path",
    "parse_dvc_yaml",
    "parse_metrics",
    "pushed_outputs",
    "read_metrics",
    "resolve_base",
    "scan_project",
]


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


"""What git says about the repository being run: root, branch, commit, files."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class GitState:
    root: Path
    branch: str
    commit: str  # "" before the first commit, or outside git
    dirty: bool
    is_git: bool


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=30
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def repo_root(start: Path) -> Path:
    """The git top level containing ``start``, or ``start`` itself outside git."""
    top = _git(start, "rev-parse", "--show-toplevel")
    return Path(top) if top else start.resolve()


def git_state(root: Path) -> GitState:
    if _git(root, "rev-parse", "--is-inside-work-tree") != "true":
        return GitState(root=root, branch="(no git)", commit="", dirty=False, is_git=False)
    commit = _git(root, "rev-parse", "HEAD") or ""
    branch = _ci_branch() or _git(root, "symbolic-ref", "--short", "-q", "HEAD") or "HEAD"
    return GitState(root=root, branch=branch, commit=commit, dirty=is_dirty(root), is_git=True)


def is_dirty(root: Path) -> bool:
    """Whether the run takes anything the commit does not hold: a changed tracked file, or an
    untracked file git does not ignore (files_to_sync syncs those too); trainboard's own folder aside."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "-z", "--untracked-files=all"], cwd=root,
                             capture_output=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    entries = [entry for entry in out.decode("utf-8", "surrogateescape").split("\0") if entry]
    # Each entry is "XY path" (a rename's original path follows as an entry of its own).
    return any(not entry[3:].startswith(".trainboard/") for entry in entries)


def _ci_branch() -> str | None:
    # In a pull request's CI the checkout is detached: the event names the branch.
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or None
    return None


def files_to_sync(state: GitState) -> list[str]:
    """The current commit plus uncommitted changes, honouring .gitignore.

    Tracked files as they are in the working tree, and untracked files that
    git does not ignore; never trainboard's own folder.
    """
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=state.root,
        capture_output=True,
        check=True,
    ).stdout
    names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
    return [n for n in names if not n.startswith(".trainboard/") and (state.root / n).exists()]

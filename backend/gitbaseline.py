"""The base branch's results in git notes: written by a base-branch run, found by any later run.

A run on the base branch (``compare.base``) that finished with a result stores it as JSON
in a note on its commit under :data:`NOTES_REF`, and pushes that ref to the remote. A later
run anywhere (a pull request's CI run on a clean checkout, with nothing shared but the git
remote) fetches the ref and takes the entry of the merge base of HEAD and the base branch,
else the newest one on the base branch's history.

One note per commit; the entries of several configs run on one commit sit side by side in
it, keyed by :class:`ConfigIdentity`. Notes are written with plumbing (``hash-object``,
``mktree``, ``commit-tree``, ``update-ref``): the working tree, the index and the branches
are never touched. A push refused because another run pushed meanwhile is fetched, merged
entry by entry (the later entry wins for one config on one commit), and tried again.

Every call here blocks (git subprocesses with bounded times): the session makes them in a thread.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainboard.backend.gitnotes import (
    NOTES_REF,
    PUSH_TIMEOUT,
    SCHEMA,
    NotesError,
    NoteView,
    advance,
    fetch,
    git,
    git_out,
    notes_commit,
    push_said,
    rev,
    tracking_ref,
)
from trainboard.backend.gitnotes import note_text as note_text  # re-exported: the notes' text
from trainboard.backend.gitnotes import parse_note as parse_note
from trainboard.backend.gitnotes import pick_remote as pick_remote
from trainboard.backend.gitnotes import remotes as remotes
from trainboard.backend.tracking import Baseline

if TYPE_CHECKING:
    from trainboard.backend.config import RunConfig

HISTORY_LIMIT = 500  # commits of the base branch searched for an entry, newest first
PUSH_ATTEMPTS = 5  # a push refused because another run pushed first: fetch, merge, try again


@dataclass(frozen=True, slots=True)
class ConfigIdentity:
    """Which config a result belongs to: the same file, job name and experiment compare."""

    path: str  # the config file, relative to the repository root
    name: str
    experiment: str

    @property
    def key(self) -> str:
        return f"{self.path}::{self.name}::{self.experiment}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "name": self.name, "experiment": self.experiment}


@dataclass(frozen=True, slots=True)
class Found:
    """An entry looked up for a run, and how it was chosen."""

    baseline: Baseline
    how: str  # "merge base", "newest on main", ...


@dataclass(frozen=True, slots=True)
class Recorded:
    """What became of a recorded entry."""

    commit: str
    pushed_to: str  # the remote it reached; "" when it stayed in this repository
    problem: str = ""  # why it was not pushed (a remote that refused, or none)


# ------------------------------------------------------------------ finding an entry


def base_ref(root: Path, base: str, remote: str) -> str:
    """The base branch as this checkout has it: the local branch, else ``<remote>/<base>``
    (a CI checkout often has only that), else ``origin/<base>``; "" when none exists."""
    if not base or base.startswith("-"):
        return ""
    for ref in (f"refs/heads/{base}", f"refs/remotes/{remote}/{base}" if remote else "", f"refs/remotes/origin/{base}"):
        if ref and rev(root, ref):
            return ref
    return ""


def _baseline(entry: Mapping[str, Any], commit: str, source: str) -> Baseline:
    metrics = {str(k): float(v) for k, v in entry.get("metrics", {}).items() if isinstance(v, int | float)}
    params = {str(k): str(v) for k, v in (entry.get("params") or {}).items()}
    return Baseline(mlflow_run_id=str(entry.get("mlflow_run_id") or ""), metrics=metrics, params=params,
                    commit=str(entry.get("commit") or commit),
                    trainboard_run_id=str(entry.get("trainboard_run_id") or ""), source=source)


def find(root: Path, base: str, identity: ConfigIdentity, remote: str, keys: Iterable[str] = ()) -> Found | None:
    """The entry for ``identity`` a run of HEAD compares with: the merge base of HEAD and
    the base branch's, else the newest on the base branch's history (``HISTORY_LIMIT``
    commits); without the base branch here, the newest recorded for it. Entries with none
    of ``keys`` (the followed metrics) do not count. Reads the notes fetched last."""
    view = NoteView(root, [NOTES_REF, tracking_ref(remote) if remote else ""])
    noted = view.commits()
    if not noted:
        return None
    wanted = set(keys)

    def usable(entry: dict[str, Any] | None) -> bool:
        return entry is not None and (not wanted or bool(wanted & set(entry.get("metrics", {}))))

    ref = base_ref(root, base, remote)
    if ref:
        short = ref.removeprefix("refs/heads/").removeprefix("refs/remotes/")
        merge_base = git_out(root, "merge-base", "HEAD", ref) if rev(root, "HEAD") else ""
        history = git_out(root, "rev-list", f"--max-count={HISTORY_LIMIT}", ref).split()
        order = [c for c in dict.fromkeys([merge_base, *history]) if c in noted]
        entries = view.entries(order)
        for commit in order:
            entry = entries.get(commit, {}).get(identity.key)
            if usable(entry):
                assert entry is not None
                how = "merge base" if commit == merge_base else f"newest on {short}"
                return Found(_baseline(entry, commit, f"{how}, from git notes"), how)
        return None
    # No base branch in this checkout: the newest entry recorded on it, by time.
    best: tuple[float, str, dict[str, Any]] | None = None
    for commit, note in view.entries(noted).items():
        entry = note.get(identity.key)
        if usable(entry) and entry is not None and entry.get("branch") == base:
            at = float(entry.get("recorded_at") or 0)
            if best is None or at > best[0]:
                best = (at, commit, entry)
    if best is None:
        return None
    how = f"newest recorded on {base}"
    return Found(_baseline(best[2], best[1], f"{how}, from git notes"), how)


def lookup(root: Path, base: str, identity: ConfigIdentity, remote: str, keys: Iterable[str] = ()
           ) -> tuple[Found | None, str]:
    """Fetch the remote's notes (bounded; offline is fine), then :func:`find`; with why the
    fetch failed ("" when it worked or there was nothing to fetch)."""
    problem = fetch(root, remote) if remote else ""
    found = find(root, base, identity, remote, keys)
    return found, "" if problem == "absent" else problem


# ------------------------------------------------------------------ recording an entry


def make_entry(identity: ConfigIdentity, *, branch: str, commit: str, status: str, verdict: str,
               metrics: Mapping[str, float], params: Mapping[str, str], mlflow_run_id: str, trainboard_run_id: str,
               overrides: Iterable[str] = ()) -> dict[str, Any]:
    """What a base-branch run records (``key`` says where in the note it goes)."""
    return {
        "key": identity.key,
        "schema": SCHEMA,
        "config": identity.to_dict(),
        "branch": branch,
        "commit": commit,
        "status": status,
        "verdict": verdict,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "params": dict(params),
        "overrides": list(overrides),
        "mlflow_run_id": mlflow_run_id,
        "trainboard_run_id": trainboard_run_id,
        "recorded_at": time.time(),
    }


def record(root: Path, entry: dict[str, Any], remote: str, mask: Callable[[str], str] | None = None) -> Recorded:
    """Add ``entry`` to the note of its commit and push the notes to ``remote`` ("" = none:
    the note stays here). A push another run beat is fetched, merged and tried again,
    :data:`PUSH_ATTEMPTS` times; a push that fails for good is said in ``problem``."""
    if mask is not None:  # params and overrides are already masked; this catches any secret's value
        entry = json.loads(mask(json.dumps(entry)))
    pending: dict[str, Any] | None = entry
    commit = str(entry["commit"])
    message = f"trainboard: {entry['config']['name']} on {entry['branch']} @ {commit[:7]}"
    attempt = 0
    problem = ""
    while True:
        attempt += 1
        fetched = fetch(root, remote) if remote else "absent"
        theirs = rev(root, tracking_ref(remote)) if remote and fetched in ("",) else ""
        ours = rev(root, NOTES_REF)
        new = notes_commit(root, [ours, theirs], commit, pending, message)
        if not advance(root, new, ours):
            if attempt >= PUSH_ATTEMPTS:
                raise NotesError(f"{NOTES_REF} kept changing while trainboard wrote to it")
            continue  # another run of this repository wrote a note meanwhile: again, over it
        pending = None  # in the notes now; later rounds only merge
        if not remote:
            return Recorded(commit, "", "")
        if fetched not in ("", "absent"):
            problem = f"could not fetch {NOTES_REF} from {remote!r}: {fetched}"
        done = git(root, "push", "--porcelain", "--no-verify", remote, f"{NOTES_REF}:{NOTES_REF}",
                   timeout=PUSH_TIMEOUT)
        if done.returncode == 0:
            return Recorded(commit, remote)
        said = (done.stdout + done.stderr).decode("utf-8", "replace")
        # Another run got there first: a non-fast-forward, or the remote's ref locked by its push.
        beaten = any(word in said for word in ("[rejected]", "non-fast-forward", "fetch first", "failed to lock",
                                               "cannot lock ref", "failed to update ref"))
        problem = problem or f"pushing {NOTES_REF} to {remote!r} failed: {push_said(done)}"
        if not beaten or attempt >= PUSH_ATTEMPTS:
            return Recorded(commit, "", problem)
        problem = ""
        time.sleep(random.uniform(0.05, 0.3) * attempt)  # noqa: S311 (spreading retries, not a secret)


def identity_for(config: RunConfig, config_path: Path, root: Path) -> ConfigIdentity:
    """The identity of ``config`` (a RunConfig loaded from ``config_path``) in the repository at ``root``."""
    try:
        rel = config_path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = config_path.name  # outside the repository: its name is what is left to compare
    return ConfigIdentity(path=rel, name=config.name, experiment=config.mlflow.experiment)


def has_notes(root: Path) -> bool:
    """Whether this repository has trainboard notes of its own yet."""
    return bool(rev(root, NOTES_REF))

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
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainboard.backend.tracking import Baseline

if TYPE_CHECKING:
    from trainboard.backend.config import RunConfig

NOTES_REF = "refs/notes/trainboard"
SCHEMA = 1
FETCH_TIMEOUT = 10.0  # seconds: a remote that does not answer costs this much, once
PUSH_TIMEOUT = 30.0
LOCAL_TIMEOUT = 15.0  # a local git command
HISTORY_LIMIT = 500  # commits of the base branch searched for an entry, newest first
PUSH_ATTEMPTS = 5  # a push refused because another run pushed first: fetch, merge, try again
_EMPTY = "0" * 40


class NotesError(Exception):
    """A git step failed; the message is for the user."""


def tracking_ref(remote: str) -> str:
    """Where the remote's notes are kept after a fetch (never the user's own refs)."""
    return f"refs/trainboard/notes-remote/{remote}"


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


# ------------------------------------------------------------------ git


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
    env.pop("GIT_NOTES_REF", None)
    return env


def _git(root: Path, *args: str, input: bytes | None = None, timeout: float = LOCAL_TIMEOUT,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` in ``root``; no terminal (its own session: ssh cannot ask for a passphrase)."""
    try:
        return subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, check=False,
                              timeout=timeout, env=dict(env) if env is not None else _git_env(),
                              stdin=None if input is not None else subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise NotesError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise NotesError(f"git {args[0]} took more than {timeout:g} s") from None


def _out(root: Path, *args: str, input: bytes | None = None) -> str:
    done = _git(root, *args, input=input)
    if done.returncode != 0:
        raise NotesError(f"git {' '.join(args[:2])} failed: {_said(done)}")
    return done.stdout.decode("utf-8", "replace").strip()


def _said(done: subprocess.CompletedProcess[bytes]) -> str:
    """git's own reason: its first ``fatal:``/``error:`` line, else its last line."""
    from trainboard.backend.gitpush import scrub_url_credentials

    lines = [line.strip() for line in (done.stderr or done.stdout).decode("utf-8", "replace").splitlines()
             if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[-1] if lines else "")
    return scrub_url_credentials(first[:300] or f"exit {done.returncode}")


def _push_said(done: subprocess.CompletedProcess[bytes]) -> str:
    """Why a ``git push --porcelain`` failed: its status for the ref ("[remote rejected] (pre-receive
    hook declined)") and what the remote said, else git's last word."""
    from trainboard.backend.gitpush import scrub_url_credentials

    status = [line.split("\t")[2] for line in done.stdout.decode("utf-8", "replace").splitlines()
              if line.startswith("!\t") and line.count("\t") >= 2]
    remote = [line.removeprefix("remote:").strip() for line in done.stderr.decode("utf-8", "replace").splitlines()
              if line.startswith("remote:") and line.removeprefix("remote:").strip()]
    said = "; ".join([*status[:1], *(f"the remote says: {line[:200]}" for line in remote[:1])])
    return scrub_url_credentials(said) if said else _said(done)


def _rev(root: Path, ref: str) -> str:
    """The commit ``ref`` names; "" when it does not exist."""
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return done.stdout.decode().strip() if done.returncode == 0 else ""


def remotes(root: Path) -> list[str]:
    done = _git(root, "remote")
    return done.stdout.decode("utf-8", "replace").split() if done.returncode == 0 else []


def pick_remote(root: Path, configured: str, branch: str) -> str:
    """The remote notes go to and come from: ``configured`` (github.remote) when the repository
    has it, else the branch's upstream remote; "" when there is none."""
    names = remotes(root)
    if configured in names:
        return configured
    done = _git(root, "config", "--get", f"branch.{branch}.remote")
    upstream = done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else ""
    return upstream if upstream in names else ""


def fetch(root: Path, remote: str) -> str:
    """Bring the remote's notes into :func:`tracking_ref`: "" when done, "absent" when the
    remote has none yet, else why not (offline, refused)."""
    ref = tracking_ref(remote)
    done = _git(root, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
                remote, f"+{NOTES_REF}:{ref}", timeout=FETCH_TIMEOUT)
    if done.returncode == 0:
        return ""
    said = _said(done)
    if "couldn't find remote ref" in said.lower() or "couldn't find remote ref" in done.stderr.decode(
            "utf-8", "replace").lower():
        _git(root, "update-ref", "-d", ref)  # the remote lost them: what was fetched before is gone too
        return "absent"
    return said


# ------------------------------------------------------------------ reading notes


def _note_blobs(root: Path, ref: str) -> dict[str, str]:
    """commit -> note blob in the notes commit ``ref`` (flat or fanned-out trees alike)."""
    if not ref:
        return {}
    done = _git(root, "ls-tree", "-r", "-z", ref)
    if done.returncode != 0:
        return {}
    blobs: dict[str, str] = {}
    for item in done.stdout.decode("utf-8", "replace").split("\0"):
        if not item:
            continue
        meta, _, path = item.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            name = path.replace("/", "")
            if len(name) in (40, 64):
                blobs[name] = parts[2]
    return blobs


def _read_blobs(root: Path, blobs: Iterable[str]) -> dict[str, bytes]:
    """The contents of ``blobs``, in one ``git cat-file --batch``."""
    wanted = list(dict.fromkeys(blobs))
    if not wanted:
        return {}
    done = _git(root, "cat-file", "--batch", input="".join(f"{b}\n" for b in wanted).encode())
    data, out, at = done.stdout, {}, 0
    for blob in wanted:
        end = data.find(b"\n", at)
        if end < 0:
            break
        header = data[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<oid> missing"
            continue
        size = int(header[2])
        out[blob] = data[at:at + size]
        at += size + 1
    return out


def parse_note(data: bytes) -> dict[str, dict[str, Any]]:
    """The entries of a note, by config key; {} for a note trainboard cannot read."""
    try:
        note = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    entries = note.get("entries") if isinstance(note, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(v, dict) and isinstance(v.get("metrics"), dict)}


def _merge_entries(*notes: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """All entries of ``notes``; for one key, the one recorded last."""
    merged: dict[str, dict[str, Any]] = {}
    for note in notes:
        for key, entry in note.items():
            old = merged.get(key)
            if old is None or float(entry.get("recorded_at") or 0) >= float(old.get("recorded_at") or 0):
                merged[key] = entry
    return merged


def note_text(entries: Mapping[str, dict[str, Any]]) -> bytes:
    return (json.dumps({"schema": SCHEMA, "entries": dict(sorted(entries.items()))}, indent=1, sort_keys=True)
            + "\n").encode()


class NoteView:
    """The notes of one or more notes commits (this repository's, the remote's), read as one."""

    def __init__(self, root: Path, refs: Iterable[str]) -> None:
        self.root = root
        self.blobs: list[dict[str, str]] = [_note_blobs(root, ref) for ref in refs]

    def commits(self) -> set[str]:
        return {c for blobs in self.blobs for c in blobs}

    def entries(self, commits: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """commit -> its merged entries, for those of ``commits`` that have a note."""
        wanted = [c for c in dict.fromkeys(commits) if any(c in b for b in self.blobs)]
        data = _read_blobs(self.root, [b[c] for c in wanted for b in self.blobs if c in b])
        return {c: _merge_entries(*(parse_note(data.get(b[c], b"")) for b in self.blobs if c in b))
                for c in wanted}


def base_ref(root: Path, base: str, remote: str) -> str:
    """The base branch as this checkout has it: the local branch, else ``<remote>/<base>``
    (a CI checkout often has only that), else ``origin/<base>``; "" when none exists."""
    if not base or base.startswith("-"):
        return ""
    for ref in (f"refs/heads/{base}", f"refs/remotes/{remote}/{base}" if remote else "", f"refs/remotes/origin/{base}"):
        if ref and _rev(root, ref):
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
        merge_base = _out(root, "merge-base", "HEAD", ref) if _rev(root, "HEAD") else ""
        history = _out(root, "rev-list", f"--max-count={HISTORY_LIMIT}", ref).split()
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


# ------------------------------------------------------------------ writing notes


def _identity_env(root: Path) -> dict[str, str]:
    from trainboard.backend.gitpush import Git, identity

    who = identity(Git(root))
    env = _git_env()
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", who.name)
        env.setdefault(f"GIT_{role}_EMAIL", who.email)
    return env


def _is_ancestor(root: Path, older: str, newer: str) -> bool:
    return _git(root, "merge-base", "--is-ancestor", older, newer).returncode == 0


def _notes_commit(root: Path, tips: list[str], commit: str, entry: dict[str, Any] | None, message: str) -> str:
    """A notes commit over ``tips`` (the local notes, the remote's) holding all their notes
    merged, plus ``entry`` on ``commit``; the tip itself when nothing changes."""
    tips = [t for t in dict.fromkeys(tips) if t]
    parents = [t for t in tips if not any(o != t and _is_ancestor(root, t, o) for o in tips)]
    if entry is None and len(parents) <= 1:
        return parents[0] if parents else ""  # one line of history, nothing to add: nothing to write
    view = NoteView(root, parents)
    blobs_by_tip = view.blobs
    merged: dict[str, str] = {}
    conflicting = []
    for blobs in blobs_by_tip:
        for annotated, blob in blobs.items():
            if merged.setdefault(annotated, blob) != blob:
                conflicting.append(annotated)
    rewrite = set(conflicting) | ({commit} if entry is not None else set())
    notes = view.entries(rewrite)
    for annotated in sorted(rewrite):
        entries = notes.get(annotated, {})
        if annotated == commit and entry is not None:
            entries = _merge_entries(entries, {entry["key"]: {k: v for k, v in entry.items() if k != "key"}})
        merged[annotated] = _out(root, "hash-object", "-w", "--stdin", input=note_text(entries))
    listing = "".join(f"100644 blob {blob}\t{annotated}\n" for annotated, blob in sorted(merged.items()))
    tree = _out(root, "mktree", input=listing.encode())
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    done = _git(root, *args, env=_identity_env(root))
    if done.returncode != 0:
        raise NotesError(f"git commit-tree failed: {_said(done)}")
    return done.stdout.decode().strip()


def _advance(root: Path, new: str, old: str) -> bool:
    """Point NOTES_REF at ``new`` if it still points at ``old`` (another run may have moved it)."""
    if new == old:
        return True
    return _git(root, "update-ref", "-m", "trainboard: baseline", NOTES_REF, new, old or _EMPTY).returncode == 0


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
        theirs = _rev(root, tracking_ref(remote)) if remote and fetched in ("",) else ""
        ours = _rev(root, NOTES_REF)
        new = _notes_commit(root, [ours, theirs], commit, pending, message)
        if not _advance(root, new, ours):
            if attempt >= PUSH_ATTEMPTS:
                raise NotesError(f"{NOTES_REF} kept changing while trainboard wrote to it")
            continue  # another run of this repository wrote a note meanwhile: again, over it
        pending = None  # in the notes now; later rounds only merge
        if not remote:
            return Recorded(commit, "", "")
        if fetched not in ("", "absent"):
            problem = f"could not fetch {NOTES_REF} from {remote!r}: {fetched}"
        done = _git(root, "push", "--porcelain", "--no-verify", remote, f"{NOTES_REF}:{NOTES_REF}",
                    timeout=PUSH_TIMEOUT)
        if done.returncode == 0:
            return Recorded(commit, remote)
        said = (done.stdout + done.stderr).decode("utf-8", "replace")
        # Another run got there first: a non-fast-forward, or the remote's ref locked by its push.
        beaten = any(word in said for word in ("[rejected]", "non-fast-forward", "fetch first", "failed to lock",
                                               "cannot lock ref", "failed to update ref"))
        problem = problem or f"pushing {NOTES_REF} to {remote!r} failed: {_push_said(done)}"
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
    return bool(_rev(root, NOTES_REF))

"""Git plumbing for trainboard's notes ref: running git, fetching the remote's notes, reading
notes commits and writing a merged one (``hash-object``, ``mktree``, ``commit-tree``,
``update-ref``: the working tree, the index and the branches are never touched).

:mod:`trainboard.backend.gitbaseline` builds the baseline lookup and recording on these.
Every call here blocks (git subprocesses with bounded times).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

NOTES_REF = "refs/notes/trainboard"
SCHEMA = 1
FETCH_TIMEOUT = 10.0  # seconds: a remote that does not answer costs this much, once
PUSH_TIMEOUT = 30.0
LOCAL_TIMEOUT = 15.0  # a local git command
_EMPTY = "0" * 40


class NotesError(Exception):
    """A git step failed; the message is for the user."""


def tracking_ref(remote: str) -> str:
    """Where the remote's notes are kept after a fetch (never the user's own refs)."""
    return f"refs/trainboard/notes-remote/{remote}"


# ------------------------------------------------------------------ git


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
    env.pop("GIT_NOTES_REF", None)
    return env


def git(root: Path, *args: str, input: bytes | None = None, timeout: float = LOCAL_TIMEOUT,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` in ``root``; no terminal (its own session: ssh cannot ask for a passphrase)."""
    try:
        return subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, check=False,
                              timeout=timeout, env=dict(env) if env is not None else git_env(),
                              stdin=None if input is not None else subprocess.DEVNULL, start_new_session=True)
    except FileNotFoundError:
        raise NotesError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise NotesError(f"git {args[0]} took more than {timeout:g} s") from None


def git_out(root: Path, *args: str, input: bytes | None = None) -> str:
    done = git(root, *args, input=input)
    if done.returncode != 0:
        raise NotesError(f"git {' '.join(args[:2])} failed: {git_said(done)}")
    return done.stdout.decode("utf-8", "replace").strip()


def git_said(done: subprocess.CompletedProcess[bytes]) -> str:
    """git's own reason: its first ``fatal:``/``error:`` line, else its last line."""
    from trainboard.backend.gitpush import scrub_url_credentials

    lines = [line.strip() for line in (done.stderr or done.stdout).decode("utf-8", "replace").splitlines()
             if line.strip()]
    first = next((line for line in lines if line.startswith(("fatal:", "error:"))), lines[-1] if lines else "")
    return scrub_url_credentials(first[:300] or f"exit {done.returncode}")


def push_said(done: subprocess.CompletedProcess[bytes]) -> str:
    """Why a ``git push --porcelain`` failed: its status for the ref ("[remote rejected] (pre-receive
    hook declined)") and what the remote said, else git's last word."""
    from trainboard.backend.gitpush import scrub_url_credentials

    status = [line.split("\t")[2] for line in done.stdout.decode("utf-8", "replace").splitlines()
              if line.startswith("!\t") and line.count("\t") >= 2]
    remote = [line.removeprefix("remote:").strip() for line in done.stderr.decode("utf-8", "replace").splitlines()
              if line.startswith("remote:") and line.removeprefix("remote:").strip()]
    said = "; ".join([*status[:1], *(f"the remote says: {line[:200]}" for line in remote[:1])])
    return scrub_url_credentials(said) if said else git_said(done)


def rev(root: Path, ref: str) -> str:
    """The commit ``ref`` names; "" when it does not exist."""
    done = git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return done.stdout.decode().strip() if done.returncode == 0 else ""


def remotes(root: Path) -> list[str]:
    done = git(root, "remote")
    return done.stdout.decode("utf-8", "replace").split() if done.returncode == 0 else []


def pick_remote(root: Path, configured: str, branch: str) -> str:
    """The remote notes go to and come from: ``configured`` (github.remote) when the repository
    has it, else the branch's upstream remote; "" when there is none."""
    names = remotes(root)
    if configured in names:
        return configured
    done = git(root, "config", "--get", f"branch.{branch}.remote")
    upstream = done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else ""
    return upstream if upstream in names else ""


def fetch(root: Path, remote: str) -> str:
    """Bring the remote's notes into :func:`tracking_ref`: "" when done, "absent" when the
    remote has none yet, else why not (offline, refused)."""
    ref = tracking_ref(remote)
    done = git(root, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
               remote, f"+{NOTES_REF}:{ref}", timeout=FETCH_TIMEOUT)
    if done.returncode == 0:
        return ""
    said = git_said(done)
    if "couldn't find remote ref" in said.lower() or "couldn't find remote ref" in done.stderr.decode(
            "utf-8", "replace").lower():
        git(root, "update-ref", "-d", ref)  # the remote lost them: what was fetched before is gone too
        return "absent"
    return said


# ------------------------------------------------------------------ reading notes


def note_blobs(root: Path, ref: str) -> dict[str, str]:
    """commit -> note blob in the notes commit ``ref`` (flat or fanned-out trees alike)."""
    if not ref:
        return {}
    done = git(root, "ls-tree", "-r", "-z", ref)
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


def read_blobs(root: Path, blobs: Iterable[str]) -> dict[str, bytes]:
    """The contents of ``blobs``, in one ``git cat-file --batch``."""
    wanted = list(dict.fromkeys(blobs))
    if not wanted:
        return {}
    done = git(root, "cat-file", "--batch", input="".join(f"{b}\n" for b in wanted).encode())
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


def merge_entries(*notes: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
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
        self.blobs: list[dict[str, str]] = [note_blobs(root, ref) for ref in refs]

    def commits(self) -> set[str]:
        return {c for blobs in self.blobs for c in blobs}

    def entries(self, commits: Iterable[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """commit -> its merged entries, for those of ``commits`` that have a note."""
        wanted = [c for c in dict.fromkeys(commits) if any(c in b for b in self.blobs)]
        data = read_blobs(self.root, [b[c] for c in wanted for b in self.blobs if c in b])
        return {c: merge_entries(*(parse_note(data.get(b[c], b"")) for b in self.blobs if c in b))
                for c in wanted}


# ------------------------------------------------------------------ writing notes


def identity_env(root: Path) -> dict[str, str]:
    from trainboard.backend.gitpush import Git, identity

    who = identity(Git(root))
    env = git_env()
    for role in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{role}_NAME", who.name)
        env.setdefault(f"GIT_{role}_EMAIL", who.email)
    return env


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    return git(root, "merge-base", "--is-ancestor", older, newer).returncode == 0


def notes_commit(root: Path, tips: list[str], commit: str, entry: dict[str, Any] | None, message: str) -> str:
    """A notes commit over ``tips`` (the local notes, the remote's) holding all their notes
    merged, plus ``entry`` on ``commit``; the tip itself when nothing changes."""
    tips = [t for t in dict.fromkeys(tips) if t]
    parents = [t for t in tips if not any(o != t and is_ancestor(root, t, o) for o in tips)]
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
            entries = merge_entries(entries, {entry["key"]: {k: v for k, v in entry.items() if k != "key"}})
        merged[annotated] = git_out(root, "hash-object", "-w", "--stdin", input=note_text(entries))
    listing = "".join(f"100644 blob {blob}\t{annotated}\n" for annotated, blob in sorted(merged.items()))
    tree = git_out(root, "mktree", input=listing.encode())
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    done = git(root, *args, env=identity_env(root))
    if done.returncode != 0:
        raise NotesError(f"git commit-tree failed: {git_said(done)}")
    return done.stdout.decode().strip()


def advance(root: Path, new: str, old: str) -> bool:
    """Point NOTES_REF at ``new`` if it still points at ``old`` (another run may have moved it)."""
    if new == old:
        return True
    return git(root, "update-ref", "-m", "trainboard: baseline", NOTES_REF, new, old or _EMPTY).returncode == 0

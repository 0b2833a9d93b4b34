"""Commit a run's outputs on top of the run's commit and push them to a branch of their own.

The user's checkout is never touched: the commit is built with git plumbing in a
temporary index (``GIT_INDEX_FILE``), from the run's commit tree plus the output
files, and pushed by hash. No local branch, ref, index or working-tree file
changes; only new objects land in the repository's object store.

One outputs branch per source branch (``trainboard/<source-branch>``): every run
of a branch adds a commit on that branch's previous tip (fetched first; the
first one's parent is the run's commit) holding the run's commit tree plus its
outputs, and pushes it without force. Each publish is a fast-forward, so a
"no force push" branch rule holds and the history of every run stays; the
commits are unsigned, so a "require signed commits" rule refuses them.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

GIT_TIMEOUT = 120.0  # seconds for one git command (a push can carry a whole history)
DEFAULT_PREFIX = "trainboard/"


class PushError(Exception):
    """A git step failed; the message is for the user (secrets already masked)."""


class NotFastForward(PushError):
    """The remote branch moved since it was read: build on its new tip and push again."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    email: str


DEFAULT_IDENTITY = Identity("trainboard", "trainboard@users.noreply.github.com")

_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def scrub_url_credentials(text: str) -> str:
    """``https://user:secret@host/...`` → ``https://***@host/...`` wherever it appears."""
    return _URL_USERINFO.sub("***@", text)


# ------------------------------------------------------------------ names


_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]+")


def sanitize_branch(name: str) -> str:
    """A name git accepts as a branch, close to ``name``.

    Follows git-check-ref-format: no spaces, control characters, ``~^:?*[\\``,
    ``..``, ``@{``, empty or dot-led components, ``.lock`` endings or a
    trailing dot.
    """
    text = _REF_BAD_CHARS.sub("-", name.strip())
    text = text.replace("@{", "@-").replace("..", "-")
    parts = []
    for part in text.split("/"):
        part = part.lstrip(".")
        while part.endswith(".lock"):
            part = part[: -len(".lock")]
        part = part.rstrip(".")
        if part:
            parts.append(part)
    result = "/".join(parts)
    if not result or result == "@":
        return "unnamed"
    return result


def source_slug(source_branch: str, commit: str = "") -> str:
    """The source branch as one valid ref part; a detached checkout (``HEAD``) has no
    branch to follow and becomes ``detached-<short commit>``."""
    source = source_branch.strip()
    if source in ("", "HEAD", "(no git)"):
        source = f"detached-{commit[:10] or 'unknown'}"
    return sanitize_branch(source)


def outputs_branch(source_branch: str, commit: str = "", prefix: str = DEFAULT_PREFIX) -> str:
    """The branch that carries a source branch's run outputs: ``trainboard/<source-branch>``."""
    prefix = sanitize_branch(prefix.rstrip("/")) + "/" if prefix.strip("/") else ""
    return prefix + source_slug(source_branch, commit)


def repo_path(path: str) -> str:
    """A file's path inside the repository, as git stores it; refuses escapes."""
    posix = PurePosixPath(path.replace(os.sep, "/"))
    if posix.is_absolute() or ".." in posix.parts or not posix.parts or posix.parts[0] == ".git":
        raise PushError(f"{path!r} is not a path inside the repository")
    clean = "/".join(p for p in posix.parts if p != ".")
    if not clean:
        raise PushError(f"{path!r} is not a path inside the repository")
    return clean


# Owner and name as GitHub allows them; ".git" is stripped before matching.
_OWNER_NAME = r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)/(?P<name>[A-Za-z0-9._-]+?)"
_REMOTE_SHAPES = (
    # https://host/o/r(.git), http://, git://, ssh://git@host(:port)/o/r(.git)
    re.compile(r"^(?:https?|git|ssh|git\+ssh)://(?:[^/@]+@)?[^/:]+(?::\d+)?/" + _OWNER_NAME + r"(?:\.git)?/?$"),
    # scp-like: git@host:o/r(.git)
    re.compile(r"^(?:[^/@:]+@)?[^/:]+:" + _OWNER_NAME + r"(?:\.git)?/?$"),
)


def parse_github_repo(url: str) -> str | None:
    """``owner/name`` from a GitHub remote URL; None for local paths and other shapes.

    Accepts ``https://github.com/o/r(.git)``, ``git@github.com:o/r.git`` and
    ``ssh://git@github.com/o/r.git`` (any host: GitHub Enterprise, SSH aliases).
    """
    url = url.strip()
    if not url or url.startswith(("/", "./", "../", "file:")) or re.match(r"^[A-Za-z]:[\\/]", url):
        return None
    for shape in _REMOTE_SHAPES:
        match = shape.match(url)
        if match and match["name"] not in (".", ".."):
            return f"{match['owner']}/{match['name']}"
    return None


# ------------------------------------------------------------------ git


Scrub = Callable[[str], str]


def _no_scrub(text: str) -> str:
    return text


class Git:
    """git commands in one repository, with an environment of their own and masked errors."""

    def __init__(self, root: Path, scrub: Scrub = _no_scrub, env: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.scrub = scrub
        base = dict(os.environ if env is None else env)
        base["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
        self.env = base

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        what: str = "",
    ) -> subprocess.CompletedProcess[bytes]:
        env = {**self.env, **(extra_env or {})}
        try:
            result = subprocess.run(
                ["git", *args], cwd=self.root, input=input, capture_output=True, env=env,
                timeout=GIT_TIMEOUT, check=False,
            )
        except FileNotFoundError:
            raise PushError("git is not installed (or not on PATH)") from None
        except subprocess.TimeoutExpired:
            raise PushError(f"{what or 'git ' + args[0]} took more than {GIT_TIMEOUT:g} s") from None
        if check and result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip() or result.stdout.decode("utf-8", "replace")
            message = f"{what or 'git ' + args[0]} failed (exit {result.returncode}): {detail.strip()}"
            raise PushError(self.scrub(scrub_url_credentials(message)))
        return result

    def out(self, *args: str, input: bytes | None = None, extra_env: Mapping[str, str] | None = None,
            what: str = "") -> str:
        result = self.run(*args, input=input, extra_env=extra_env, what=what)
        return result.stdout.decode("utf-8", "replace").strip()

    def config(self, key: str) -> str:
        result = self.run("config", "--get", key, check=False)
        return result.stdout.decode("utf-8", "replace").strip() if result.returncode == 0 else ""


def identity(git: Git, configured: Identity | None = None) -> Identity:
    """Who the outputs commit is by: the configured identity, else git's own
    (``user.name``/``user.email`` or ``GIT_COMMITTER_*``), else trainboard's."""
    if configured and configured.name and configured.email:
        return configured
    name = git.env.get("GIT_COMMITTER_NAME") or git.config("user.name")
    email = git.env.get("GIT_COMMITTER_EMAIL") or git.config("user.email")
    if name and email:
        return Identity(name, email)
    return DEFAULT_IDENTITY


def remote_host(url: str) -> str:
    """The host of a remote URL (``https://h/...``, ``ssh://git@h:22/...``, ``git@h:o/r``); "" for paths."""
    url = url.strip()
    if not url or url.startswith(("/", "./", "../", "file:")):
        return ""
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/@]+@)?(?P<host>[^/:]+)", url) or \
        re.match(r"^(?:[^/@:]+@)?(?P<host>[^/:]+):", url)
    return match["host"] if match else ""


def configured_remote_url(git: Git, remote: str) -> str:
    """The remote's URL as written in the config, before ``url.<base>.insteadOf`` rewrites it."""
    return git.config(f"remote.{remote}.url")


def remote_url(git: Git, remote: str) -> str:
    result = git.run("remote", "get-url", remote, check=False)
    return result.stdout.decode("utf-8", "replace").strip() if result.returncode == 0 else ""


def _commit_sha(git: Git, rev: str) -> str:
    found = git.run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    sha = found.stdout.decode().strip()
    if found.returncode != 0 or not sha:
        raise PushError(f"the run's commit {rev[:10]!r} is not in {git.root}: publish from the clone that ran it "
                        f"(or fetch that commit first)")
    return sha


def commit_files(git: Git, *, parent: str, files: Mapping[str, bytes], message: str, author: Identity,
                 tree_of: str = "") -> str:
    """A commit of ``tree_of``'s tree (default: ``parent``'s) plus ``files`` (repository
    path → content), with ``parent`` as its only parent. Built in a temporary index:
    nothing else changes."""
    parent_sha = _commit_sha(git, parent)
    tree_sha = _commit_sha(git, tree_of) if tree_of else parent_sha
    with tempfile.TemporaryDirectory(prefix="trainboard-index-") as tmp:
        index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git.run("read-tree", tree_sha, extra_env=index_env, what="reading the run commit's tree")
        entries = []
        for path, content in sorted(files.items()):
            sha = git.out("hash-object", "-w", "--stdin", input=content, what=f"storing {path}")
            entries.append(f"100644 {sha}\t{repo_path(path)}\0")
        if entries:
            git.run("update-index", "--add", "-z", "--index-info", input="".join(entries).encode(),
                    extra_env=index_env, what="adding the outputs to the temporary index")
        tree = git.out("write-tree", extra_env=index_env, what="writing the outputs tree")
    who = {
        "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email,
    }
    return git.out("commit-tree", tree, "-p", parent_sha, "-F", "-", input=message.encode(), extra_env=who,
                   what="committing the outputs")


def remote_tip(git: Git, remote: str, branch: str) -> str:
    """The commit ``branch`` points at on ``remote``; "" when it does not exist there."""
    ref = f"refs/heads/{branch}"
    text = git.out("ls-remote", "--refs", remote, ref, what=f"reading {ref} on {remote!r}")
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            return sha.strip()
    return ""


def fetch_tip(git: Git, remote: str, branch: str) -> str:
    """The commit ``branch`` points at on ``remote``, fetched here so that a commit can
    be built on it; "" when the branch does not exist there."""
    tip = remote_tip(git, remote, branch)
    if tip and git.run("cat-file", "-e", f"{tip}^{{commit}}", check=False).returncode != 0:
        git.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote, f"refs/heads/{branch}",
                what=f"fetching refs/heads/{branch} from {remote!r}")
    return tip


_REJECTED = re.compile(r"non-fast-forward|fetch first|stale info|\[rejected\]|failed to update ref|"
                       r"cannot lock ref|incorrect old value", re.IGNORECASE)


def push_commit(git: Git, *, remote: str, commit: str, branch: str, create: bool = False) -> None:
    """Point ``branch`` on ``remote`` at ``commit``, a descendant of its tip there: an
    ordinary push, never a forced one. ``create``: the branch must not exist yet (a
    publish racing ours created it: :class:`NotFastForward`, build on it)."""
    ref = f"refs/heads/{branch}"
    args = ["push", "--porcelain"]
    if create:
        args.append(f"--force-with-lease={ref}:")  # only "must not exist": a creation is no forced update
    result = git.run(*args, remote, f"{commit}:{ref}", check=False, what=f"pushing the outputs to {ref}")
    if result.returncode == 0:
        return
    detail = (result.stderr + result.stdout).decode("utf-8", "replace").strip()
    if _REJECTED.search(detail) and "declined" not in detail and "GH013" not in detail:
        raise NotFastForward(git.scrub(scrub_url_credentials(f"{ref} on {remote!r} moved while publishing: {detail}")))
    hint = ""
    if re.search(r"signature|signed", detail, re.IGNORECASE):
        hint = (": the branch requires signed commits and trainboard's are unsigned; exempt trainboard/* from "
                "the signed-commits rule (or the ruleset's bypass list), or publish with github.publish: never")
    elif re.search(r"GH013|rule|protected|declined", detail, re.IGNORECASE):
        hint = ": a branch rule refuses this push; exempt trainboard/* from it (trainboard only fast-forwards)"
    raise PushError(git.scrub(scrub_url_credentials(
        f"pushing the outputs to {ref} on {remote!r} failed (exit {result.returncode}){hint}. git said: {detail}")))


def delete_branch(git: Git, *, remote: str, branch: str, expected: str) -> None:
    """Delete ``branch`` on ``remote`` when it still points at ``expected``."""
    ref = f"refs/heads/{branch}"
    git.run("push", "--porcelain", f"--force-with-lease={ref}:{expected}", remote, f":{ref}",
            what=f"deleting {ref} on {remote!r}")

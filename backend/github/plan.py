"""What a publish sends: the report's relative links rewritten (plots on the outputs branch,
or a note where they are not published), bodies cut to GitHub's limit, and the files
committed on the outputs branch, masked (a binary file holding a secret is withheld)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trainboard.backend import gitpush
from trainboard.backend.github.common import BODY_LIMIT, REPORT_FILE, PublishError


def outputs_for_run(record_dir: Path, workdir: str, outputs: list[str] | tuple[str, ...]) -> dict[str, Path]:
    """Repository path → the run's copy, for ``job.outputs`` as the session collects them
    (each into the run folder under its file name)."""
    found: dict[str, Path] = {}
    for rel in outputs:
        path = gitpush.repo_path(str(Path(workdir) / rel))
        found[path] = record_dir / Path(rel).name
    return found



_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"\n]*\")?\)")


def _is_relative(target: str) -> bool:
    return not (re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith(("/", "#")))


def report_links(report: str) -> list[str]:
    """Relative link and image targets in a markdown report, in order, once each."""
    seen: list[str] = []
    for match in _LINK.finditer(report):
        target = urllib.parse.unquote(match["target"])
        if _is_relative(target) and target not in seen:
            seen.append(target)
    return seen


def blob_url(web: str, repo: str, branch: str, path: str) -> str:
    """A file on a branch, served raw (so images render in pull requests)."""
    quoted = urllib.parse.quote
    return f"{web}/{repo}/blob/{quoted(branch, safe='/')}/{quoted(path, safe='/')}?raw=true"


def rewrite_links(report: str, resolve: Callable[[str], str | None], missing_note: Callable[[str, str], str]) -> str:
    """Relative links made absolute with ``resolve``; an image it cannot resolve is
    replaced by ``missing_note(alt, target)``, a plain link is left as it is."""

    def replace(match: re.Match[str]) -> str:
        target = urllib.parse.unquote(match["target"])
        if not _is_relative(target):
            return match[0]
        url = resolve(target)
        if url is None:
            return missing_note(match["text"], target) if match["bang"] else match[0]
        return f"{match['bang']}[{match['text']}]({url}{match['title'] or ''})"

    return _LINK.sub(replace, report)


def fit_body(text: str, limit: int = BODY_LIMIT, where: str = "") -> str:
    """``text`` within GitHub's body limit: cut at a line, code fence closed, with a note."""
    if len(text) <= limit:
        return text
    note = (f"\n\n---\n*Report truncated to fit GitHub's {limit}-character limit "
            f"(it has {len(text)} characters)" + (f"; the full report is {where}" if where else "") + ".*\n")
    room = limit - len(note) - len("\n```\n")
    cut = text[:room]
    if "\n" in cut:
        cut = cut[: cut.rfind("\n")]
    if sum(1 for line in cut.splitlines() if line.lstrip().startswith("```")) % 2:
        cut += "\n```"
    return cut + note


@dataclass(frozen=True)
class Plan:
    """What to publish, rendered and masked."""

    report: str  # the masked report, links relative (as pushed)
    files: dict[str, bytes]  # repository path → content (text files masked)
    links: dict[str, str]  # report link target → repository path on the outputs branch
    missing: tuple[str, ...]
    withheld: tuple[str, ...]


def _is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _masked(data: bytes, scrub: Callable[[str], str]) -> bytes | None:
    """A text file with its secrets masked; a binary file as it is, or None when it
    holds a secret (it cannot be masked without breaking it, so it is not pushed)."""
    if _is_text(data):
        return scrub(data.decode("utf-8")).encode("utf-8")
    raw = data.decode("latin-1")  # one char a byte: secret values and shapes still match
    return data if scrub(raw) == raw else None


def plan_files(record_dir: Path, report_dir: str, outputs: Mapping[str, Path], scrub: Callable[[str], str]) -> Plan:
    report_path = record_dir / REPORT_FILE
    try:
        report = scrub(report_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishError(f"no report to publish: {report_path} does not exist (the run did not get "
                           f"to its report stage)") from None
    files: dict[str, bytes] = {}
    missing: list[str] = []
    withheld: list[str] = []

    def add(path: str, data: bytes) -> bool:
        masked = _masked(data, scrub)
        if masked is None:
            withheld.append(path)
            return False
        files[path] = masked
        return True

    for path, source in outputs.items():
        target = gitpush.repo_path(path)
        try:
            data = source.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            missing.append(target)
            continue
        add(target, data)
    links: dict[str, str] = {}
    root = record_dir.resolve()
    for target in report_links(report):
        local = (record_dir / target).resolve()
        if not local.is_relative_to(root) or not local.is_file() or local.name == REPORT_FILE:
            continue
        path = f"{report_dir}/{local.relative_to(root).as_posix()}"
        if add(path, local.read_bytes()):
            links[target] = path
    files[f"{report_dir}/{REPORT_FILE}"] = report.encode("utf-8")
    return Plan(report=report, files=files, links=links, missing=tuple(missing), withheld=tuple(withheld))

"""What the git-notes baseline costs a run: looking it up, and recording it.

    .venv/bin/python benchmarks/bench_git_baseline.py [--commits 1000] [--runs 5]

Builds a bare remote whose main has N commits, each with a trainboard note (one config's
entry), as years of push builds would leave it. In a fresh clone on a branch off the middle
of main, times (median of --runs):

* lookup: ``gitbaseline.lookup`` — fetch refs/notes/trainboard from the remote, then
  find the merge base's entry (what a pull request's run does);
* lookup, newest on main: the same where the merge base has no entry (the walk of main's
  history, HISTORY_LIMIT commits);
* lookup, no notes on the remote: the cost a repository without trainboard notes pays;
* record: ``gitbaseline.record`` on main's tip — write the note with plumbing and push it.

Baseline, in the same run: ``git fetch`` of the same notes ref alone, and a plain
``git ls-remote`` of the remote (the least one network round trip to the remote costs).
Goal: a lookup within 0.5 s of the baseline fetch, a record under 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainboard.backend import gitbaseline as gb  # noqa: E402

IDENTITY = gb.ConfigIdentity("params.yaml", "bench", "bench")
ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    import os

    done = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=True,
                          env={**os.environ, **ENV})
    return done.stdout.decode().strip()


def build(tmp: Path, commits: int) -> tuple[Path, list[str]]:
    """A bare remote: main with ``commits`` commits, each noted (one fast-import stream)."""
    remote = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    stream = []
    for i in range(commits):
        stream += [f"commit refs/heads/main\nmark :{i + 1}\ncommitter b <b@b> {1700000000 + i} +0000\n"
                   f"data 3\nc{i % 10}\n" + (f"from :{i}\n" if i else "") + f"M 644 inline file\ndata 8\n{i:07d}\n\n"]
    git(remote, "fast-import", "--quiet", input="".join(stream).encode())
    shas = git(remote, "rev-list", "--reverse", "main").split()
    blobs = []
    for i, sha in enumerate(shas):
        entry = gb.make_entry(IDENTITY, branch="main", commit=sha, status="succeeded", verdict="ok",
                              metrics={"f1": 0.5 + i / (10 * commits)}, params={"lr": "0.001"},
                              mlflow_run_id=f"{i:032x}", trainboard_run_id=f"run-{i}")
        entry.pop("key")
        blobs.append(gb.note_text({IDENTITY.key: entry}))
    names = []
    for data in blobs:  # hash-object --stdin-paths wants files: write them once
        path = tmp / "blobs" / f"{len(names)}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        names.append(str(path))
    hashes = git(remote, "hash-object", "-w", "--stdin-paths", input="\n".join(names).encode()).split()
    listing = "".join(f"100644 blob {h}\t{sha}\n" for h, sha in zip(hashes, shas, strict=True))
    tree = git(remote, "mktree", input=listing.encode())
    notes = git(remote, "commit-tree", tree, "-m", "notes")
    git(remote, "update-ref", gb.NOTES_REF, notes)
    return remote, shas


def median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        began = time.perf_counter()
        remote, shas = build(tmp, args.commits)
        print(f"remote: {args.commits} commits on main, {args.commits} notes (built in "
              f"{time.perf_counter() - began:.1f} s)")
        clone = tmp / "clone"
        git(tmp, "clone", "-q", str(remote), str(clone))
        middle = shas[len(shas) // 2]
        git(clone, "switch", "-q", "-c", "feature", middle)

        fetch_alone = median(lambda: git(clone, "fetch", "-q", "origin",
                                         f"+{gb.NOTES_REF}:refs/bench/notes"), args.runs)
        ls_remote = median(lambda: git(clone, "ls-remote", "origin", "HEAD"), args.runs)

        def lookup() -> gb.Found | None:
            found, problem = gb.lookup(clone, "main", IDENTITY, "origin", ["f1"])
            assert found is not None and not problem, problem
            return found

        found = lookup()
        assert found.how == "merge base" and found.baseline.commit == middle, found
        merge_base = median(lookup, args.runs)

        # A merge base without an entry: the walk of main's history finds the newest.
        git(clone, "switch", "-q", "main")
        (clone / "x").write_text("x")
        git(clone, "add", "x")
        git(clone, "commit", "-q", "-m", "x")
        git(clone, "push", "-q", "origin", "main")  # main moves on, with no note on its tip
        git(clone, "switch", "-q", "-c", "later")
        found = lookup()
        assert found.how == "newest on main" and found.baseline.commit == shas[-1], found
        newest = median(lookup, args.runs)

        empty = tmp / "empty.git"
        git(tmp, "init", "-q", "--bare", "-b", "main", str(empty))
        git(clone, "push", "-q", str(empty), "origin/main:refs/heads/main")
        git(clone, "remote", "add", "empty", str(empty))
        absent = median(lambda: gb.lookup(clone, "main", IDENTITY, "empty", ["f1"]), args.runs)

        git(clone, "switch", "-q", "main")
        tip = git(clone, "rev-parse", "HEAD")

        def record() -> None:
            entry = gb.make_entry(IDENTITY, branch="main", commit=tip, status="succeeded", verdict="ok",
                                  metrics={"f1": 0.9}, params={}, mlflow_run_id="m", trainboard_run_id="bench")
            done = gb.record(clone, entry, "origin")
            assert done.pushed_to == "origin", done

        recorded = median(record, args.runs)

    print(f"baseline: git fetch of the notes ref alone {fetch_alone * 1000:.0f} ms; "
          f"git ls-remote {ls_remote * 1000:.0f} ms")
    print(f"lookup, merge base:       {merge_base * 1000:.0f} ms  ({merge_base / fetch_alone:.2f}x the fetch alone)")
    print(f"lookup, newest on main:   {newest * 1000:.0f} ms  ({newest / fetch_alone:.2f}x)")
    print(f"lookup, no notes there:   {absent * 1000:.0f} ms  ({absent / ls_remote:.2f}x an ls-remote)")
    print(f"record and push:          {recorded * 1000:.0f} ms")
    ok = merge_base - fetch_alone <= 0.5 and newest - fetch_alone <= 0.5 and recorded <= 1.0
    print("goal (lookup within 0.5 s of the fetch, record under 1 s):", "met" if ok else "MISSED")


if __name__ == "__main__":
    main()

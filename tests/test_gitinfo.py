"""What git says about the repository a run takes: dirty means the run syncs what the commit lacks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from trainboard.backend.gitinfo import git_state


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@e.st", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_dirty_counts_every_file_the_run_syncs_beyond_the_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("data/\n")
    (repo / "train.py").write_text("print('hi')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    assert git_state(repo).dirty is False
    (repo / "data").mkdir()
    (repo / "data" / "big.csv").write_text("ignored by git: not synced\n")
    (repo / ".trainboard" / "runs").mkdir(parents=True)
    (repo / ".trainboard" / "runs" / "record.json").write_text("{}")  # trainboard's own folder
    assert git_state(repo).dirty is False
    (repo / "helper.py").write_text("x = 1\n")  # untracked, not ignored: the run syncs it
    assert git_state(repo).dirty is True
    (repo / "helper.py").unlink()
    (repo / "train.py").write_text("print('changed')\n")
    assert git_state(repo).dirty is True
    git(repo, "commit", "-q", "-am", "second")
    assert git_state(repo).dirty is False

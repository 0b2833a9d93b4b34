"""The pull request at the end of whole runs, through the real CLI: a local bare git
remote, PyGithub against the local fake of GitHub's REST API, real jobs and MLflow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, run_cli
from tests.github_fake import FakeGitHub
from trainboard.backend.exitcodes import ExitCode

TOKEN = "tb-e2e-token-81c3f0a2b9d4"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
GH_SHAPED = "ghp_" + "R2d2C3po" * 5


@pytest.fixture
def fake() -> FakeGitHub:
    with FakeGitHub(token=TOKEN) as server:
        yield server


def on_a_branch_with_origin(repo: Path, fake: FakeGitHub, tmp_path: Path) -> dict:
    """Give the tiny repo a bare origin (the fake's git side) with main pushed, check out the
    feature branch better-f1, and return its tb.yaml as a dict to adjust and commit."""
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    fake.bare_repo = remote
    git(repo, "checkout", "-q", "-b", "better-f1")
    return yaml.safe_load((repo / "tb.yaml").read_text())


@pytest.fixture
def pr_repo(repo: Path, fake: FakeGitHub, tmp_path: Path) -> Path:
    """The tiny repo with a bare origin, on a feature branch, publishing every run."""
    config = on_a_branch_with_origin(repo, fake, tmp_path)
    config["github"] = {"publish": "always", "repo": fake.full_name, "api_url": fake.api_url,
                        "web_url": fake.web_url}
    # The job prints the secrets it can see, on purpose.
    config["job"]["command"] = ("python job.py && python -c \"import os; e = os.environ; print('leak', "
                                "e['GITHUB_TOKEN'], e['AWS_SECRET_ACCESS_KEY'], e['SOME_ID'], e['SOME_PAT'])\"")
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "publish")
    return repo


# Named so that only their shapes (AWS key id, GitHub token) give them away.
ENV = {"GITHUB_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "SOME_ID": AWS_ID, "SOME_PAT": GH_SHAPED}


def test_five_runs_on_a_branch_give_one_pull_request_and_one_report_comment(pr_repo: Path,
                                                                             fake: FakeGitHub) -> None:
    for attempt in range(5):
        proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", f"params.base_f1={0.6 + attempt / 100}"],
                       cwd=pr_repo, env=ENV)
        assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
        assert "pull request #1 " + ("opened" if attempt == 0 else "updated") in proc.stdout
    assert list(fake.pulls) == [1]
    pull = fake.pulls[1]
    assert pull["head"]["ref"] == "trainboard/better-f1" and pull["base"]["ref"] == "main"
    comments = fake.comments_on(1)
    assert len(comments) == 1 and "f1" in comments[0]["body"].lower()
    assert "0.8400" in comments[0]["body"]  # the latest run's F1 (0.64 + 0.2)
    # The gate sits on the pull request's head as a commit status, and the outputs branch only fast-forwarded.
    statuses = fake.statuses_for(pull["head"]["sha"])
    assert [(s["context"], s["state"]) for s in statuses] == [("trainboard/tiny/f1", "success")]
    assert statuses[0]["description"] == "0.8400 (no baseline on main yet): pass"
    assert git(pr_repo, "rev-list", "--count", "origin/trainboard/better-f1", "^better-f1").strip() == "5"
    runs = sorted((pr_repo / ".trainboard" / "runs").iterdir())
    record = json.loads((runs[-1] / "record.json").read_text())
    assert record["pull_request"]["number"] == 1
    # The outputs branch carries the run's outputs and report; the user's branch is untouched.
    shown = git(pr_repo, "ls-tree", "-r", "--name-only", "origin/trainboard/better-f1")
    assert "metrics.json" in shown and any(p.endswith("report.md") for p in shown.splitlines())
    assert git(pr_repo, "status", "--porcelain", "--untracked-files=no") == ""

    # Secrets the job printed appear in no log file, report, PR body, comment or request.
    texts = {str(p): p.read_text(errors="replace") for run in runs for p in run.rglob("*")
             if p.is_file() and p.suffix in (".log", ".md", ".json", ".jsonl") and "workspace" not in p.parts}
    texts["pr body"] = pull["body"]
    texts["comment"] = comments[0]["body"]
    texts.update({f"request {i}": r.body for i, r in enumerate(fake.requests)
                  if r.body})
    assert any("leak ***" in text for text in texts.values())  # the job did print them
    for secret in (TOKEN, AWS_SECRET, AWS_ID, GH_SHAPED):
        leaked = [name for name, text in texts.items() if secret in text]
        assert leaked == [], f"{secret[:8]}… found in {leaked}"


def test_without_a_token_publish_always_stops_before_anything_starts(pr_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=pr_repo, env={"GITHUB_TOKEN": ""})
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "github.publish" in proc.stderr and "GITHUB_TOKEN" in proc.stderr
    assert not (pr_repo / ".trainboard" / "runs").exists()


def test_trainboard_pr_publishes_a_finished_run(pr_repo: Path, fake: FakeGitHub) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "github.publish=never"], cwd=pr_repo, env=ENV)
    assert proc.returncode == ExitCode.OK and not fake.pulls
    published = run_cli(["pr"], cwd=pr_repo, env=ENV)
    assert published.returncode == ExitCode.OK, published.stderr
    assert "pull request #1 opened" in published.stdout and len(fake.comments_on(1)) == 1
    again = run_cli(["pr"], cwd=pr_repo, env=ENV)
    assert "pull request #1 updated" in again.stdout and len(fake.comments_on(1)) == 1
    assert TOKEN not in published.stdout + published.stderr + again.stdout + again.stderr


async def test_the_dashboards_p_opens_the_pull_request_once_the_run_has_ended(
    pr_repo: Path, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.message import Message
    from textual.widgets import Button

    from tests.pilot_support import wait_for_end, wait_until
    from trainboard.backend.config import load_config
    from trainboard.backend.session import Session
    from trainboard.tui.app import make_app

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    session = Session(load_config(pr_repo / "tb.yaml", ["github.publish=never"]), root=pr_repo)
    app = make_app(session)
    messages: list[Message] = []
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        await wait_for_end(pilot, app)
        assert not fake.pulls  # publish: never, so only on request
        assert not app.query_one("#open-pr", Button).has_class("-blocked")
        await pilot.press("p")
        await wait_until(pilot, lambda: any("#1 opened" in str(getattr(m, "notification", "")) for m in messages)
                         or bool(session.record and session.record.get("pull_request")), "the pull request")
        await pilot.pause(0.2)
        assert list(fake.pulls) == [1] and len(fake.comments_on(1)) == 1
        toasts = [m.notification.message for m in messages if hasattr(m, "notification")]
        assert any(t.startswith("#1 opened: ") for t in toasts), toasts
        await pilot.press("p")  # again: the same pull request, updated
        await wait_until(pilot, lambda: sum("#1 updated" in str(getattr(m, "notification", "")) for m in messages)
                         >= 1, "the update")
        assert list(fake.pulls) == [1] and len(fake.comments_on(1)) == 1

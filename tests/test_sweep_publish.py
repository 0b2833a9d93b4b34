"""A sweep's pull request (backend/sweep_publish.py): a real sweep of the tiny job on a feature
branch, then one report comment for the whole sweep through PyGithub against the local fake
of GitHub's REST API and a local bare git remote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, run_cli
from tests.github_fake import FakeGitHub
from tests.test_pr_session import AWS_ID, AWS_SECRET, ENV, GH_SHAPED, TOKEN, on_a_branch_with_origin
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.github import PublishError
from trainboard.backend.redact import Redactor
from trainboard.backend.store import RunStore
from trainboard.backend.sweep_publish import publish_sweep, publish_sweep_at_end, sweep_publish_blocker
from trainboard.backend.sweep_record import SweepData, SweepStore


@pytest.fixture
def fake() -> FakeGitHub:
    with FakeGitHub(token=TOKEN) as server:
        yield server


@pytest.fixture
def swept(repo: Path, fake: FakeGitHub, tmp_path: Path) -> Path:
    """The tiny repo on a feature branch with a GitHub origin, after a two-member sweep whose
    job prints the secrets it can see (github.publish: never, so nothing is published yet)."""
    config = on_a_branch_with_origin(repo, fake, tmp_path)
    config["github"] = {"publish": "never", "repo": fake.full_name, "api_url": fake.api_url,
                        "web_url": fake.web_url}
    config["job"]["command"] = ("python job.py && python -c \"import os; e = os.environ; print('leak', "
                                "e['GITHUB_TOKEN'], e['AWS_SECRET_ACCESS_KEY'], e['SOME_ID'], e['SOME_PAT'])\"")
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "sweep")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7", "--set",
                    "sweep.max_parallel=2"], cwd=repo, env=ENV)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    assert not fake.pulls  # the members do not publish on their own
    return repo


def the_sweep(repo: Path) -> SweepData:
    return SweepStore(repo / ".trainboard").resolve(None)


def test_one_comment_carries_the_member_table_and_the_best_members_comparison(swept: Path,
                                                                              fake: FakeGitHub) -> None:
    data = the_sweep(swept)
    config = load_config(swept / "tb.yaml").config
    result = publish_sweep(data, swept, config, Redactor.from_env(ENV), env=ENV)
    assert result.pr_number == 1 and result.created_pr and list(fake.pulls) == [1]
    comments = fake.comments_on(1)
    assert len(comments) == 1
    body = comments[0]["body"]
    assert body.startswith("<!-- trainboard-report:tiny -->\n# trainboard sweep: tiny")
    # The member table, the best member starred.
    best = data.best_member
    assert best is not None and best.values == {"params.base_f1": "0.7"}
    assert "| # | `params.base_f1` | Status | F1 | Δ vs main | Cost | Run |" in body
    for member in data.members:
        assert f"`{member.run_id}`" in body
    assert f"| ★ {best.index} | `0.7` | succeeded |" in body
    # The best member's comparison (its metrics and gate) and plots, linked on the outputs branch.
    assert "## Best member: params.base_f1=0.7" in body and "### Metrics" in body
    assert "| F1 | — | 0.9000 |" in body
    branch = "trainboard/better-f1"
    assert f"/blob/{branch}/" in body and "objective.png?raw=true" in body and "best/metrics.png?raw=true" in body
    shown = git(swept, "ls-tree", "-r", "--name-only", f"origin/{branch}").splitlines()
    reports = [p for p in shown if p.startswith(".trainboard/reports/")]
    assert {p.rsplit("/", 1)[-1] for p in reports} >= {"report.md", "objective.png", "metrics.png"}
    assert any(p.endswith("/best/metrics.png") for p in reports)
    # The best member's outputs, as its own pull request would carry them.
    assert "metrics.json" in shown
    pushed = git(swept, "show", f"origin/{branch}:metrics.json")
    best_dir = RunStore(swept / ".trainboard").load(best.run_id).path
    assert pushed == (best_dir / "metrics.json").read_text()
    # The title says the sweep's verdict; the best member's gate is the commit status.
    assert "best: params.base_f1=0.7" in fake.pulls[1]["title"]
    assert [(s["context"], s["state"]) for s in fake.statuses_for(fake.pulls[1]["head"]["sha"])] == \
        [("trainboard/tiny/f1", "success")]
    assert RunStore(swept / ".trainboard").load(best.run_id).info.pull_request.number == 1
    # Once more: the same pull request, the same one comment, edited.
    again = publish_sweep(data, swept, config, Redactor.from_env(ENV), env=ENV)
    assert again.pr_number == 1 and not again.created_pr and len(fake.comments_on(1)) == 1
    # No secret the job printed reaches GitHub.
    texts = {"comment": fake.comments_on(1)[0]["body"], "pr body": fake.pulls[1]["body"]}
    texts.update({f"request {i}": r.body for i, r in enumerate(fake.requests) if r.body})
    pushed_report = next(p for p in reports if p.endswith("/report.md"))
    texts["pushed report"] = git(swept, "show", f"origin/{branch}:{pushed_report}")
    assert "leak ***" in texts["comment"]  # the best member's log tail, masked
    for secret in (TOKEN, AWS_SECRET, AWS_ID, GH_SHAPED):
        assert [name for name, text in texts.items() if secret in text] == [], secret[:8]


def test_at_the_end_it_publishes_as_github_publish_says_and_tells_why_not(swept: Path, fake: FakeGitHub) -> None:
    data = the_sweep(swept)
    said: list[str] = []
    redact = Redactor.from_env(ENV)
    never = load_config(swept / "tb.yaml").config
    assert publish_sweep_at_end(data, swept, never, redact, said.append, env=ENV) is None
    assert said == [] and not fake.pulls
    always = load_config(swept / "tb.yaml", ["github.publish=always"]).config
    # A sweep of the base branch records the baseline: no pull request into its own branch.
    on_base = data.model_copy(update={"branch": "main"})
    assert publish_sweep_at_end(on_base, swept, always, redact, said.append, env=ENV) is None
    assert said == ["no pull request for this sweep: the run is on the base branch 'main' (compare.base): its "
                    "result is the baseline, not a pull request"]
    said.clear()
    result = publish_sweep_at_end(data, swept, always, redact, said.append, env=ENV)
    assert result is not None and list(fake.pulls) == [1] and len(fake.comments_on(1)) == 1
    assert f"pull request #1 opened: {fake.pulls[1]['html_url']}" in said
    assert "commit statuses: trainboard/tiny/f1: success" in said
    # Without a token: said, nothing raised.
    said.clear()
    assert publish_sweep_at_end(data, swept, always, redact, said.append, env={**ENV, "GITHUB_TOKEN": ""}) is None
    assert len(said) == 1 and said[0].startswith("no pull request for this sweep: ") and "GITHUB_TOKEN" in said[0]
    # A sweep without a best member (none finished with a result) publishes nothing.
    said.clear()
    no_best = data.model_copy(update={"best": None})
    with pytest.raises(PublishError, match="no member finished with a result"):
        publish_sweep(no_best, swept, always, None, env=ENV)
    assert sweep_publish_blocker(no_best, swept, always, ENV) == "no member finished with a result"
    assert publish_sweep_at_end(no_best, swept, always, redact, said.append, env=ENV) is None
    assert said == ["no pull request for this sweep: no member finished with a result"]
    assert len(fake.comments_on(1)) == 1


def test_before_it_starts_only_the_settings_are_checked(repo: Path, fake: FakeGitHub, tmp_path: Path) -> None:
    """The controller's check before launching anything: a sweep that would publish but cannot."""
    on_a_branch_with_origin(repo, fake, tmp_path)
    config = load_config(repo / "tb.yaml", ["github.publish=always", f"github.repo={fake.full_name}",
                                            f"github.api_url={fake.api_url}"]).config
    fresh = SweepData(sweep_id="sweep-x", branch="better-f1")
    assert "GITHUB_TOKEN" in sweep_publish_blocker(fresh, repo, config, {"GITHUB_TOKEN": ""})
    assert sweep_publish_blocker(fresh, repo, config, ENV) == ""
    assert "base branch 'main'" in sweep_publish_blocker(fresh.model_copy(update={"branch": "main"}), repo, config,
                                                          ENV)


def pr_event(tmp_path: Path, head_repo: str, sha: str) -> Path:
    """GitHub Actions' event file for pull request #1 from ``head_repo`` at ``sha``."""
    event = tmp_path / f"event-{head_repo.replace('/', '-')}.json"
    event.write_text(json.dumps({
        "action": "synchronize", "number": 1, "repository": {"full_name": "octo/models"},
        "pull_request": {"number": 1, "head": {"ref": "better-f1", "sha": sha, "repo": {"full_name": head_repo}},
                         "base": {"ref": "main", "repo": {"full_name": "octo/models"}}},
    }))
    return event


def test_in_a_pull_requests_ci_the_comment_goes_to_that_pull_request(swept: Path, fake: FakeGitHub,
                                                                     tmp_path: Path) -> None:
    data = the_sweep(swept)
    config = load_config(swept / "tb.yaml", ["github.publish=ci"]).config
    git(swept, "push", "-q", "origin", "better-f1")
    sha = git(swept, "rev-parse", "HEAD").strip()
    fake.open_pull("better-f1", "main")
    summary = tmp_path / "summary.md"
    actions = {**ENV, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
               "GITHUB_STEP_SUMMARY": str(summary)}
    # A fork's pull request gets a read-only token: nothing is asked of GitHub, the summary says why.
    fake.add_fork("someone")
    said: list[str] = []
    fork = {**actions, "GITHUB_EVENT_PATH": str(pr_event(tmp_path, "someone/models", sha))}
    assert publish_sweep_at_end(data, swept, config, Redactor.from_env(ENV), said.append, env=fork) is None
    assert len(said) == 1 and said[0].startswith("no comment or commit status from this sweep: a pull request "
                                                 "from a fork gets a read-only token")
    assert fake.requests == [] and "No pull request comment or commit status" in summary.read_text()
    # This repository's own pull request: the sweep's comment on it, nothing pushed.
    said.clear()
    own = {**actions, "GITHUB_EVENT_PATH": str(pr_event(tmp_path, "octo/models", sha))}
    result = publish_sweep_at_end(data, swept, config, Redactor.from_env(ENV), said.append, env=own)
    assert result is not None and result.pr_ci and result.branch == "" and result.files == (), said
    comments = fake.comments_on(1)
    assert len(comments) == 1 and "| # | `params.base_f1` | Status |" in comments[0]["body"]
    assert "### Metrics" in comments[0]["body"] and TOKEN not in comments[0]["body"]
    assert [(s["context"], s["state"]) for s in fake.statuses_for(sha)] == [("trainboard/tiny/f1", "success")]
    assert git(swept, "ls-remote", "origin", "refs/heads/trainboard/*") == ""


def test_a_sweep_that_publishes_opens_one_pull_request_at_its_end(repo: Path, fake: FakeGitHub,
                                                                  tmp_path: Path) -> None:
    config = on_a_branch_with_origin(repo, fake, tmp_path)
    config["github"] = {"publish": "always", "repo": fake.full_name, "api_url": fake.api_url,
                        "web_url": fake.web_url}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "sweep")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7", "--set",
                    "sweep.max_parallel=2"], cwd=repo, env=ENV)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    assert list(fake.pulls) == [1] and len(fake.comments_on(1)) == 1  # one for the sweep, none a member
    assert "note: pull request #1 opened" in proc.stdout
    data = the_sweep(repo)
    assert "# trainboard sweep: tiny" in fake.comments_on(1)[0]["body"]
    records = {r.run_id: r for r in RunStore(repo / ".trainboard").all()}
    assert records[data.best_member.run_id].pull_request.number == 1


def test_a_sweep_that_must_publish_and_cannot_starts_nothing(repo: Path, fake: FakeGitHub, tmp_path: Path) -> None:
    config = on_a_branch_with_origin(repo, fake, tmp_path)
    config["github"] = {"publish": "always", "repo": fake.full_name, "api_url": fake.api_url}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "sweep")
    env = {k: v for k, v in ENV.items() if k != "GITHUB_TOKEN"}
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7"], cwd=repo, env=env)
    assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stdout + proc.stderr
    assert "github.publish" in proc.stderr and "the sweep's pull request cannot be published" in proc.stderr
    assert not (repo / ".trainboard" / "runs").exists() and not fake.pulls

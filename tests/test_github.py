"""Publishing a run to GitHub: a real clone pushing to a local bare remote, PyGithub
talking to a local server that speaks GitHub's REST shapes (tests/github_fake.py)."""

from __future__ import annotations

import json
import subprocess
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import git, make_tiny_repo
from tests.github_fake import FakeGitHub
from trainboard.backend import gitpush
from trainboard.backend.github import (
    BODY_LIMIT,
    GithubSettings,
    PublishError,
    PublishResult,
    RunInfo,
    check,
    marker,
    outputs_for_run,
    publish_run,
    resolve_repo,
)
from trainboard.backend.redact import Redactor
from trainboard.backend.report import ReportInput, render

TOKEN = "tb-test-token-5f0c2e9a7d41"  # not secret-shaped: masked only because it is the token
SOURCE = "feature/better-f1"
OUTPUTS_BRANCH = "trainboard/feature/better-f1"
REPORTS = ".trainboard/reports/feature/better-f1"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4  # binary, NUL bytes included


@dataclass
class World:
    repo: Path  # the user's clone, on SOURCE, with staged and unstaged changes
    remote: Path  # the bare "GitHub" repository
    record_dir: Path
    commit: str  # the run's commit
    fake: FakeGitHub
    settings: GithubSettings
    outputs: dict[str, Path]

    def run(self, **kw: str) -> RunInfo:
        fields = {"run_id": self.record_dir.name, "branch": SOURCE, "commit": self.commit, "name": "tiny",
                  "verdict": "PASS: every gate holds against main"}
        fields.update(kw)
        return RunInfo(**fields)

    def publish(self, env: dict[str, str] | None = None, **kw: object) -> PublishResult:
        args: dict[str, object] = {
            "repo_root": self.repo, "settings": self.settings, "run": self.run(), "outputs": self.outputs,
            "env": {"GITHUB_TOKEN": TOKEN} if env is None else env,
        }
        args.update(kw)
        return publish_run(self.record_dir, **args)  # type: ignore[arg-type]

    def write_run(self, note: str, f1: float, log: list[str] | None = None) -> None:
        """A run's folder as the session leaves it: report, plots, collected outputs."""
        report = ReportInput(
            name="tiny", run_id=self.record_dir.name, branch=SOURCE, commit=self.commit, dirty=False,
            runner="local", status="succeeded", job_exit_code=0, job_seconds=1.5, mlflow_run_id="abc123",
            experiment="tiny", comparison=None, params={"epochs": 2, "note": note}, baseline_params=None,
            plot="metrics.png", confusion_matrix="confusion_matrix.png", log_tail=log or [f"epoch 2: f1={f1}"],
        )
        (self.record_dir / "report.md").write_text(render(report))
        (self.record_dir / "metrics.png").write_bytes(PNG + note.encode())
        (self.record_dir / "confusion_matrix.png").write_bytes(PNG[::-1] + note.encode())
        (self.record_dir / "metrics.json").write_text(json.dumps({"f1": f1}) + "\n")
        (self.record_dir / "model.dvc").write_text(
            f"outs:\n- md5: {abs(hash(note)):032x}\n  size: 1024\n  path: model\n")
        (self.record_dir / "dvc.lock").write_text(
            f"schema: '2.0'\nstages:\n  train:\n    cmd: python job.py  # {note}\n")


def show(repo: Path, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, capture_output=True, check=True).stdout


def checkout_state(repo: Path) -> dict[str, str]:
    """Everything publishing must leave alone in the user's clone."""
    files = {p.name: p.read_text() for p in sorted(repo.iterdir()) if p.is_file()}
    return {
        "head": git(repo, "symbolic-ref", "HEAD"),
        "head_commit": git(repo, "rev-parse", "HEAD"),
        # git push records the pushed branch as refs/remotes/origin/trainboard/...: nothing else may change
        "refs": "\n".join(line for line in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
                          if not line.startswith("refs/remotes/origin/trainboard/")),
        "index": git(repo, "ls-files", "--stage"),
        "staged": git(repo, "diff", "--cached"),
        "unstaged": git(repo, "diff"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "files": json.dumps(files, sort_keys=True),
    }


def make_world(tmp_path: Path, fake: FakeGitHub) -> World:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo = make_tiny_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "checkout", "-q", "-b", SOURCE)
    (repo / "tb.yaml").write_text((repo / "tb.yaml").read_text().replace("epochs: 2", "epochs: 3"))
    git(repo, "commit", "-q", "-am", "more epochs")  # not pushed: the outputs push carries it
    commit = git(repo, "rev-parse", "HEAD").strip()
    # The user's work in progress, which publishing must not see or touch.
    (repo / "job.py").write_text((repo / "job.py").read_text() + "\n# unstaged edit\n")
    (repo / "staged.txt").write_text("staged, not committed\n")
    git(repo, "add", "staged.txt")
    (repo / "scratch.txt").write_text("untracked\n")
    record_dir = repo / ".trainboard" / "runs" / "20250101-120000-abcd"
    record_dir.mkdir(parents=True)
    fake.bare_repo = remote
    settings = GithubSettings(
        repo=fake.full_name, api_url=fake.api_url, web_url=fake.web_url, base="main", attempts=4, backoff=0.05,
        max_wait=10, timeout=10, seconds_between_requests=0, seconds_between_writes=0,
    )
    outputs = outputs_for_run(record_dir, "train", ["model.dvc", "dvc.lock", "metrics.json"])
    return World(repo, remote, record_dir, commit, fake, settings, outputs)


@pytest.fixture
def world(tmp_path: Path) -> World:
    with FakeGitHub(token=TOKEN) as fake:
        yield make_world(tmp_path, fake)


def test_five_runs_of_a_branch_keep_one_pull_request_and_one_report_comment(world: World) -> None:
    before = checkout_state(world.repo)
    results = []
    for i in range(5):
        world.write_run(f"run {i}", f1=0.8 + i / 100)
        results.append(world.publish())

    fake = world.fake
    assert [r.created_pr for r in results] == [True, False, False, False, False]
    assert len(fake.pulls) == 1
    pr = fake.pulls[1]
    assert {r.pr_number for r in results} == {1} and results[-1].pr_url == pr["html_url"]
    assert (pr["state"], pr["head"]["ref"], pr["base"]["ref"]) == ("open", OUTPUTS_BRANCH, "main")
    assert pr["title"] == "trainboard: tiny on feature/better-f1 — PASS: every gate holds against main"
    assert "`note` | `run 4`" in pr["body"] and "run 3" not in pr["body"]
    comments = fake.comments_on(1)
    assert len(comments) == 1, "one report comment, edited in place"
    assert comments[0]["body"].startswith(marker("tiny")) and "`note` | `run 4`" in comments[0]["body"]
    assert results[-1].comment_url == comments[0]["html_url"]
    assert len(fake.recorded("POST", "/repos/octo/models/issues/1/comments")) == 1
    assert len(fake.recorded("PATCH", f"/repos/octo/models/issues/comments/{comments[0]['id']}")) == 4

    # The outputs branch on the remote: the run's commit plus the outputs, byte for byte.
    tip = git(world.remote, "rev-parse", f"refs/heads/{OUTPUTS_BRANCH}").strip()
    assert tip == results[-1].commit and results[-1].branch == OUTPUTS_BRANCH
    # Each publish a fast-forward: the first on the run's commit, each next one on the previous tip.
    assert git(world.remote, "rev-parse", f"{results[0].commit}^@").split() == [world.commit]
    for before_, after_ in zip(results, results[1:], strict=False):
        assert git(world.remote, "rev-parse", f"{after_.commit}^@").split() == [before_.commit]
    assert git(world.remote, "rev-parse", f"{tip}^{{tree}}") != \
        git(world.remote, "rev-parse", f"{world.commit}^{{tree}}")
    assert pr["head"]["sha"] == tip
    expected = {
        "train/model.dvc": world.record_dir / "model.dvc",
        "train/dvc.lock": world.record_dir / "dvc.lock",
        "train/metrics.json": world.record_dir / "metrics.json",
        f"{REPORTS}/report.md": world.record_dir / "report.md",
        f"{REPORTS}/metrics.png": world.record_dir / "metrics.png",
        f"{REPORTS}/confusion_matrix.png": world.record_dir / "confusion_matrix.png",
    }
    assert set(results[-1].files) == set(expected)
    for path, local in expected.items():
        assert show(world.remote, tip, path) == local.read_bytes(), path
    tree = set(git(world.remote, "ls-tree", "-r", "--name-only", tip).split())
    assert tree == set(expected) | {"job.py", "tb.yaml", ".gitignore"}  # no staged/untracked work leaked
    author = git(world.remote, "log", "-1", "--format=%an <%ae>", tip).strip()
    assert author == "Test <test@example.com>"  # the repository's git identity

    # Plots are linked on the outputs branch, on the web URL: no upload anywhere.
    for name in ("metrics.png", "confusion_matrix.png"):
        link = f"{fake.web_url}/octo/models/blob/{OUTPUTS_BRANCH}/{REPORTS}/{name}?raw=true"
        assert link in pr["body"] and link in comments[0]["body"]
        assert f"]({name})" not in pr["body"]
    assert {(r.method, r.path.split("/")[-1]) for r in fake.requests} <= {
        ("GET", "models"), ("GET", "user"), ("GET", "pulls"), ("POST", "pulls"), ("PATCH", "1"),
        ("GET", "comments"), ("POST", "comments"), ("PATCH", str(comments[0]["id"])),
    }
    assert all(r.headers["authorization"] == f"token {TOKEN}" for r in fake.requests)

    assert checkout_state(world.repo) == before, "the user's branch, index and working tree are untouched"


def test_in_a_pull_requests_ci_it_comments_on_that_pull_request_only(world: World, tmp_path: Path) -> None:
    fake = world.fake
    human = fake.open_pull(SOURCE, "main", title="Better F1", body="my change")
    for i in range(35):  # the report comment lands on the second page of comments
        fake.add_comment(human["number"], f"review remark {i}")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({
        "action": "synchronize", "number": human["number"],
        "pull_request": {"number": human["number"], "head": {"ref": SOURCE}, "base": {"ref": "main"}},
        "repository": {"full_name": "octo/models"},
    }))
    env = {"GITHUB_TOKEN": TOKEN, "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_ACTIONS": "true"}
    settings = replace(world.settings, repo="")  # the event names the repository
    for i in range(2):
        world.write_run(f"ci run {i}", f1=0.9)
        result = world.publish(env=env, settings=settings)
        assert (result.pr_number, result.created_pr, result.pr_ci, result.branch) == (human["number"], False, True, "")

    assert list(fake.pulls) == [human["number"]] and not fake.recorded("POST", "/repos/octo/models/pulls")
    assert (fake.pulls[1]["title"], fake.pulls[1]["body"]) == ("Better F1", "my change"), "the person's PR is theirs"
    ours = [c for c in fake.comments_on(1) if marker("tiny") in c["body"]]
    assert len(ours) == 1 and "`note` | `ci run 1`" in ours[0]["body"]
    assert len(fake.comments_on(1)) == 36
    assert git(world.remote, "for-each-ref", "refs/heads/trainboard") == "", "nothing pushed from a PR's CI"
    assert "not published from a pull request's CI" in ours[0]["body"] and "?raw=true" not in ours[0]["body"]


def test_a_pull_request_opened_meanwhile_is_found_and_updated(world: World) -> None:
    fake = world.fake
    world.write_run("race", f1=0.85)

    def someone_opens_it(request) -> None:  # right after our look found none: the 422 race
        if request.method == "GET" and request.path.endswith("/pulls") and not fake.pulls:
            fake.open_pull(OUTPUTS_BRANCH, "main", title="opened by another run", user="trainboard-bot")

    fake.on_request.append(someone_opens_it)
    result = world.publish()
    creates = fake.recorded("POST", "/repos/octo/models/pulls")
    assert [r.status for r in creates] == [422]
    assert result.created_pr is False and result.pr_number == 1 and len(fake.pulls) == 1
    assert fake.pulls[1]["title"].startswith("trainboard: tiny") and "`note` | `race`" in fake.pulls[1]["body"]
    assert len(fake.comments_on(1)) == 1


def test_bad_gateway_answers_are_retried(world: World) -> None:
    world.write_run("flaky", f1=0.8)
    world.fake.fail_next(2, 502, {"message": "Bad Gateway"})
    result = world.publish(outputs={**world.outputs, "train/absent.dvc": world.record_dir / "absent.dvc"})
    assert result.missing == ("train/absent.dvc",) and "train/model.dvc" in result.files
    assert result.created_pr and [r.status for r in world.fake.requests[:3]] == [502, 502, 200]
    assert len(world.fake.pulls) == 1 and len(world.fake.comments_on(1)) == 1


def test_a_spent_rate_limit_is_waited_out_until_its_reset(world: World) -> None:
    world.write_run("limited", f1=0.8)
    world.publish()  # the pull request exists; the next publish meets the limit
    reset = world.fake.exhaust_rate_limit(1.0)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    result = world.publish(sleep=sleep)
    limited = [r for r in world.fake.requests if r.status == 403]
    assert limited and time.time() >= reset
    assert len(waits) == len(limited) and all(0 < w <= 3 for w in waits)
    assert result.pr_number == 1 and len(world.fake.comments_on(1)) == 1


def test_a_secondary_rate_limit_429_honours_retry_after(world: World) -> None:
    world.write_run("429", f1=0.8)
    world.fake.too_many_requests(1, retry_after=1)
    waits: list[float] = []
    result = world.publish(sleep=waits.append)
    assert waits == [1.0] and result.created_pr


def test_a_rate_limit_resetting_later_than_max_wait_is_a_clear_error(world: World) -> None:
    world.write_run("later", f1=0.8)
    world.fake.exhaust_rate_limit(600)
    with pytest.raises(PublishError, match=r"rate limit is spent and resets in \d+ s.*github.max_wait.*trainboard pr"):
        world.publish(sleep=lambda s: pytest.fail("must not wait past max_wait"))


def test_a_server_that_keeps_failing_gives_one_clear_error_without_the_token(world: World) -> None:
    world.write_run("down", f1=0.8)
    # The failing server echoes the request's credentials: they must not reach the user.
    world.fake.fail_next(100, 500, {"message": f"internal error handling Authorization: token {TOKEN}"})
    waits: list[float] = []
    with pytest.raises(PublishError) as caught:
        world.publish(sleep=waits.append)
    message = str(caught.value)
    assert "reading repository octo/models failed after 4 tries: GitHub answered 500" in message
    assert "retry later with `trainboard pr RUN`" in message
    assert waits == [0.05, 0.1, 0.2], "bounded exponential backoff"
    shown = "".join(traceback.format_exception(caught.value))
    assert TOKEN not in shown and "***" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_refused_token_fails_at_once_with_what_to_fix(world: World) -> None:
    world.write_run("bad token", f1=0.8)
    with pytest.raises(PublishError, match=r"GitHub answered 401 \(Bad credentials\).*GITHUB_TOKEN") as caught:
        world.publish(env={"GITHUB_TOKEN": "tb-wrong-token-123456"})
    assert "tb-wrong-token-123456" not in str(caught.value)
    assert len(world.fake.requests) == 1, "no retry of a refused token"
    assert git(world.remote, "for-each-ref", "refs/heads/trainboard") == "", "checked before pushing"


def test_without_a_token_nothing_is_pushed_or_sent(world: World) -> None:
    world.write_run("no token", f1=0.8)
    with pytest.raises(PublishError, match="GITHUB_TOKEN is not set"):
        world.publish(env={})
    with pytest.raises(PublishError, match="GITHUB_TOKEN is not set"):
        check(world.settings, world.repo, {})
    assert check(world.settings, world.repo, {"GITHUB_TOKEN": TOKEN}) == "octo/models"
    assert world.fake.requests == [] and git(world.remote, "for-each-ref", "refs/heads/trainboard") == ""


def test_secrets_never_reach_github_or_the_pushed_files(world: World) -> None:
    ghp = "ghp_" + "A1b2C3d4E5" * 4
    akia = "AKIAIOSFODNN7EXAMPLE"
    aws_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    log = [f"token={ghp}", f"GITHUB_TOKEN={TOKEN}", f"aws key {akia} secret {aws_secret}", "epoch 2: f1=0.9"]
    world.write_run(f"leaky {TOKEN}", f1=0.9, log=log)
    (world.record_dir / "dvc.lock").write_text(f"remote: s3://bucket\naws_secret: {aws_secret}\n")
    redact = Redactor.from_env({"AWS_SECRET_ACCESS_KEY": aws_secret})  # knows nothing of the GitHub token
    result = world.publish(redact=redact, run=world.run(verdict=f"PASS {ghp}"))

    secrets = (ghp, TOKEN, akia, aws_secret)
    sent = [r.body for r in world.fake.requests] + [r.path + json.dumps(r.query) for r in world.fake.requests]
    assert sent and not [s for s in secrets for body in sent if s in body]
    pushed = b"".join(show(world.remote, result.commit, path) for path in result.files)
    pushed += git(world.remote, "log", "-1", "--format=%B", result.commit).encode()
    assert not [s for s in secrets if s.encode() in pushed]
    body = world.fake.pulls[1]["body"]
    assert "token=***" in body and "aws key *** secret ***" in body
    # The plots carry the token in their bytes: a binary file cannot be masked, so it stays home.
    assert set(result.withheld) == {f"{REPORTS}/metrics.png", f"{REPORTS}/confusion_matrix.png"}
    assert not set(result.withheld) & set(result.files)
    assert "`metrics.png` is in the run's folder" in body and "the file holds a secret" in body


def test_a_report_longer_than_githubs_limit_is_cut_with_a_note(world: World) -> None:
    world.write_run("long", f1=0.8, log=[f"line {i} " + "x" * 60 for i in range(1500)])
    assert len((world.record_dir / "report.md").read_text()) > BODY_LIMIT
    world.publish()
    for body in (world.fake.pulls[1]["body"], world.fake.comments_on(1)[0]["body"]):
        assert len(body) <= BODY_LIMIT
        assert "Report truncated to fit GitHub's 65536-character limit" in body
        assert f"`{REPORTS}/report.md` on branch `{OUTPUTS_BRANCH}`" in body
        assert body.count("```") % 2 == 0, "the log's code fence is closed"
    full = show(world.remote, OUTPUTS_BRANCH, f"{REPORTS}/report.md")
    assert full == (world.record_dir / "report.md").read_bytes(), "the branch has the whole report"


def test_enterprise_api_prefix_and_a_repository_without_git_identity(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGitHub(token=TOKEN, prefix="/api/v3") as fake:
        world = make_world(tmp_path, fake)
        world.settings = replace(world.settings, web_url="")  # derived: the API URL without /api/v3
        git(world.repo, "config", "--unset", "user.name")
        git(world.repo, "config", "--unset", "user.email")
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        world.write_run("ghe", f1=0.8)
        result = world.publish()
        assert result.pr_url == f"{fake.root}/octo/models/pull/1"
        assert f"{fake.root}/octo/models/blob/{OUTPUTS_BRANCH}/{REPORTS}/metrics.png?raw=true" in fake.pulls[1]["body"]
        assert all(r.path.startswith("/repos/") or r.path == "/user" for r in fake.requests)  # under /api/v3
        author = git(world.remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>", result.commit).strip()
        bot = "trainboard <trainboard@users.noreply.github.com>"
        assert author == f"{bot}|{bot}"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://github.com/octo/models", "octo/models"),
    ("https://github.com/octo/models.git", "octo/models"),
    ("https://x-access-token:secret@github.com/octo/models.git", "octo/models"),
    ("git@github.com:octo/models.git", "octo/models"),
    ("git@github.com:octo/my.models", "octo/my.models"),
    ("ssh://git@github.com/octo/models.git", "octo/models"),
    ("ssh://git@ghe.example.com:2222/team/models.git", "team/models"),
    ("/srv/git/models.git", None),
    ("../remote.git", None),
    ("file:///srv/git/models.git", None),
    ("https://github.com/octo", None),
])
def test_the_repository_is_parsed_from_the_remote_url(url: str, expected: str | None) -> None:
    assert gitpush.parse_github_repo(url) == expected


def test_the_repository_comes_from_config_else_the_remote(tmp_path: Path) -> None:
    repo = make_tiny_repo(tmp_path / "repo")
    git(repo, "remote", "add", "origin", "git@github.com:octo/from-remote.git")
    assert resolve_repo(GithubSettings(), repo, {}) == "octo/from-remote"
    assert resolve_repo(GithubSettings(repo="octo/named"), repo, {}) == "octo/named"
    git(repo, "remote", "set-url", "origin", str(tmp_path / "bare.git"))
    with pytest.raises(PublishError, match="set github.repo: owner/name"):
        resolve_repo(GithubSettings(), repo, {})
    with pytest.raises(PublishError, match="remote 'upstream' does not exist"):
        resolve_repo(GithubSettings(remote="upstream"), repo, {})


@pytest.mark.parametrize(("source", "expected"), [
    ("feature/better-f1", "trainboard/feature/better-f1"),
    ("fix: the ~odd^ name?", "trainboard/fix-the-odd-name-"),
    ("a..b/.hidden/x.lock", "trainboard/a-b/hidden/x"),
    ("HEAD", "trainboard/detached-0123456789"),
])
def test_outputs_branch_names_are_valid_refs(tmp_path: Path, source: str, expected: str) -> None:
    name = gitpush.outputs_branch(source, "0123456789abcdef")
    assert name == expected
    subprocess.run(["git", "check-ref-format", "--branch", name], check=True, capture_output=True)


def test_the_web_url_is_derived_from_the_api_url() -> None:
    assert GithubSettings().web == "https://github.com"
    assert GithubSettings(api_url="https://ghe.example.com/api/v3").web == "https://ghe.example.com"
    assert GithubSettings(api_url="https://ghe.example.com/api/v3", web_url="https://web.example/").web == \
        "https://web.example"


def test_a_run_on_an_outputs_branch_is_not_published_again(world: World) -> None:
    world.write_run("nested", f1=0.8)
    with pytest.raises(PublishError, match="one of trainboard's outputs branches"):
        world.publish(run=world.run(branch=OUTPUTS_BRANCH))
    assert world.fake.requests == []

"""Publishing as real repositories have it: branch rules, commit statuses, what the token
may do, forks, per-config comments, GitHub Enterprise, and the fork-safe pair of
workflows (a read-only pull request run, then `trainboard pr --results`). Real git
remotes, PyGithub against the OpenAPI-checked stand-in (tests/github_fake.py)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, run_cli
from tests.github_fake import FakeGitHub, deny_force_push
from tests.test_github import OUTPUTS_BRANCH, SOURCE, TOKEN, World, make_world
from tests.test_pr_session import on_a_branch_with_origin
from trainboard.backend.compare import Comparison, ComparisonRow
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.github import (
    ACTIONS_BOT,
    STATUS_DESCRIPTION_LIMIT,
    PublishError,
    ReadOnlyToken,
    commit_statuses,
    marker,
    resolve_api_url,
)

ACTIONS_TOKEN = "tb-actions-token-0c1d2e3f4a5b"


@pytest.fixture
def world(tmp_path: Path) -> World:
    with FakeGitHub(token=TOKEN) as fake:
        yield make_world(tmp_path, fake)


def comparison(after: float, before: float = 0.911, min_delta: float = 0.0) -> Comparison:
    passed = after - before >= min_delta
    row = ComparisonRow("f1", "F1", "max", 3, before, after, f"Δ ≥ {min_delta:+g}", passed,
                        "" if passed else f"Δ {after - before:+.4g} < {min_delta:+g}")
    plain = ComparisonRow("loss", "loss", "min", 3, 0.5, 0.4, "", None)
    return Comparison("main", "mlflow-run-1", "main @ 1a2b3c4", (row, plain), final=True)


def branches(remote: Path) -> str:
    return git(remote, "for-each-ref", "--format=%(refname)", "refs/heads/trainboard")


def write_requests(fake: FakeGitHub) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests if r.method not in ("GET", "HEAD")]


# ------------------------------------------------------------------ branch rules and statuses


def test_publishes_are_fast_forwards_under_a_no_force_push_rule(world: World) -> None:
    deny_force_push(world.remote)
    commits = []
    for i in range(2):
        world.write_run(f"run {i}", f1=0.8 + i / 100)
        commits.append(world.publish().commit)
    # Someone else's commit lands on the outputs branch meanwhile: the next publish builds on it.
    clone = world.repo.parent / "other"
    subprocess.run(["git", "clone", "-q", "-b", OUTPUTS_BRANCH, str(world.remote), str(clone)], check=True)
    (clone / "note.txt").write_text("by hand\n")
    git(clone, "add", "note.txt")
    git(clone, "-c", "user.name=P", "-c", "user.email=p@example.com", "commit", "-qm", "by hand")
    git(clone, "push", "-q", "origin", OUTPUTS_BRANCH)
    by_hand = git(clone, "rev-parse", "HEAD").strip()
    world.write_run("run 2", f1=0.83)
    commits.append(world.publish().commit)

    parents = [git(world.remote, "rev-parse", f"{c}^@").split() for c in commits]
    assert parents == [[world.commit], [commits[0]], [by_hand]], "each publish a fast-forward on the previous tip"
    assert git(world.remote, "rev-parse", f"refs/heads/{OUTPUTS_BRANCH}").strip() == commits[-1]
    assert len(world.fake.pulls) == 1 and world.fake.pulls[1]["head"]["sha"] == commits[-1]


def test_the_gate_is_a_commit_status_per_gated_metric_failure_then_success(world: World) -> None:
    fake = world.fake
    world.write_run("worse", f1=0.88)
    failed = world.publish(run=world.run(comparison=comparison(0.883), status="gate-failed", name="trainboard"))
    world.write_run("better", f1=0.94)
    passed = world.publish(run=world.run(comparison=comparison(0.939), status="succeeded", name="trainboard"))

    first = fake.statuses_for(failed.commit)
    assert [(s["context"], s["state"]) for s in first] == [("trainboard/f1", "failure")], "loss has no gate"
    assert first[0]["description"].startswith("0.883 (-0.028 vs main): fail")
    assert first[0]["target_url"] == failed.comment_url
    second = fake.statuses_for(passed.commit)
    assert [(s["context"], s["state"], s["description"]) for s in second] == [
        ("trainboard/f1", "success", "0.939 (+0.028 vs main): pass")]
    assert passed.statuses == ("trainboard/f1: success",)
    assert fake.pulls[1]["head"]["sha"] == passed.commit, "the status sits on the pull request's head"


def test_status_contexts_and_states_for_named_configs_crashes_and_long_reasons() -> None:
    from trainboard.backend.github import RunInfo

    base = RunInfo("r1", "b", "0" * 40, name="intents minilm")
    long_reason = replace(comparison(0.5), rows=(replace(comparison(0.5).rows[0], reason="x" * 500),))
    assert commit_statuses(replace(base, comparison=long_reason, status="gate-failed"))[0][:2] == (
        "trainboard/intents-minilm/f1", "failure")
    assert len(commit_statuses(replace(base, comparison=long_reason))[0][2]) == STATUS_DESCRIPTION_LIMIT
    crashed = commit_statuses(replace(base, comparison=comparison(0.9), status="stale metrics"))
    assert crashed == [("trainboard/intents-minilm/f1", "error", "no verdict: the run ended as stale metrics")]
    assert commit_statuses(replace(base, status="cancelled"))[0][2] == "no verdict: the run was cancelled"
    assert commit_statuses(replace(base, status="job-failed"))[0][2] == "no verdict: the job failed"
    assert commit_statuses(replace(base, status="failed"))[0][1] == "error", "a crash is never a pass"
    assert commit_statuses(base) == [], "nothing compared: nothing to post"


# ------------------------------------------------------------------ what the token may do


def actions_env(token: str = ACTIONS_TOKEN) -> dict[str, str]:
    return {"GITHUB_TOKEN": token, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_dispatch"}


def test_actions_setting_off_names_the_setting_and_leaves_no_branch(world: World) -> None:
    world.fake.add_token(ACTIONS_TOKEN, actions=True)
    world.write_run("refused", f1=0.8)
    with pytest.raises(PublishError) as caught:
        world.publish(env=actions_env())
    message = str(caught.value)
    assert "Allow GitHub Actions to create and approve pull requests" in message
    assert "Settings → Actions → General" in message and "was deleted again" in message
    assert branches(world.remote) == "", "a refused pull request leaves no branch behind"
    world.fake.allow_actions_pull_requests = True
    result = world.publish(env=actions_env())
    assert result.created_pr and world.fake.comments_on(1)[0]["user"]["login"] == ACTIONS_BOT


def test_a_missing_pull_requests_write_permission_is_named(world: World) -> None:
    world.fake.add_token(ACTIONS_TOKEN, actions=True, permissions={"pull_requests": "read", "issues": "read"})
    world.fake.allow_actions_pull_requests = True
    world.write_run("no permission", f1=0.8)
    with pytest.raises(PublishError, match=r"GITHUB_TOKEN lacks `pull-requests: write`.*`permissions:`"):
        world.publish(env=actions_env())
    assert branches(world.remote) == ""


def test_a_read_only_token_is_refused_before_anything_is_pushed(world: World) -> None:
    world.fake.add_token("tb-read-only-pat-77", read_only=True)
    world.write_run("read only", f1=0.8)
    with pytest.raises(PublishError, match=r"may read octo/models but not push to it, so nothing was pushed"):
        world.publish(env={"GITHUB_TOKEN": "tb-read-only-pat-77"})
    assert branches(world.remote) == "" and write_requests(world.fake) == []


def pr_event(tmp_path: Path, number: int, head_repo: str, sha: str = "") -> Path:
    event = tmp_path / f"pr-event-{head_repo.replace('/', '-')}.json"
    event.write_text(json.dumps({
        "action": "synchronize", "number": number, "repository": {"full_name": "octo/models"},
        "pull_request": {"number": number, "head": {"ref": SOURCE, "sha": sha or "1" * 40,
                                                    "repo": {"full_name": head_repo}},
                         "base": {"ref": "main", "repo": {"full_name": "octo/models"}}},
    }))
    return event


def test_a_forks_pull_request_in_ci_writes_nothing(world: World, tmp_path: Path) -> None:
    fake = world.fake
    fake.add_token(ACTIONS_TOKEN, actions=True, read_only=True)
    fake.add_fork("someone")
    fake.open_pull(f"someone:{SOURCE}", "main")
    world.write_run("fork", f1=0.9)
    env = {**actions_env(), "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_EVENT_PATH": str(pr_event(tmp_path, 1, "someone/models"))}
    with pytest.raises(ReadOnlyToken, match="a pull request from a fork gets a read-only token"):
        world.publish(env=env, settings=replace(world.settings, repo=""))
    assert fake.requests == [], "not one call, read or write"
    # The same pull request from a branch of this repository, but a read-only token: read, then stop.
    env["GITHUB_EVENT_PATH"] = str(pr_event(tmp_path, 1, "octo/models"))
    with pytest.raises(ReadOnlyToken, match="may only read octo/models"):
        world.publish(env=env, settings=replace(world.settings, repo=""))
    assert write_requests(fake) == [] and fake.comments_on(1) == []


def test_a_locked_conversation_is_said_and_nothing_is_pushed(world: World) -> None:
    world.write_run("first", f1=0.8)
    first = world.publish()
    world.fake.lock(1, "too heated")
    world.write_run("second", f1=0.81)
    with pytest.raises(PublishError, match=r"#1's conversation is locked.*Unlock conversation"):
        world.publish()
    assert git(world.remote, "rev-parse", f"refs/heads/{OUTPUTS_BRANCH}").strip() == first.commit


def test_enterprise_api_url_is_inferred_from_the_remote_and_a_wrong_one_is_not_blamed_on_the_token(
        world: World) -> None:
    from trainboard.backend.github import GithubSettings

    for url, api in (("https://ghe.example.com/octo/models.git", "https://ghe.example.com/api/v3"),
                     ("git@ghe.example.com:octo/models.git", "https://ghe.example.com/api/v3"),
                     ("ssh://git@ghe.example.com:2222/octo/models.git", "https://ghe.example.com/api/v3"),
                     ("https://github.com/octo/models.git", "https://api.github.com"),
                     (str(world.remote), "https://api.github.com")):
        git(world.repo, "remote", "set-url", "origin", url)
        found, note = resolve_api_url(GithubSettings(), world.repo)
        assert found == api, url
        assert ("ghe.example.com" in note and "github.api_url is not set" in note) == ("ghe" in url)
    assert resolve_api_url(GithubSettings(api_url="https://x.example/api/v3/"), world.repo)[0] == \
        "https://x.example/api/v3"
    git(world.repo, "remote", "set-url", "origin", str(world.remote))

    world.write_run("wrong api", f1=0.8)
    wrong = replace(world.settings, api_url=world.fake.root + "/nothing-here")
    with pytest.raises(PublishError) as caught:
        world.publish(settings=wrong)
    message = str(caught.value)
    assert "does not answer as GitHub's API" in message and "not the token's fault" in message
    assert "GITHUB_TOKEN" not in message and branches(world.remote) == ""
    world.fake.take_protocol_errors()  # the requests to a path it does not serve, on purpose


# ------------------------------------------------------------------ comments and forks


def test_a_persons_comment_quoting_the_marker_and_another_configs_comment_are_left_alone(world: World) -> None:
    fake = world.fake
    world.write_run("one", f1=0.8)
    world.publish()
    quoted = fake.add_comment(1, f"{marker('tiny')}\nwhy does the bot say this?", user="a-person")
    for name in ("tiny", "other"):
        world.write_run(f"{name} again", f1=0.82)
        world.publish(run=world.run(name=name))
    world.write_run("tiny third", f1=0.83)
    world.publish()

    comments = {c["id"]: c for c in fake.comments_on(1)}
    assert comments[quoted["id"]]["body"] == quoted["body"], "a person's comment is never edited"
    ours = [c for c in comments.values() if c["user"]["login"] == fake.login]
    assert sorted(c["body"].splitlines()[0] for c in ours) == [marker("other"), marker("tiny")]
    tiny = next(c for c in ours if c["body"].startswith(marker("tiny")))
    assert "`note` | `tiny third`" in tiny["body"]
    assert len(fake.recorded("POST", "/repos/octo/models/issues/1/comments")) == 2
    listed = fake.recorded("GET", "/repos/octo/models/issues/1/comments")
    assert listed and all(r.query.get("per_page") == "100" for r in listed)


def test_a_fork_head_is_sent_as_owner_branch_and_found_again(world: World, tmp_path: Path) -> None:
    fake = world.fake
    fork_bare = tmp_path / "fork.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(world.remote), str(fork_bare)], check=True)
    fake.add_fork("someone", bare_repo=fork_bare)
    # origin is the user's fork on github.com (git rewrites the URL to the local bare copy).
    fork_url = "https://github.com/someone/models.git"
    git(world.repo, "remote", "set-url", "origin", fork_url)
    git(world.repo, "config", f"url.{fork_bare}.insteadOf", fork_url)
    results = []
    for i in range(2):
        world.write_run(f"fork run {i}", f1=0.8 + i / 100)
        results.append(world.publish())

    assert [r.created_pr for r in results] == [True, False] and list(fake.pulls) == [1]
    created = fake.recorded("POST", "/repos/octo/models/pulls")[0].json
    assert (created["head"], created["head_repo"]) == (f"someone:{OUTPUTS_BRANCH}", "someone/models")
    assert fake.pulls[1]["head"]["label"] == f"someone:{OUTPUTS_BRANCH}"
    assert fake.pulls[1]["head"]["sha"] == results[-1].commit
    assert git(fork_bare, "rev-parse", f"refs/heads/{OUTPUTS_BRANCH}").strip() == results[-1].commit
    assert branches(world.remote) == "", "nothing pushed to upstream"
    lookups = [r.query.get("head") for r in fake.recorded("GET", "/repos/octo/models/pulls")]
    assert lookups and set(lookups) == {f"someone:{OUTPUTS_BRANCH}"}


# ------------------------------------------------------------------ through the CLI: the two workflows


@pytest.fixture
def ci_repo(repo: Path, world_fake: FakeGitHub, tmp_path: Path) -> Path:
    """The tiny repo, a bare origin, on a feature branch, with an F1 gate the run fails."""
    config = on_a_branch_with_origin(repo, world_fake, tmp_path)
    config["github"] = {"publish": "ci", "api_url": world_fake.api_url, "web_url": world_fake.web_url}
    (repo / "tb.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(repo, "commit", "-qam", "ci")
    git(repo, "push", "-q", "origin", "better-f1")
    return repo


@pytest.fixture
def world_fake() -> FakeGitHub:
    with FakeGitHub(token=TOKEN) as fake:
        fake.add_token(ACTIONS_TOKEN, actions=True, read_only=True)
        yield fake


def test_a_fork_pull_request_run_is_read_only_exits_with_the_gate_and_the_publish_half_posts(
        ci_repo: Path, world_fake: FakeGitHub, tmp_path: Path) -> None:
    fake = world_fake
    fake.add_fork("someone")
    head_sha = git(ci_repo, "rev-parse", "HEAD").strip()
    fake.open_pull("someone:better-f1", "main", title="Better F1")
    summary = tmp_path / "summary.md"
    env = {"GITHUB_TOKEN": ACTIONS_TOKEN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_EVENT_PATH": str(pr_event(tmp_path, 1, "someone/models", head_sha)),
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_REPOSITORY": "octo/models"}
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "compare.gates.f1.min=0.99"], cwd=ci_repo, env=env)
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert fake.requests == [], "a fork's run makes no call to GitHub at all"
    said = proc.stdout + proc.stderr
    assert "a pull request from a fork gets a read-only token" in said
    assert "trainboard-publish workflow" in summary.read_text()
    runs = sorted((ci_repo / ".trainboard" / "runs").iterdir())

    # The workflow_run half: the artifact (the runs folder) in a directory; the PR and sha from the event.
    artifact = tmp_path / "artifact"
    subprocess.run(["cp", "-r", str(ci_repo / ".trainboard" / "runs"), str(artifact)], check=True)
    record_path = artifact / runs[-1].name / "record.json"
    record = json.loads(record_path.read_text())
    record["pull_request"] = {"number": 99}  # the artifact lies: ignored
    record_path.write_text(json.dumps(record))
    report = artifact / runs[-1].name / "report.md"
    report.write_text(f"{marker('other')}\n" + report.read_text() + f"\nleaked {ACTIONS_TOKEN}\n")
    fake.tokens[ACTIONS_TOKEN].permissions.update(issues="write", pull_requests="write", statuses="write")
    event = tmp_path / "workflow-run.json"
    event.write_text(json.dumps({"action": "completed", "repository": {"full_name": "octo/models"},
                                 "workflow_run": {"event": "pull_request", "head_sha": head_sha,
                                                  "head_branch": "better-f1", "pull_requests": [],
                                                  "head_repository": {"full_name": "someone/models"}}}))
    publish_env = {"GITHUB_TOKEN": ACTIONS_TOKEN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_run",
                   "GITHUB_EVENT_PATH": str(event), "GITHUB_API_URL": fake.api_url}
    for _ in range(2):
        posted = run_cli(["pr", "--results", str(artifact)], cwd=tmp_path, env=publish_env)
        assert posted.returncode == ExitCode.OK, posted.stdout + posted.stderr
    assert "commit status trainboard/tiny/f1: failure" in posted.stdout
    comments = fake.comments_on(1)
    assert len(comments) == 1 and comments[0]["user"]["login"] == ACTIONS_BOT
    body = comments[0]["body"]
    assert body.startswith(marker("tiny")) and marker("other") not in body
    assert ACTIONS_TOKEN not in body and "leaked ***" in body
    statuses = fake.statuses_for(head_sha)
    assert {(s["context"], s["state"]) for s in statuses} == {("trainboard/tiny/f1", "failure")}
    assert not fake.recorded("POST", "/repos/octo/models/pulls") and 99 not in fake.pulls


def test_which_pull_request_runs_are_read_only(tmp_path: Path) -> None:
    from trainboard.backend.github import read_only_reason

    base = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_TOKEN": ACTIONS_TOKEN}
    fork = str(pr_event(tmp_path, 3, "someone/models"))
    assert "a pull request from a fork gets a read-only token" in read_only_reason({**base, "GITHUB_EVENT_PATH": fork})
    own = str(pr_event(tmp_path, 3, "octo/models"))
    assert read_only_reason({**base, "GITHUB_EVENT_PATH": own}) == ""
    assert "has no GITHUB_TOKEN" in read_only_reason({**base, "GITHUB_EVENT_PATH": own, "GITHUB_TOKEN": ""})
    assert read_only_reason({**base, "GITHUB_EVENT_PATH": fork, "GITHUB_ACTIONS": ""}) == "", "outside Actions"
    assert read_only_reason({**base, "GITHUB_EVENT_PATH": fork, "GITHUB_EVENT_NAME": "workflow_run"}) == ""


def test_in_a_pull_requests_ci_the_status_goes_on_its_head_and_a_missing_statuses_write_is_named(
        world: World, tmp_path: Path) -> None:
    fake = world.fake
    head = git(world.remote, "rev-parse", "refs/heads/main").strip()
    fake.open_pull(SOURCE, "main", title="Better F1")
    env = {**actions_env(), "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_EVENT_PATH": str(pr_event(tmp_path, 1, "octo/models", head))}
    settings = replace(world.settings, repo="")
    fake.add_token(ACTIONS_TOKEN, actions=True, permissions={"statuses": "read", "contents": "read"})
    world.write_run("pr ci", f1=0.9)
    run = world.run(comparison=comparison(0.939), name="trainboard")
    with pytest.raises(PublishError, match=r"trainboard/f1 on .*GITHUB_TOKEN lacks `statuses: write`"):
        world.publish(env=env, settings=settings, run=run)
    fake.tokens[ACTIONS_TOKEN].permissions["statuses"] = "write"
    result = world.publish(env=env, settings=settings, run=run)
    assert result.pr_ci and result.statuses == ("trainboard/f1: success",)
    assert [s["context"] for s in fake.statuses_for(head)] == ["trainboard/f1"]
    assert len(fake.comments_on(1)) == 1 and branches(world.remote) == ""


def test_pr_results_takes_the_pull_request_from_the_event_and_trusts_nothing_in_the_artifact(
        world: World, tmp_path: Path) -> None:
    from trainboard.backend.github_results import publish_results

    fake = world.fake
    fake.add_token(ACTIONS_TOKEN, actions=True)
    head = git(world.remote, "rev-parse", "refs/heads/main").strip()
    decoy = fake.open_pull(SOURCE, "main", title="not this one")
    target = fake.open_pull(SOURCE, "main", title="this one")
    artifact = tmp_path / "artifact"
    run_dir = artifact / "20250101-000000-dead"
    run_dir.mkdir(parents=True)
    (run_dir / "record.json").write_text(json.dumps({
        "run_id": "20250101-000000-dead", "status": "failed", "config": {"name": "tiny"},
        "pull_request": {"number": decoy["number"]}, "comparison": {"rows": [{"key": "f1", "gate": "min 0.9",
                                                                                "digits": 10**9, "after": "x"}]}}))
    outside = tmp_path / "secret.md"
    outside.write_text("outside the artifact\n")
    (run_dir / "report.md").symlink_to(outside)  # a link out of the artifact is never read
    event = tmp_path / "wr.json"
    event.write_text(json.dumps({"repository": {"full_name": "octo/models"}, "workflow_run": {
        "head_sha": head, "head_branch": SOURCE, "head_repository": {"full_name": "octo/models"},
        "pull_requests": [{"number": target["number"], "head": {"sha": head}}]}}))
    env = {"GITHUB_TOKEN": ACTIONS_TOKEN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(event)}
    result = publish_results(artifact, env=env, settings=replace(world.settings, api_url=fake.api_url))
    assert result.pr_number == target["number"] and fake.comments_on(decoy["number"]) == []
    body = fake.comments_on(target["number"])[0]["body"]
    assert "outside the artifact" not in body and "the run left no report" in body
    assert [(s["context"], s["state"]) for s in fake.statuses_for(head)] == [("trainboard/tiny/f1", "error")]
    with pytest.raises(PublishError, match="workflow_run"):
        publish_results(artifact, env={**env, "GITHUB_EVENT_PATH": str(tmp_path / "none.json")},
                        settings=world.settings)
    with pytest.raises(PublishError, match="holds no run folder"):
        publish_results(tmp_path / "empty", env=env, settings=world.settings)


def test_a_signed_commits_rule_refusing_the_push_says_what_to_exempt(world: World) -> None:
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'error: GH013: Repository rule violations found for refs/heads/trainboard.' >&2\n"
                    "echo '- Commits must have verified signatures.' >&2\nexit 1\n")
    hook.chmod(0o755)
    world.write_run("unsigned", f1=0.8)
    with pytest.raises(PublishError, match=r"requires signed commits and trainboard's are unsigned; exempt "
                                           r"trainboard/\*"):
        world.publish()
    assert branches(world.remote) == "" and not world.fake.recorded("POST", "/repos/octo/models/pulls")


def test_a_publish_racing_another_builds_on_its_tip_and_still_fast_forwards(world: World) -> None:
    deny_force_push(world.remote)
    world.write_run("first", f1=0.8)
    first = world.publish().commit
    # Another publish lands between our read of the tip and our push (once): a pre-receive
    # hook moves the branch to a commit of its own on that tip first.
    other = git(world.repo, "commit-tree", f"{first}^{{tree}}", "-p", first, "-m", "another publish").strip()
    git(world.repo, "push", "-q", "origin", f"{other}:refs/heads/side")
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\n[ -e raced ] && exit 0\ntouch raced\n"
                    f"env -u GIT_QUARANTINE_PATH git update-ref refs/heads/{OUTPUTS_BRANCH} refs/heads/side "
                    ">>hook.log 2>&1\nexit 0\n")
    hook.chmod(0o755)
    world.write_run("raced", f1=0.81)
    result = world.publish()
    assert (world.remote / "raced").exists(), "the race happened"
    assert git(world.remote, "rev-parse", f"{result.commit}^@").split() == [other], "built on the new tip"
    assert git(world.remote, "rev-parse", f"refs/heads/{OUTPUTS_BRANCH}").strip() == result.commit
    assert not result.created_pr and world.fake.pulls[1]["head"]["sha"] == result.commit


def test_a_pull_request_run_in_a_clean_clone_fails_on_the_base_branchs_baseline_as_a_failure_status(
        tmp_path: Path, empty_mlflow_db: Path) -> None:
    import shutil

    from tests.conftest import make_tiny_repo

    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = make_tiny_repo(tmp_path / "seed")
    git(seed, "push", "-q", str(remote), "main")

    def clean_clone(name: str) -> Path:  # as CI checks out: its own store, nothing shared but the remote
        dest = tmp_path / name
        git(tmp_path, "clone", "-q", str(remote), str(dest))
        (dest / ".trainboard").mkdir()
        shutil.copy(empty_mlflow_db, dest / ".trainboard" / "mlflow.db")
        return dest

    with FakeGitHub(token=TOKEN, bare_repo=remote) as fake:
        github = f"github.api_url={fake.api_url}"
        a = clean_clone("a")  # the push build on main: records the baseline (F1 0.8), no token
        base = run_cli(["run", "tb.yaml", "--no-tui", "--set", github], cwd=a, env={
            "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF_NAME": "main", "GITHUB_TOKEN": ""})
        assert base.returncode == ExitCode.OK, base.stdout[-2000:] + base.stderr[-2000:]
        assert not fake.pulls and fake.requests == [], "a base-branch run opens no pull request"

        b = clean_clone("b")  # the pull request's build: a regression (F1 0.7)
        git(b, "switch", "-q", "-c", "worse")
        git(b, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "worse")
        git(b, "push", "-q", "origin", "worse")
        head = git(b, "rev-parse", "HEAD").strip()
        fake.open_pull("worse", "main", title="A worse model")
        proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", github, "--set", "params.base_f1=0.5"], cwd=b, env={
            "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_TOKEN": TOKEN,
            "GITHUB_EVENT_PATH": str(pr_event(tmp_path, 1, "octo/models", head)), "GITHUB_HEAD_REF": "worse"})
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no baseline" not in proc.stdout
    statuses = fake.statuses_for(head)
    assert [(s["context"], s["state"]) for s in statuses] == [("trainboard/tiny/f1", "failure")]
    assert statuses[0]["description"].startswith("0.7000 (-0.1000 vs main): fail")
    assert len(fake.comments_on(1)) == 1 and not fake.recorded("POST", "/repos/octo/models/pulls")


def test_an_api_url_serving_a_web_page_is_not_blamed_on_the_token(world: World, tmp_path: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "site"
    (site / "repos" / "octo").mkdir(parents=True)
    (site / "repos" / "octo" / "models").write_text("<html><body>Sign in</body></html>\n")  # 200, not JSON

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        world.write_run("html", f1=0.8)
        settings = replace(world.settings, api_url=f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(PublishError, match=r"does not answer as GitHub's API.*not the token's fault"):
            world.publish(settings=settings)
    finally:
        server.shutdown()
        server.server_close()
    assert branches(world.remote) == ""

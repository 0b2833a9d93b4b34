"""The GitHub stand-in itself: it refuses what GitHub's OpenAPI description refuses, in
requests and in its own answers, and its modelled rules (tokens, the Actions setting,
statuses, forks, authorship, locks, no force push) behave as GitHub's do."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from github import Auth, Github, GithubException

from tests import openapi_support
from tests.conftest import git, make_tiny_repo
from tests.github_fake import (
    ACTIONS_BOT,
    ACTIONS_MAY_NOT_OPEN,
    LOCKED,
    NOT_ACCESSIBLE,
    FakeGitHub,
    deny_force_push,
)
from tests.openapi_support import Contract, github_openapi  # noqa: F401  (the session fixture)

TOKEN = "tb-fake-person-token-1"
ACTIONS = "tb-fake-actions-token-2"
FORK_PR = "tb-fake-fork-pr-token-3"


@pytest.fixture(scope="module")
def remotes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """An upstream bare remote (main, and feature one commit ahead) and a fork's bare
    remote (its own branch 'fix'); and the feature commit's sha."""
    root = tmp_path_factory.mktemp("remotes")
    upstream, fork = root / "upstream.git", root / "fork.git"
    for bare in (upstream, fork):
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = make_tiny_repo(root / "work")
    git(work, "push", "-q", str(upstream), "main")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "job.py").write_text("print('f1=0.9')\n")
    git(work, "commit", "-qam", "feature")
    git(work, "push", "-q", str(upstream), "feature")
    git(work, "push", "-q", str(fork), "feature:fix")
    return upstream, fork, git(work, "rev-parse", "HEAD").strip()


@pytest.fixture
def fake(remotes: tuple[Path, Path, str], github_openapi: Contract) -> Iterator[FakeGitHub]:  # noqa: F811
    with FakeGitHub(token=TOKEN, bare_repo=remotes[0]) as server:
        yield server


def client(fake: FakeGitHub, token: str = TOKEN) -> Github:
    return Github(base_url=fake.api_url, auth=Auth.Token(token), retry=None, seconds_between_requests=0,
                  seconds_between_writes=0)


def send(fake: FakeGitHub, method: str, path: str, body: object = None, token: str = TOKEN,
         **params: str) -> requests.Response:
    data = None if body is None else json.dumps(body)
    return requests.request(method, fake.api_url + path, data=data, params=params, timeout=10,
                            headers={"authorization": f"token {token}", "content-type": "application/json"})


# ---------------------------------------------------------------- the contract


def test_a_pull_request_body_of_the_wrong_type_is_refused_and_recorded(fake: FakeGitHub) -> None:
    answer = send(fake, "POST", "/repos/octo/models/pulls", {"head": "feature", "base": "main", "title": "t",
                                                             "body": 42})
    assert answer.status_code == 422 and "at body: 42 is not of type 'string'" in answer.json()["message"]
    assert not fake.pulls
    errors = fake.take_protocol_errors()
    assert len(errors) == 1 and "POST /repos/octo/models/pulls" in errors[0] and "body" in errors[0]


def test_a_status_with_a_state_github_does_not_know_is_refused(fake: FakeGitHub,
                                                                remotes: tuple[Path, Path, str]) -> None:
    answer = send(fake, "POST", f"/repos/octo/models/statuses/{remotes[2]}", {"state": "passed"})
    assert answer.status_code == 422 and "'passed' is not one of" in answer.json()["message"]
    assert not fake.statuses and len(fake.take_protocol_errors()) == 1


@pytest.mark.parametrize(("method", "path", "body", "params", "expected"), [
    ("POST", "/repos/octo/models/pulls", {"head": "feature", "base": "main", "title": "t", "labels": ["x"]}, {},
     "'labels' was unexpected"),  # a field GitHub does not document (the fake's one strictness)
    ("POST", "/repos/octo/models/pulls", {"base": "main", "title": "t"}, {}, "'head' is a required property"),
    ("GET", "/repos/octo/models/pulls", None, {"per_page": "many"}, "per_page"),
    ("GET", "/repos/octo/models/pulls", None, {"state": "merged"}, "state"),
    ("PATCH", "/repos/octo/models/issues/comments/1000", {"body": None}, {}, "None is not of type 'string'"),
    ("GET", "/repos/octo/models/issues", None, {}, "not an operation the fake serves"),
])
def test_requests_the_description_refuses_are_answered_and_recorded(fake: FakeGitHub, method: str, path: str,
                                                                      body: object, params: dict[str, str],
                                                                      expected: str) -> None:
    answer = send(fake, method, path, body, **params)
    assert answer.status_code in (404, 422)
    errors = fake.take_protocol_errors()
    assert len(errors) == 1 and expected in errors[0], errors


def test_an_invented_or_missing_response_field_is_a_loud_bug_in_the_fake(fake: FakeGitHub) -> None:
    pr = fake.open_pull("feature", "main")
    pr["mergeable_state_v2"] = "clean"  # a field GitHub never sends
    answer = send(fake, "GET", "/repos/octo/models/pulls/1")
    assert answer.status_code == 500 and "mergeable_state_v2" in answer.json()["message"]
    del pr["mergeable_state_v2"], pr["head"]["sha"]  # a field GitHub always sends
    assert send(fake, "GET", "/repos/octo/models/pulls/1").status_code == 500
    errors = fake.take_protocol_errors()
    assert len(errors) == 2 and all("a bug in the fake" in e for e in errors)
    assert "'sha' is a required property" in errors[1]


def test_a_protocol_error_left_unclaimed_fails_the_test_at_teardown(remotes: tuple[Path, Path, str]) -> None:
    server = FakeGitHub(token=TOKEN, bare_repo=remotes[0]).start()
    send(server, "POST", "/repos/octo/models/issues/1/comments", {"body": ["not", "a", "string"]})
    with pytest.raises(AssertionError, match=r"OpenAPI description refuses:\n.*issues/1/comments"):
        server.stop()


def test_pygithub_round_trip_is_clean_and_enterprise_uses_the_ghes_description(
        remotes: tuple[Path, Path, str]) -> None:
    with FakeGitHub(token=TOKEN, bare_repo=remotes[0], prefix="/api/v3") as server:
        assert server.contract is not None and server.contract.variant == openapi_support.ENTERPRISE
        repo = client(server).get_repo("octo/models")
        pr = repo.create_pull(base="main", head="feature", title="t", body="b")
        pr.edit(body="b2")
        comment = pr.create_issue_comment("hello")
        comment.edit("hello again")
        assert [c.body for c in pr.get_issue_comments()] == ["hello again"]
        assert [p.number for p in repo.get_pulls(state="open", head="octo:feature")] == [1]
        assert client(server).get_user().login == "trainboard-bot"
        assert client(server).get_rate_limit().resources.core.limit == 5000
        assert server.protocol_errors == []


def test_a_missing_description_names_the_install_command() -> None:
    with pytest.raises(openapi_support.DescriptionMissing, match="npm install .*@octokit/openapi@"):
        openapi_support.description_path("ghes-0.0")
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert openapi_support.INSTALL in ci, ".ci/run installs the version the tests load"


# ---------------------------------------------------------------- tokens and permissions


def test_a_read_only_fork_token_reads_but_every_write_is_refused(fake: FakeGitHub,
                                                                 remotes: tuple[Path, Path, str]) -> None:
    fake.add_token(FORK_PR, actions=True, read_only=True)
    fake.open_pull("feature", "main")
    repo = client(fake, FORK_PR).get_repo("octo/models")
    pr = repo.get_pull(1)
    assert [p.number for p in repo.get_pulls()] == [1]
    writes = [lambda: pr.create_issue_comment("report"), lambda: pr.edit(body="x"),
              lambda: repo.get_commit(remotes[2]).create_status("success", context="trainboard/f1"),
              lambda: repo.create_pull(base="main", head="feature", title="again")]
    for write in writes:
        with pytest.raises(GithubException) as caught:
            write()
        assert (caught.value.status, caught.value.data["message"]) == (403, NOT_ACCESSIBLE)
    assert not fake.comments and not fake.statuses and len(fake.pulls) == 1
    assert repo.raw_data["permissions"] == {"admin": False, "maintain": False, "push": False, "triage": False,
                                            "pull": True}
    assert client(fake).get_repo("octo/models").raw_data["permissions"]["push"] is True
    refused = send(fake, "POST", "/repos/octo/models/issues/1/comments", {"body": "x"}, token=FORK_PR)
    assert refused.headers["x-accepted-github-permissions"] == "issues=write; pull_requests=write"


def test_an_actions_token_may_not_open_a_pull_request_while_the_setting_is_off(fake: FakeGitHub) -> None:
    fake.add_token(ACTIONS, actions=True)
    repo = client(fake, ACTIONS).get_repo("octo/models")
    with pytest.raises(GithubException) as caught:
        repo.create_pull(base="main", head="feature", title="t")
    assert (caught.value.status, caught.value.data["message"]) == (403, ACTIONS_MAY_NOT_OPEN)
    fake.allow_actions_pull_requests = True
    pr = repo.create_pull(base="main", head="feature", title="t")
    assert (pr.user.login, pr.user.type) == (ACTIONS_BOT, "Bot")
    assert pr.create_issue_comment("report").user.login == ACTIONS_BOT
    with pytest.raises(GithubException) as caught:  # an installation token has no user
        client(fake, ACTIONS).get_user().login  # noqa: B018
    assert (caught.value.status, caught.value.data["message"]) == (403, NOT_ACCESSIBLE)


def test_a_token_without_pull_requests_write_can_comment_but_not_open(fake: FakeGitHub) -> None:
    fake.add_token(ACTIONS, actions=True, permissions={"pull_requests": "read"})
    fake.allow_actions_pull_requests = True
    fake.open_pull("feature", "main")
    repo = client(fake, ACTIONS).get_repo("octo/models")
    with pytest.raises(GithubException, match=NOT_ACCESSIBLE):
        repo.create_pull(base="main", head="feature", title="t")
    assert repo.get_pull(1).create_issue_comment("report").user.login == ACTIONS_BOT


def test_comments_carry_their_authors(fake: FakeGitHub) -> None:
    fake.add_token("tb-fake-other-person-4", login="reviewer")
    pr_number = fake.open_pull("feature", "main")["number"]
    fake.add_comment(pr_number, "<!-- trainboard-report --> quoted by a person", user="someone")
    client(fake).get_repo("octo/models").get_pull(pr_number).create_issue_comment("<!-- trainboard-report -->")
    client(fake, "tb-fake-other-person-4").get_repo("octo/models").get_pull(pr_number).create_issue_comment("lgtm")
    listed = client(fake).get_repo("octo/models").get_pull(pr_number).get_issue_comments()
    assert [(c.user.login, c.body[:10]) for c in listed] == [
        ("someone", "<!-- train"), ("trainboard-bot", "<!-- train"), ("reviewer", "lgtm")]
    assert client(fake).get_user().login == "trainboard-bot"  # the token's identity is its comments' author


def test_a_locked_conversation_refuses_an_actions_tokens_comment(fake: FakeGitHub) -> None:
    fake.add_token(ACTIONS, actions=True)
    fake.open_pull("feature", "main")
    assert send(fake, "PUT", "/repos/octo/models/issues/1/lock", {"lock_reason": "too heated"}).status_code == 204
    assert fake.pulls[1]["locked"] and fake.pulls[1]["active_lock_reason"] == "too heated"
    with pytest.raises(GithubException) as caught:
        client(fake, ACTIONS).get_repo("octo/models").get_pull(1).create_issue_comment("report")
    assert (caught.value.status, caught.value.data["message"]) == (403, LOCKED)
    client(fake).get_repo("octo/models").get_pull(1).create_issue_comment("a maintainer may")  # push access
    assert [c["body"] for c in fake.comments_on(1)] == ["a maintainer may"]
    assert send(fake, "PUT", "/repos/octo/models/issues/1/lock", {"lock_reason": "angry"}).status_code == 422
    assert len(fake.take_protocol_errors()) == 1


# ---------------------------------------------------------------- statuses, forks, branch rules


def test_statuses_are_stored_per_sha_listed_newest_first_and_combined(fake: FakeGitHub,
                                                                       remotes: tuple[Path, Path, str]) -> None:
    sha = remotes[2]
    commit = client(fake).get_repo("octo/models").get_commit(sha)
    commit.create_status("pending", context="trainboard/f1")
    commit.create_status("failure", description="f1 0.81 (-0.03 vs main): fail", context="trainboard/f1")
    commit.create_status("success", context="lint", target_url="http://ci.example/1")
    listed = send(fake, "GET", f"/repos/octo/models/commits/{sha}/statuses", per_page="100").json()
    assert [s["state"] for s in listed] == ["success", "failure", "pending"]
    # PyGithub's Commit.get_statuses() calls GET /repos/{o}/{r}/statuses/{sha}, which the
    # description does not document (only POST is there): the stand-in refuses it.
    with pytest.raises(GithubException):
        list(commit.get_statuses())
    assert "not an operation the fake serves" in fake.take_protocol_errors()[0]
    combined = commit.get_combined_status()
    assert (combined.state, combined.total_count) == ("failure", 2)
    assert {s.context: s.state for s in combined.statuses} == {"trainboard/f1": "failure", "lint": "success"}
    assert [s["creator"]["login"] for s in fake.statuses_for(sha)] == ["trainboard-bot"] * 3
    by_branch = client(fake).get_repo("octo/models").get_commit("feature").get_combined_status()
    assert by_branch.sha == sha and by_branch.state == "failure"


def test_a_fork_head_is_owner_colon_branch_and_is_found_by_it(fake: FakeGitHub,
                                                              remotes: tuple[Path, Path, str]) -> None:
    assert fake.add_fork("contributor", bare_repo=remotes[1]) == "contributor/models"
    repo = client(fake).get_repo("octo/models")
    with pytest.raises(GithubException) as caught:  # a bare head is a branch of upstream: 'fix' is not one
        repo.create_pull(base="main", head="fix", title="t")
    assert caught.value.status == 422 and caught.value.data["errors"][0]["field"] == "head"
    pr = repo.create_pull(base="main", head="contributor:fix", title="t")
    assert (pr.head.label, pr.head.ref, pr.head.repo.full_name, pr.head.user.login) == (
        "contributor:fix", "fix", "contributor/models", "contributor")
    assert pr.head.repo.fork and pr.base.repo.full_name == "octo/models"
    assert [p.number for p in repo.get_pulls(head="contributor:fix")] == [pr.number]
    assert list(repo.get_pulls(head="octo:fix")) == []
    fork = client(fake).get_repo("contributor/models")
    assert fork.fork and fork.parent.full_name == "octo/models"
    with pytest.raises(GithubException, match="already exists"):
        repo.create_pull(base="main", head="contributor:fix", title="t")


def test_deny_force_push_refuses_a_non_fast_forward(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    deny_force_push(bare)
    work = make_tiny_repo(tmp_path / "work")
    git(work, "push", "-q", str(bare), "main")
    git(work, "commit", "-q", "--amend", "-m", "rewritten")
    refused = subprocess.run(["git", "push", "-f", str(bare), "main"], cwd=work, capture_output=True, text=True)
    assert refused.returncode != 0 and "non-fast-forward" in refused.stderr
    git(work, "reset", "-q", "--hard", "HEAD@{1}")
    git(work, "commit", "-q", "--allow-empty", "-m", "on top")
    git(work, "push", "-q", str(bare), "main")  # a fast-forward is fine

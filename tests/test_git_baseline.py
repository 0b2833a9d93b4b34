"""The baseline lives with the repository: git notes under refs/notes/trainboard.

Real git only: a bare remote and clean clones of it, nothing else shared (each clone its
own .trainboard/ and MLflow store), no GITHUB_TOKEN, ``GITHUB_ACTIONS=true``. A push build
on main in one clone records its result and pushes the note; a pull request's build in
another clone finds it and fails its gate on a regression.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import git, make_tiny_repo, run_acting_at, run_cli
from test_tracking_faults import TrackingServer

from trainboard.backend import gitbaseline as gb
from trainboard.backend.config import load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.publish import base_branch_blocker
from trainboard.backend.session import Session
from trainboard.backend.tracking import BRANCH_TAG, COMMIT_TAG, RUN_TAG

# The module fixture's runs build on one another: the tests that use it stay on one pytest-xdist worker.
on_history = pytest.mark.xdist_group("git_baseline")

NOTES = "refs/notes/trainboard"
IDENTITY = gb.ConfigIdentity(path="tb.yaml", name="tiny", experiment="tiny")


def ci_env(tmp: Path, branch: str, pull_request: bool = False) -> dict[str, str]:
    """What GitHub Actions sets, as a push build (on ``branch``) or a pull request's build has it."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REF_NAME": "7/merge" if pull_request else branch,
        "GITHUB_HEAD_REF": branch if pull_request else "",
        "GITHUB_STEP_SUMMARY": str(tmp / f"summary-{branch}.md"),
        "GITHUB_TOKEN": "",
    }


def clone(remote: Path, dest: Path, mlflow_db: Path, branch: str = "") -> Path:
    """A clean clone, as CI checks out (all history), with its own empty MLflow store."""
    git(remote.parent, "clone", "-q", str(remote), str(dest))
    git(dest, "config", "user.email", "ci@example.com")
    git(dest, "config", "user.name", "CI")
    if branch:
        git(dest, "switch", "-q", "-c", branch)
    (dest / ".trainboard").mkdir()
    shutil.copy(mlflow_db, dest / ".trainboard" / "mlflow.db")
    return dest


def note(repo: Path, commit: str) -> dict:
    return json.loads(git(repo, "notes", "--ref", NOTES, "show", commit))


def remote_note(remote: Path, commit: str) -> dict:
    return json.loads(git(remote, "--git-dir", str(remote), "notes", "--ref", NOTES, "show", commit))


def commit_config(repo: Path, old: str, new: str, message: str) -> str:
    path = repo / "tb.yaml"
    path.write_text(path.read_text().replace(old, new))
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD").strip()


@dataclass
class History:
    remote: Path
    base: Path  # clone A, on main: the push builds
    first: str  # main's first commit: a push build recorded F1 0.8 on it
    second: str  # main's next commit: a push build recorded F1 1.0 on it
    runs: dict[str, object]  # the CLI runs, by name


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path) -> History:
    """A bare remote; in clone A, two push builds on main (two commits), each noted and pushed."""
    tmp = tmp_path_factory.mktemp("gitbaseline")
    remote = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = make_tiny_repo(tmp / "seed")
    (seed / "tb.yaml").write_text((seed / "tb.yaml").read_text() + "github:\n  publish: never\n")
    shutil.copy(seed / "tb.yaml", seed / "tb2.yaml")  # a second config on the same commits
    (seed / "tb2.yaml").write_text((seed / "tb2.yaml").read_text().replace("name: tiny", "name: tiny-two"))
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "github.publish: never; a second config")
    git(seed, "push", "-q", str(remote), "main")
    a = clone(remote, tmp / "a", empty_mlflow_db)
    first = git(a, "rev-parse", "HEAD").strip()
    runs: dict[str, object] = {}
    runs["first"] = run_cli(["run", "tb.yaml", "--no-tui"], cwd=a, env=ci_env(tmp, "main"))
    runs["two"] = run_cli(["run", "tb2.yaml", "--no-tui", "--set", "params.base_f1=0.5"], cwd=a,
                          env=ci_env(tmp, "main"))
    second = commit_config(a, "base_f1: 0.6", "base_f1: 0.8", "a better model")
    git(a, "push", "-q", "origin", "main")
    runs["second"] = run_cli(["run", "tb.yaml", "--no-tui"], cwd=a, env=ci_env(tmp, "main"))
    return History(remote, a, first, second, runs)


@on_history
def test_a_push_build_on_main_records_its_result_in_git_notes_and_pushes_them(history: History) -> None:
    first = history.runs["first"]
    assert first.returncode == ExitCode.OK, first.stdout + first.stderr
    assert "no baseline" in first.stdout or "none yet" in first.stdout  # the first run on main has none
    assert f"baseline recorded in {NOTES} on {history.first[:7]}, pushed to 'origin'" in first.stdout
    entry = remote_note(history.remote, history.first)["entries"]["tb.yaml::tiny::tiny"]
    assert entry["schema"] == gb.SCHEMA and entry["branch"] == "main" and entry["commit"] == history.first
    assert entry["metrics"] == {"f1": pytest.approx(0.8), "loss": pytest.approx(0.5)}
    assert entry["params"]["base_f1"] == "0.6" and entry["status"] == "succeeded"
    assert entry["mlflow_run_id"] and entry["trainboard_run_id"]
    assert entry["config"] == {"path": "tb.yaml", "name": "tiny", "experiment": "tiny"}
    # Plumbing only: the clone's branch, index and working tree are as they were.
    assert git(history.base, "status", "--porcelain") == ""
    assert git(history.base, "symbolic-ref", "--short", "HEAD").strip() == "main"
    # A run on the base branch opens no pull request into it: said, and nothing else happens.
    assert "no pull request" not in first.stdout  # github.publish: never


@on_history
def test_two_configs_on_one_commit_sit_side_by_side_in_its_note(history: History) -> None:
    assert history.runs["two"].returncode == ExitCode.GATE_FAILED  # F1 0.7 against 0.8: recorded all the same
    entries = remote_note(history.remote, history.first)["entries"]
    assert set(entries) == {"tb.yaml::tiny::tiny", "tb2.yaml::tiny-two::tiny"}
    assert entries["tb.yaml::tiny::tiny"]["metrics"]["f1"] == pytest.approx(0.8)
    assert entries["tb2.yaml::tiny-two::tiny"]["metrics"]["f1"] == pytest.approx(0.7)
    assert entries["tb2.yaml::tiny-two::tiny"]["status"] == "gate-failed"
    assert entries["tb2.yaml::tiny-two::tiny"]["overrides"] == ["params.base_f1=0.5"]


@on_history
def test_a_pull_request_in_a_clean_clone_finds_the_merge_base_entry_and_fails_its_gate(
        history: History, tmp_path: Path, empty_mlflow_db: Path) -> None:
    second = history.runs["second"]
    assert second.returncode == ExitCode.OK
    # Where the local MLflow store has a run of main, it stays the baseline (nothing changes locally).
    assert "baseline: main run " in second.stdout and "from git notes" not in second.stdout
    # Branched off main's first commit; main has moved on to a better model since.
    b = clone(history.remote, tmp_path / "b", empty_mlflow_db)
    git(b, "switch", "-q", "-c", "worse", history.first)
    commit_config(b, "base_f1: 0.6", "base_f1: 0.2", "a regression")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=b, env=ci_env(tmp_path, "worse", pull_request=True))
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stdout + proc.stderr
    assert f"baseline: main @ {history.first[:7]} (merge base, from git notes; run " in proc.stdout
    assert "no baseline" not in proc.stdout and "none yet" not in proc.stdout
    assert "::error title=trainboard%3A gate::FAIL: gate failed for F1" in proc.stdout
    record = json.loads(next((b / ".trainboard" / "runs").iterdir()).joinpath("record.json").read_text())
    assert record["mlflow"]["baseline_source"] == "merge base, from git notes"
    f1 = next(row for row in record["comparison"]["rows"] if row["key"] == "f1")
    assert (f1["before"], f1["after"]) == (pytest.approx(0.8), pytest.approx(0.4))  # not main's newer 1.0
    assert record["comparison"]["baseline_label"].startswith(f"main @ {history.first[:7]} (merge base, from git")
    # A run off the base branch records nothing.
    assert "baseline recorded" not in proc.stdout and not gb.has_notes(b)


@on_history
def test_without_an_entry_at_the_merge_base_the_newest_on_main_is_used(
        history: History, tmp_path: Path, empty_mlflow_db: Path) -> None:
    # main moves on without a build; a branch off it has no entry at its merge base.
    seed = clone(history.remote, tmp_path / "seed", empty_mlflow_db)
    (seed / "README").write_text("docs\n")
    git(seed, "add", "README")
    git(seed, "commit", "-q", "-m", "docs")
    git(seed, "push", "-q", "origin", "main")
    c = clone(history.remote, tmp_path / "c", empty_mlflow_db, branch="feature")
    found, problem = gb.lookup(c, "main", IDENTITY, "origin", ["f1"])
    assert problem == "" and found is not None
    assert (found.how, found.baseline.commit) == ("newest on main", history.second)
    assert found.baseline.metrics["f1"] == pytest.approx(1.0)
    assert found.baseline.label("main").startswith(f"main @ {history.second[:7]} (newest on main, from git notes")
    # A CI checkout without the local branch walks the remote's.
    git(c, "branch", "-q", "-D", "main")
    found, _ = gb.lookup(c, "main", IDENTITY, "origin", ["f1"])
    assert found is not None and (found.how, found.baseline.commit) == ("newest on origin/main", history.second)
    # The merge base wins over a newer entry on main.
    git(c, "switch", "-q", "-c", "older", history.first)
    found, _ = gb.lookup(c, "main", IDENTITY, "origin", ["f1"])
    assert found is not None and (found.how, found.baseline.commit) == ("merge base", history.first)
    # Another config's entry is not this one's.
    other = gb.ConfigIdentity(path="tb2.yaml", name="tiny-two", experiment="tiny")
    found, _ = gb.lookup(c, "main", other, "origin", ["f1"])
    assert found is not None and found.baseline.metrics["f1"] == pytest.approx(0.7)
    assert gb.lookup(c, "main", gb.ConfigIdentity("x.yaml", "x", "x"), "origin")[0] is None
    # Offline: the fetch fails, said; the notes fetched before still serve.
    git(c, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    found, problem = gb.lookup(c, "main", IDENTITY, "origin", ["f1"])
    assert found is not None and found.baseline.commit == history.first and "gone.git" in problem


@on_history
def test_concurrent_pushes_of_notes_on_different_commits_both_land(
        history: History, tmp_path: Path, empty_mlflow_db: Path) -> None:
    clones = [clone(history.remote, tmp_path / name, empty_mlflow_db) for name in ("p", "q")]
    commits = []
    for repo in clones:  # each on a commit of its own, pushed to main's history... as a branch of its own
        (repo / f"{repo.name}.txt").write_text(repo.name)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", repo.name)
        git(repo, "push", "-q", "origin", f"HEAD:refs/heads/{repo.name}")
        commits.append(git(repo, "rev-parse", "HEAD").strip())
    results: dict[str, gb.Recorded] = {}
    start = threading.Barrier(2)

    def entry(commit: str, run: str, identity: gb.ConfigIdentity = IDENTITY) -> dict:
        return gb.make_entry(identity, branch="main", commit=commit, status="succeeded", verdict="ok",
                             metrics={"f1": 0.5}, params={}, mlflow_run_id="m", trainboard_run_id=run)

    def push(repo: Path, commit: str) -> None:
        start.wait()
        results[repo.name] = gb.record(repo, entry(commit, repo.name), "origin")

    threads = [threading.Thread(target=push, args=(r, c)) for r, c in zip(clones, commits, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {name: r.pushed_to for name, r in results.items()} == {"p": "origin", "q": "origin"}, results
    for repo, commit in zip(clones, commits, strict=True):
        assert remote_note(history.remote, commit)["entries"]["tb.yaml::tiny::tiny"]["trainboard_run_id"] == repo.name
    # Nothing recorded before was lost on the way.
    assert remote_note(history.remote, history.first)["entries"]["tb.yaml::tiny::tiny"]["metrics"]["f1"] == \
        pytest.approx(0.8)
    assert remote_note(history.remote, history.second)["entries"]["tb.yaml::tiny::tiny"]["metrics"]["f1"] == \
        pytest.approx(1.0)

    # Notes that diverged (one written while offline, one pushed meanwhile) merge, entry by entry.
    p, q = clones
    assert gb.record(q, entry(commits[1], "q-offline"), "").pushed_to == ""
    assert gb.record(p, entry(commits[0], "p-again"), "origin").pushed_to == "origin"
    two = gb.ConfigIdentity("tb2.yaml", "tiny-two", "tiny")
    assert gb.record(q, entry(commits[1], "q-two", two), "origin").pushed_to == "origin"
    assert {k: v["trainboard_run_id"] for k, v in remote_note(history.remote, commits[1])["entries"].items()} == \
        {IDENTITY.key: "q-offline", two.key: "q-two"}
    assert remote_note(history.remote, commits[0])["entries"][IDENTITY.key]["trainboard_run_id"] == "p-again"
    tip = git(history.remote, "--git-dir", str(history.remote), "rev-parse", f"{NOTES}^@").split()
    assert len(tip) == 2  # a merge of q's notes and the remote's


def test_without_a_remote_the_note_stays_local_and_a_base_branch_run_opens_no_pull_request(repo: Path,
                                                                                       tmp_path: Path) -> None:
    # github.publish: always with no token stops a branch's run before anything starts (exit 2);
    # on the base branch the run records the baseline and opens no pull request.
    env = ci_env(tmp_path, "main")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "github.publish=always"], cwd=repo, env=env)
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    assert "no pull request for this run: the run is on the base branch 'main'" in proc.stdout
    head = git(repo, "rev-parse", "HEAD").strip()
    assert note(repo, head)["entries"]["tb.yaml::tiny::tiny"]["metrics"]["f1"] == pytest.approx(0.8)
    said = f"baseline recorded in {NOTES} on {head[:7]} in this repository only: no git remote 'origin'"
    assert said in proc.stdout
    again = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo, env=env)
    assert again.returncode == ExitCode.OK and "baseline recorded" not in again.stdout  # said once
    assert git(repo, "status", "--porcelain") == ""


def test_a_base_branch_run_is_a_push_build_or_a_person_never_a_pull_request_named_like_the_base(
        tiny_repo: Path) -> None:
    config = load_config(tiny_repo / "tb.yaml").config
    push = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"}
    assert "base branch 'main'" in base_branch_blocker(config, "main", push)
    assert "base branch 'main'" in base_branch_blocker(config, "main", {})  # a person, on their machine
    assert base_branch_blocker(config, "feature", push) == ""
    # A fork's pull request from its own main: a pull request's run, which records nothing.
    for event in ("pull_request", "pull_request_target"):
        assert base_branch_blocker(config, "main", {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event}) == ""


@on_history
def test_a_shared_mlflow_server_with_a_run_of_main_stays_the_source(history: History, tmp_path: Path,
                                                                    empty_mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    shutil.copy(empty_mlflow_db, tmp_path / "shared.db")
    server = TrackingServer(tmp_path / "shared.db", tmp_path / "artifacts", tmp_path / "server.log")
    server.start()
    try:
        client = MlflowClient(server.url)
        shared = client.create_run(client.create_experiment("tiny"),
                                   tags={BRANCH_TAG: "main", COMMIT_TAG: history.first, RUN_TAG: "shared"})
        client.log_metric(shared.info.run_id, "f1", 0.3)
        client.set_terminated(shared.info.run_id)
        b = clone(history.remote, tmp_path / "b", empty_mlflow_db)
        git(b, "switch", "-q", "-c", "worse", history.first)
        commit_config(b, "base_f1: 0.6", "base_f1: 0.2", "a regression")  # F1 0.4: worse than main's note (0.8)
        proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", f"mlflow.tracking_uri={server.url}"], cwd=b,
                       env=ci_env(tmp_path, "worse", pull_request=True))
    finally:
        server.kill()
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr  # better than the server's 0.3
    assert f"baseline: main run {shared.info.run_id}" in proc.stdout and "git notes" not in proc.stdout


@on_history
async def test_attach_finds_the_git_notes_baseline_as_the_run_did(history: History, tmp_path: Path,
                                                                  empty_mlflow_db: Path) -> None:
    b = clone(history.remote, tmp_path / "b", empty_mlflow_db)
    git(b, "switch", "-q", "-c", "later", history.first)
    session = Session(load_config(b / "tb.yaml", ["params.sleep=1.5", "params.epochs=3", "params.base_f1=0.2"]),
                      root=b)
    outcome, detached = await run_acting_at(session, "epoch 1", session.detach)
    assert detached == [True] and outcome is ExitCode.DETACHED
    proc = run_cli(["attach", session.run_id, "--no-tui"], cwd=b)
    assert proc.returncode == ExitCode.GATE_FAILED, proc.stdout + proc.stderr  # F1 0.5 against 0.8
    assert f"baseline: main @ {history.first[:7]} (merge base, from git notes; run " in proc.stdout


def test_a_remote_that_refuses_the_notes_is_a_notice_never_a_failed_run(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "refusing.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'notes are not welcome here' >&2\nexit 1\n")
    hook.chmod(0o755)
    git(repo, "remote", "add", "origin", str(remote))
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo, env=ci_env(tmp_path, "main"))
    assert proc.returncode == ExitCode.OK, proc.stdout + proc.stderr
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (f"baseline recorded in {NOTES} on {head[:7]} here only: pushing {NOTES} to 'origin' failed: "
            "[remote rejected] (pre-receive hook declined); the remote says: notes are not welcome here") in proc.stdout
    assert "::error" not in proc.stdout
    assert note(repo, head)["entries"][IDENTITY.key]["commit"] == head  # kept here, for the next push

"""DVC: metrics files, outputs pushed from a git-less workspace, the base branch's metrics.

Real DVC (the venv's `dvc`), real git, real S3 through moto's server. The commands
run as the local runner runs a job: LocalRunner syncs the tracked files into a
workspace without .git and runs them through its bash wrapper. Its workspace lies
inside the user's repository (under the git-ignored .trainboard/), as in a real run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import aws_support
from tests.conftest import ROOT, git
from trainboard.backend import dvc
from trainboard.backend.runners import JobSpec
from trainboard.backend.runners.local import LocalRunner

moto_server = aws_support.moto_server  # fixture

EXAMPLE = ROOT / "examples" / "dvc"
OUTPUTS = ["model/", "artifacts"]  # as a user writes them: model is a stage output, artifacts is not


@pytest.fixture(autouse=True)
def dvc_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DVC's own state (site cache, global and system config) apart from the machine's and other tests'."""
    for name, value in dvc.DVC_ENV.items():
        monkeypatch.setenv(name, value)
    for name, sub in (("DVC_SITE_CACHE_DIR", "site"), ("DVC_GLOBAL_CONFIG_DIR", "global"),
                      ("DVC_SYSTEM_CONFIG_DIR", "system")):
        monkeypatch.setenv(name, str(tmp_path / "dvc-state" / sub))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def run(cwd: Path, *args: str) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def make_repo(path: Path, *, dvc_dir: bool) -> Path:
    """A git repository on main with the example pipeline; with ``dvc_dir``, `dvc init` committed too."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    for name in ("dvc.yaml", "train.py"):
        shutil.copy(EXAMPLE / name, path / name)
    (path / ".gitignore").write_text(".trainboard/\n")
    if dvc_dir:
        run(path, "dvc", "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "pipeline")
    return path


async def run_job(runner: LocalRunner, name: str, commands: list[str], workdir: str = ".",
                  env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``commands`` as the session would, through the runner's detached bash wrapper."""
    spec = JobSpec(name=name, commands=tuple(commands), workdir=workdir, env={**dvc.DVC_ENV, **(env or {})})
    handle = await runner.start(spec)
    for _ in range(1200):
        status = await runner.status(handle)
        if not status.running:
            break
        await asyncio.sleep(0.05)
    log = Path(handle.log_path).read_text()
    assert status.exit_code is not None, log
    return status.exit_code, log


async def workspace_for(repo: Path) -> LocalRunner:
    """A local runner whose workspace holds what the session syncs (git's files, no .git)."""
    files = run(repo, "git", "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    runner = LocalRunner(repo / ".trainboard" / "runs" / "r1")
    await runner.provision()
    await runner.sync(repo, files, {})
    assert not (runner.workspace / ".git").exists()
    return runner


async def bring_back(runner: LocalRunner, files: list[str], dest: Path) -> list[str]:
    got = []
    for rel in files:
        if await runner.fetch(rel, dest / rel):
            got.append(rel)
    return got


def fresh_clone(repo: Path, dest: Path) -> Path:
    run(repo.parent, "git", "clone", "-q", str(repo), str(dest))
    return dest


# --------------------------------------------------------------------------- dvc.yaml and metrics files


def test_dvc_yaml_metrics_outs_and_wdir(tmp_path: Path) -> None:
    yaml_text = """
metrics: [summary.json]
stages:
  prepare:
    cmd: python prep.py
    outs: [data/clean, {data/stats.json: {cache: false}}]
  train:
    cmd: python train.py
    wdir: ../train
    outs:
      - model.pt
    metrics:
      - scores.yaml:
          cache: false
      - eval/cached.json
    plots: [plots/roc.csv]
  sweep:
    foreach: [1, 2]
    do: {cmd: "echo ${item}", outs: ["out${item}"]}
  templated:
    cmd: echo
    metrics: ["${name}.json"]
"""
    metrics, outs = dvc.parse_dvc_yaml(yaml_text, "pipe/dvc.yaml")
    assert metrics == ["pipe/summary.json", "train/scores.yaml", "train/eval/cached.json"]
    assert outs == ["pipe/data/clean", "train/model.pt", "train/eval/cached.json", "train/plots/roc.csv"]

    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "dvc.yaml").write_text("stages:\n  a:\n    cmd: x\n    metrics: [{m.json: {cache: false}}]\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "dvc.yaml").write_text("metrics: [top.toml]\nstages: {b: {cmd: y, outs: [o]}}\n")
    (repo / ".trainboard").mkdir()
    (repo / ".trainboard" / "dvc.yaml").write_text("stages: {}\n")
    (repo / ".gitignore").write_text(".trainboard/\n")
    project = dvc.scan_project(repo)
    assert project.dvc_yamls == ("dvc.yaml", "sub/dvc.yaml")
    assert project.lock_files == ("dvc.lock", "sub/dvc.lock")
    assert project.metrics_files == ("m.json", "sub/top.toml")
    assert project.stage_outs == ("sub/o",)
    assert dvc.dvc_metrics_files(repo) == ["m.json", "sub/top.toml"]
    assert not project.has_dvc_dir
    (repo / "dvc.yaml").write_text("- not: a mapping\n")
    with pytest.raises(dvc.DvcError, match="dvc.yaml"):
        dvc.scan_project(repo)


def test_read_metrics_flattens_like_dvc(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps(
        {"f1": 0.9, "eval": {"loss": 0.25, "per_class": {"a": 1}}, "name": "x", "ok": True, "hist": [1, 2]}))
    assert dvc.read_metrics(tmp_path / "m.json") == {"f1": 0.9, "eval.loss": 0.25, "eval.per_class.a": 1.0}
    (tmp_path / "m.yaml").write_text("f1: 0.5\neval:\n  loss: 3\n")
    assert dvc.read_metrics(tmp_path / "m.yaml") == {"f1": 0.5, "eval.loss": 3.0}
    (tmp_path / "m.toml").write_text("f1 = 0.75\n[eval]\nloss = 0.5\n")
    assert dvc.read_metrics(tmp_path / "m.toml") == {"f1": 0.75, "eval.loss": 0.5}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(dvc.DvcError, match="bad.json"):
        dvc.read_metrics(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(dvc.DvcError, match="mapping"):
        dvc.read_metrics(tmp_path / "list.yaml")
    with pytest.raises(dvc.DvcError, match="missing.json"):
        dvc.read_metrics(tmp_path / "missing.json")
    merged, problems = dvc.collect_metrics(tmp_path, ["m.json", "m.yaml", "missing.json"])
    assert merged == {"f1": 0.9, "eval.loss": 0.25, "eval.per_class.a": 1.0}  # the first file wins
    assert len(problems) == 1 and "missing.json" in problems[0]


def test_paths_remotes_and_return_files(tmp_path: Path) -> None:
    assert dvc.normalize_path("model/") == "model"
    assert dvc.normalize_path("./a//b/") == "a/b"
    for bad in ("", "/abs", "..", "../x", "a/../../x", ".", ".dvc/cache", ".git"):
        with pytest.raises(dvc.DvcError):
            dvc.normalize_path(bad)
    assert dvc.check_remote("s3://bucket/prefix") == "s3://bucket/prefix"
    assert dvc.check_remote("/srv/dvc storage") == "/srv/dvc storage"
    with pytest.raises(dvc.DvcError, match="absolute"):
        dvc.check_remote("relative/dir")
    assert dvc.default_remote(tmp_path) == str(tmp_path.resolve() / ".trainboard" / "dvc-storage")
    assert dvc.is_local_remote("/x") and not dvc.is_local_remote("s3://b")
    assert dvc.aws_env({"AWS_ACCESS_KEY_ID": "k", "AWS_REGION": "", "HOME": "/root"}) == {"AWS_ACCESS_KEY_ID": "k"}

    assert dvc.added_outputs(["model/", "artifacts", "model/sub", "artifacts/"], ["model"]) == ["artifacts"]
    assert dvc.dvc_return_files(OUTPUTS, True, ["metrics.json"], stage_outs=["model"]) == [
        "artifacts.dvc", "dvc.lock", "metrics.json"]
    assert dvc.dvc_return_files(["model"], False, []) == ["model.dvc"]
    assert dvc.dvc_return_files([], ["dvc.yaml", "sub/dvc.yaml"], ["sub/m.json"]) == [
        "dvc.lock", "sub/dvc.lock", "sub/m.json"]
    assert dvc.dvc_output_commands([], "/srv/x") == []


def test_commands_quote_every_value() -> None:
    outputs = ["we ird/out's $(touch PWNED)", "-dash", "a;b"]
    url = "/srv/st'o re/$(touch PWNED)"
    commands = dvc.dvc_output_commands(outputs, url, workdir="src/app", prepare=False)
    assert all(c.startswith("cd -- ../.. && dvc ") for c in commands)
    add = shlex.split(commands[-2].split("&& ", 1)[1])
    assert add == ["dvc", "add", "-q", "--", "we ird/out's $(touch PWNED)", "-dash", "a;b"]
    push = shlex.split(commands[-1].split("&& ", 1)[1])
    assert push == ["dvc", "push", "-r", "trainboard", "--", "./we ird/out's $(touch PWNED)", "./-dash", "./a;b"]
    remote = shlex.split(commands[0].split("&& ", 1)[1])
    assert remote == ["dvc", "remote", "add", "--local", "-f", "trainboard", url]
    s3 = dvc.dvc_output_commands(["m"], "s3://b/p", endpoint_url="http://h:1/'x'", prepare=False)
    assert shlex.split(s3[1])[-1] == "http://h:1/'x'"
    from_env = dvc.dvc_output_commands(["m"], "s3://b/p", prepare=False)[1]
    assert '"$AWS_ENDPOINT_URL"' in from_env


# --------------------------------------------------------------------------- the runner: repro, push, pull


async def test_repro_in_gitless_workspace_push_local_pull_in_fresh_clone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", dvc_dir=True)
    project = dvc.scan_project(repo)
    assert project.metrics_files == ("metrics.json",) and project.stage_outs == ("model",)
    remote = dvc.default_remote(repo)
    runner = await workspace_for(repo)
    ws = runner.workspace

    code, log = await run_job(runner, "setup", dvc.dvc_prepare_commands())
    assert code == 0, log
    code, log = await run_job(runner, "job", ["dvc repro"])
    assert code == 0, log
    assert dvc.read_metrics(ws / "metrics.json").keys() == {"f1", "eval.loss"}
    commands = dvc.dvc_output_commands(OUTPUTS, remote, stage_outs=project.stage_outs, prepare=False)
    code, log = await run_job(runner, "dvc", commands)
    assert code == 0, log
    assert "dvc init" not in "\n".join(commands)
    assert (ws / ".dvc" / "config").read_text() == (repo / ".dvc" / "config").read_text()  # untouched
    assert (ws / ".gitignore").read_text() == ".trainboard/\n"  # without git, DVC writes no entries
    assert any(Path(remote).rglob("*")), "nothing pushed"

    returned = dvc.dvc_return_files(OUTPUTS, project.has_pipeline, project.metrics_files,
                                    stage_outs=project.stage_outs)
    assert await bring_back(runner, returned, repo) == ["artifacts.dvc", "dvc.lock", "metrics.json"]
    assert dvc.read_metrics(repo / "metrics.json") == dvc.read_metrics(ws / "metrics.json")
    assert dvc.pushed_outputs(OUTPUTS, project.stage_outs) == ["artifacts", "model"]
    assert dvc.ensure_gitignored(repo, dvc.pushed_outputs(OUTPUTS, project.stage_outs)) == [".gitignore"]
    assert (repo / ".gitignore").read_text() == ".trainboard/\n/artifacts\n/model\n"
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trained")

    clone = fresh_clone(repo, tmp_path / "clone")
    run(clone, "dvc", "remote", "add", "--local", "trainboard", remote)
    run(clone, "dvc", "pull", "-q", "-r", "trainboard")
    for rel in ("model/weights.bin", "artifacts/vocab.txt"):
        assert (clone / rel).read_bytes() == (ws / rel).read_bytes(), rel
    assert run(clone, "git", "status", "--porcelain") == ""


async def test_push_to_s3_on_moto_from_workspace_without_dvc_dir(
    tmp_path: Path, moto_server: aws_support.MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto_server.reset()
    aws_support.aws_env(monkeypatch, moto_server.url, tmp_path)
    moto_server.client("s3").create_bucket(Bucket="models")
    remote = "s3://models/team a/trainboard"
    repo = make_repo(tmp_path / "repo", dvc_dir=False)
    (repo / "src").mkdir()
    (repo / "src" / "README").write_text("the job's workdir\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "src")
    project = dvc.scan_project(repo)
    assert not project.has_dvc_dir
    runner = await workspace_for(repo)
    ws = runner.workspace

    # In the job's workdir (src/), as the session's setup and job specs run.
    code, log = await run_job(runner, "setup", dvc.dvc_prepare_commands("src"), workdir="src")
    assert code == 0, log
    assert (ws / ".dvc").is_dir()
    code, log = await run_job(runner, "job", ["cd .. && dvc repro"], workdir="src")
    assert code == 0, log
    commands = dvc.dvc_output_commands(OUTPUTS, remote, stage_outs=project.stage_outs, workdir="src")
    code, log = await run_job(runner, "dvc", commands, workdir="src")  # AWS_* from this environment
    assert code == 0, log
    local_config = (ws / ".dvc" / "config.local").read_text()
    assert f"endpointurl = {moto_server.url}" in local_config
    assert "testing" not in local_config and "testing" not in (ws / ".dvc" / "config").read_text()
    keys = [o["Key"] for o in moto_server.client("s3").list_objects_v2(Bucket="models")["Contents"]]
    assert keys and all(k.startswith("team a/trainboard/files/md5/") for k in keys)

    returned = dvc.dvc_return_files(OUTPUTS, project.dvc_yamls, project.metrics_files, stage_outs=project.stage_outs)
    clone = fresh_clone(repo, tmp_path / "clone")
    assert await bring_back(runner, returned, clone) == ["artifacts.dvc", "dvc.lock", "metrics.json"]
    run(clone, "dvc", "init", "-q")  # a repository without DVC gets it in the checkout (with git)
    run(clone, "dvc", "remote", "add", "--local", "trainboard", remote)
    run(clone, "dvc", "remote", "modify", "--local", "trainboard", "endpointurl", moto_server.url)
    run(clone, "dvc", "pull", "-q", "-r", "trainboard")
    for rel in ("model/weights.bin", "artifacts/vocab.txt"):
        assert (clone / rel).read_bytes() == (ws / rel).read_bytes(), rel


async def test_hostile_output_and_remote_names_execute_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text(".trainboard/\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", "empty")
    runner = await workspace_for(repo)
    ws = runner.workspace
    names = ["sp ace/q'uote\"d", "$(touch PWNED1)", "`touch PWNED2`;x"]
    for name in names:
        (ws / name).mkdir(parents=True)
        (ws / name / "f").write_text(name)
    remote = str(tmp_path / "st'o re $(touch PWNED3)")
    commands = dvc.dvc_output_commands(names, remote)
    code, log = await run_job(runner, "dvc", commands)
    assert code == 0, log
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    for name in names:
        assert (ws / f"{name}.dvc").is_file(), name
    assert len([p for p in Path(remote).rglob("*") if p.is_file()]) == 2 * len(names)  # a file and a .dir each


async def test_missing_output_fails_the_dvc_job(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", dvc_dir=True)
    runner = await workspace_for(repo)
    code, log = await run_job(runner, "dvc", dvc.dvc_output_commands(["never-made"], str(tmp_path / "st")))
    assert code != 0
    assert "never-made" in log


# --------------------------------------------------------------------------- the base branch


def test_base_branch_metrics(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", dvc_dir=False)
    (repo / "metrics.json").write_text(json.dumps({"f1": 0.7, "eval": {"loss": 0.3}}))
    (repo / "scores.yaml").write_text("acc: 0.5\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline metrics")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "metrics.json").write_text(json.dumps({"f1": 0.9, "eval": {"loss": 0.1}}))
    git(repo, "commit", "-q", "-am", "better")
    (repo / "metrics.json").write_text(json.dumps({"f1": 0.95}))  # uncommitted: not the base's either

    files = ["metrics.json", "scores.yaml"]
    assert dvc.base_branch_metrics(repo, "main", files) == {"f1": 0.7, "eval.loss": 0.3, "acc": 0.5}
    assert dvc.base_branch_metrics(repo, "main", ["gone.json"]) is None
    base = dvc.base_branch_baseline(repo, "main", files)
    assert base is not None and base.metrics == {"f1": 0.7, "eval.loss": 0.3, "acc": 0.5}
    assert base.commit == git(repo, "rev-parse", "main").strip() and base.mlflow_run_id == ""
    assert base.label("main") == f"main @ {base.commit[:7]}"
    assert dvc.base_branch_baseline(repo, "main", ["gone.json"]) is None
    assert dvc.base_branch_metrics(repo, "main", ["gone.json", "scores.yaml"]) == {"acc": 0.5}
    assert dvc.base_branch_metrics(repo, "no-such-branch", files) is None
    assert dvc.base_branch_metrics(repo, "--all", files) is None

    # A CI checkout: the feature branch, and main only as origin/main.
    clone = fresh_clone(repo, tmp_path / "ci")
    assert git(clone, "branch", "--format=%(refname)").split() == ["refs/heads/feature"]
    assert dvc.resolve_base(clone, "main") == git(repo, "rev-parse", "main").strip()
    assert dvc.base_branch_metrics(clone, "main", files) == {"f1": 0.7, "eval.loss": 0.3, "acc": 0.5}
    # a malformed file on the base branch counts as absent
    git(repo, "checkout", "-q", "-f", "main")
    (repo / "scores.yaml").write_text("acc: [unclosed\n")
    git(repo, "commit", "-q", "-am", "broken")
    assert dvc.base_branch_metrics(repo, "main", ["scores.yaml"]) is None


def test_ensure_gitignored(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.bin")  # no final newline
    (repo / "data").mkdir()
    assert dvc.ensure_gitignored(repo, ["data/raw", "model/", "w.bin", "data/raw"]) == [
        "data/.gitignore", ".gitignore"]
    assert (repo / ".gitignore").read_text() == "*.bin\n/model\n"
    assert (repo / "data" / ".gitignore").read_text() == "/raw\n"
    assert dvc.ensure_gitignored(repo, ["data/raw", "model"]) == []
    (repo / "data" / "raw").mkdir()
    (repo / "data" / "raw" / "x").write_text("x")
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=all").split() == [
        "??", ".gitignore", "??", "data/.gitignore"]

"""`trainboard init`: the two workflows it writes, parsed, linted and their shell run.

Through the CLI in a small git repository: an installable repository with extras, one
with a requirements.txt and a trainboard spec, trainboard's own repository, and the
cases init refuses. Each written pair is parsed with yaml and checked for what GitHub's
pattern for untrusted pull requests asks (the pull request trains read-only; the
workflow_run half, which may write, never checks out or runs the pull request's code),
linted with actionlint (which runs shellcheck on every `run:`), and each `run:` block is
executed by bash with `pip` and `trainboard` replaced by recorders, to show the commands
and their quoting are what was meant.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import git, run_cli
from trainboard.backend.exitcodes import ExitCode

WORKFLOWS = Path(".github") / "workflows"
SPEC = "git+https://github.com/example/trainboard@v0.1.0"
BIN = Path(sys.executable).parent  # actionlint and shellcheck, from the dev extra
PR_ONLY_READS = {"contents": "read"}
PUBLISH_PERMISSIONS = {"actions": "read", "pull-requests": "write", "statuses": "write"}


def init(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["init", "--config", "tb.yaml", *args], cwd=repo)


def load(repo: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return (yaml.safe_load((repo / WORKFLOWS / "trainboard.yml").read_text()),
            yaml.safe_load((repo / WORKFLOWS / "trainboard-publish.yml").read_text()))


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def step(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(s for s in steps if s.get("name") == name)


def uses(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in steps if s.get("uses", "").startswith(action + "@")]


def run_block(block: str, tmp_path: Path) -> list[list[str]]:
    """Run a `run:` block as Actions does (bash -e), with pip and trainboard recording their argv."""
    shims = tmp_path / "shims"
    shims.mkdir(exist_ok=True)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    for name in ("pip", "trainboard"):
        shim = shims / name
        shim.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"open({str(log)!r}, 'a').write(json.dumps([{name!r}, *sys.argv[1:]]) + '\\n')\n")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}", RUNNER_TEMP=str(tmp_path / "runner-temp"))
    subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", block], check=True, env=env,
                   cwd=tmp_path)
    return [json.loads(line) for line in log.read_text().splitlines()]


def actionlint(repo: Path) -> None:
    """actionlint over both files; with shellcheck on PATH it lints the shell of each `run:` too."""
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    done = subprocess.run([str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"),
                           str(WORKFLOWS / "trainboard.yml"), str(WORKFLOWS / "trainboard-publish.yml")],
                          cwd=repo, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def check_fork_safe(repo: Path, aws: bool, checkout: bool) -> None:
    """GitHub's pattern for untrusted code, and least privilege for every job.

    ``checkout``: trainboard's spec is in the repository (a committed wheel, or trainboard
    itself), so the publish job checks out the default branch, and only that.
    """
    main, publish = load(repo)
    publish_text = (repo / WORKFLOWS / "trainboard-publish.yml").read_text()
    assert "@@" not in publish_text + (repo / WORKFLOWS / "trainboard.yml").read_text()  # every placeholder filled
    on = triggers(main)
    assert set(on) <= {"push", "pull_request", "workflow_dispatch", "schedule"}
    assert on["push"] == {"branches": ["main"]} and on["pull_request"] == {"branches": ["main"]}
    assert "workflow_dispatch" in on and "pull_request_target" not in on
    assert main["permissions"] == {} and publish["permissions"] == {}
    jobs = main["jobs"]
    assert set(jobs) == {"pull-request", "baseline", "manual"}
    oidc = {"id-token": "write"} if aws else {}
    # The pull request trains read-only and is handed no token; it keeps its folder as the artifact.
    pr = jobs["pull-request"]
    assert pr["if"] == "github.event_name == 'pull_request'"
    assert pr["permissions"] == {**PR_ONLY_READS, **oidc}
    train = step(pr["steps"], "Train, compare, report")
    assert "env" not in train and "GITHUB_TOKEN" not in json.dumps(pr)
    upload = uses(pr["steps"], "actions/upload-artifact")
    assert upload and upload[0]["if"] == "always()"
    assert upload[0]["with"]["name"] == "trainboard-results" and upload[0]["with"]["path"] == ".trainboard/runs/"
    assert upload[0]["with"]["retention-days"] > 0
    # A push to the base records the baseline: it may push (contents) and nothing else.
    assert jobs["baseline"]["permissions"] == {"contents": "write", **oidc}
    assert jobs["baseline"]["if"].startswith("github.event_name == 'push'")
    assert jobs["manual"]["permissions"] == {"contents": "write", "pull-requests": "write",
                                             "statuses": "write", **oidc}
    for name in ("baseline", "manual"):
        env = step(jobs[name]["steps"], "Train, compare, report")["env"]
        assert env == {"GITHUB_TOKEN": "${{ github.token }}"}
    for job in jobs.values():
        trains_on = uses(job["steps"], "actions/checkout")
        assert len(trains_on) == 1 and trains_on[0]["with"] == {"fetch-depth": 0}
        aws_steps = uses(job["steps"], "aws-actions/configure-aws-credentials")
        assert len(aws_steps) == (2 if aws else 0)
        assert ("env" in job) == aws

    # The workflow_run half: only after a pull request's run of the workflow above.
    assert triggers(publish) == {"workflow_run": {"workflows": [main["name"]], "types": ["completed"]}}
    (job,) = publish["jobs"].values()
    assert job["if"] == "github.event.workflow_run.event == 'pull_request'"
    assert job["permissions"] == {**PUBLISH_PERMISSIONS, **({"contents": "read"} if checkout else {})}
    steps = job["steps"]
    # It checks out nothing, or the default branch (the run's own ref): nothing of the pull request.
    checkouts = uses(steps, "actions/checkout")
    assert [c["with"] for c in checkouts] == ([{"persist-credentials": False}] if checkout else [])
    for forbidden in ("head_sha", "head_branch", "head_repository", "pull_request.head", "head.sha", "head.ref",
                      "refs/pull", "ref:", "repository:"):
        assert forbidden not in publish_text, forbidden
    (download,) = uses(steps, "actions/download-artifact")
    assert download["with"] == {"name": "trainboard-results", "path": "${{ runner.temp }}/trainboard-results",
                                "run-id": "${{ github.event.workflow_run.id }}", "github-token": "${{ github.token }}"}
    # No step runs anything from the artifact: the one command that names it is `trainboard pr --results`.
    runs = [s["run"] for s in steps if "run" in s]
    touching = [r for r in runs if "trainboard-results" in r]
    assert touching == ['trainboard pr --results "$RUNNER_TEMP/trainboard-results"\n']
    assert step(steps, "Comment and commit status")["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}
    others = [s for s in steps if "uses" in s and s is not download and s not in checkouts]
    assert others == uses(steps, "actions/setup-python")


def test_an_installable_repository_with_extras(tiny_repo: Path, tmp_path: Path) -> None:
    (tiny_repo / "pyproject.toml").write_text(
        '[project]\nname = "intent-model"\nversion = "1"\n[project.optional-dependencies]\n'
        'train = ["torch"]\nplots = ["matplotlib"]\n')
    proc = init(tiny_repo, "--extras", "train", "--extras", "plots", "--install", SPEC)
    assert proc.returncode == ExitCode.OK, proc.stderr
    # It says what it wrote, what CI installs, and what is left to do.
    assert "wrote .github/workflows/trainboard.yml" in proc.stdout
    assert "wrote .github/workflows/trainboard-publish.yml" in proc.stdout
    assert f"CI installs: pip install -e '.[train,plots]'; pip install {SPEC}" in proc.stdout
    assert "next:" in proc.stdout and "Allow GitHub Actions to create and approve pull requests" in proc.stdout
    assert "AWS_ROLE_ARN" not in proc.stdout  # the config needs no AWS
    main, publish = load(tiny_repo)
    check_fork_safe(tiny_repo, aws=False, checkout=False)
    for job in main["jobs"].values():
        python = uses(job["steps"], "actions/setup-python")[0]["with"]
        assert python["cache"] == "pip"
        assert python["cache-dependency-path"].split() == ["pyproject.toml", ".github/workflows/trainboard.yml"]
        assert run_block(step(job["steps"], "Install")["run"], tmp_path) == [
            ["pip", "install", "-e", ".[train,plots]"], ["pip", "install", SPEC]]
        assert run_block(step(job["steps"], "Train, compare, report")["run"], tmp_path) == [
            ["trainboard", "run", "tb.yaml", "--no-tui"]]
        assert "schedule" not in triggers(main)
    publish_steps = publish["jobs"]["publish"]["steps"]
    assert run_block(step(publish_steps, "Install trainboard")["run"], tmp_path) == [["pip", "install", SPEC]]
    assert run_block(step(publish_steps, "Comment and commit status")["run"], tmp_path) == [
        ["trainboard", "pr", "--results", str(tmp_path / "runner-temp" / "trainboard-results")]]
    actionlint(tiny_repo)


def test_requirements_and_a_spec_with_aws_a_schedule_and_a_quoted_config(tiny_repo: Path, tmp_path: Path) -> None:
    config = (tiny_repo / "tb.yaml").read_text().replace("kind: local", "kind: ec2\n  region: us-east-1")
    (tiny_repo / "my config.yaml").write_text(config)
    (tiny_repo / "requirements.txt").write_text("numpy\n")
    wheel = "./wheels/trainboard-0.1.0-py3-none-any.whl"
    (tiny_repo / "wheels").mkdir()
    (tiny_repo / wheel).write_bytes(b"")
    proc = run_cli(["init", "--config", "my config.yaml", "--install", wheel, "--schedule", "17 3 * * *",
                    "--python", "3.12"], cwd=tiny_repo)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "AWS_ROLE_ARN" in proc.stdout and "AWS_ACCESS_KEY_ID" in proc.stdout  # the ec2 runner needs AWS
    main, publish = load(tiny_repo)
    check_fork_safe(tiny_repo, aws=True, checkout=True)
    assert triggers(main)["schedule"] == [{"cron": "17 3 * * *"}]
    for job in main["jobs"].values():
        python = uses(job["steps"], "actions/setup-python")[0]["with"]
        assert python == {"python-version": "3.12", "cache": "pip",
                          "cache-dependency-path": "requirements.txt\n.github/workflows/trainboard.yml\n"}
        assert run_block(step(job["steps"], "Install")["run"], tmp_path) == [
            ["pip", "install", "-r", "requirements.txt"], ["pip", "install", wheel]]
        assert run_block(step(job["steps"], "Train, compare, report")["run"], tmp_path) == [
            ["trainboard", "run", "my config.yaml", "--no-tui"]]
        # A fork's pull request has no identity token: the OIDC step runs for same-repository ones only.
        oidc = step(job["steps"], "AWS credentials (OIDC role)")
        assert "github.event.pull_request.head.repo.full_name == github.repository" in oidc["if"]
        assert job["env"] == {"HAS_AWS_KEYS": "${{ secrets.AWS_ACCESS_KEY_ID != '' }}"}
    install = step(publish["jobs"]["publish"]["steps"], "Install trainboard")["run"]
    assert run_block(install, tmp_path) == [["pip", "install", wheel]]
    actionlint(tiny_repo)


def test_trainboard_itself_needs_no_spec(tiny_repo: Path, tmp_path: Path) -> None:
    (tiny_repo / "pyproject.toml").write_text(
        '[project]\nname = "trainboard"\nversion = "0"\n[project.optional-dependencies]\ntrain = []\ndev = []\n')
    plain = init(tiny_repo)
    assert plain.returncode == ExitCode.OK, plain.stderr
    # It installs the repository, without extras nobody asked for, and says which exist.
    assert "note: the repository declares the extras dev, train" in plain.stdout
    main, publish = load(tiny_repo)
    assert run_block(step(main["jobs"]["pull-request"]["steps"], "Install")["run"], tmp_path) == [
        ["pip", "install", "-e", "."]]
    # The publish job installs trainboard from the default branch it checked out.
    publish_steps = publish["jobs"]["publish"]["steps"]
    assert run_block(step(publish_steps, "Install trainboard")["run"], tmp_path) == [["pip", "install", "."]]
    assert init(tiny_repo, "--extras", "train", "--force").returncode == ExitCode.OK
    main, publish = load(tiny_repo)
    assert run_block(step(main["jobs"]["baseline"]["steps"], "Install")["run"], tmp_path) == [
        ["pip", "install", "-e", ".[train]"]]
    check_fork_safe(tiny_repo, aws=False, checkout=True)


def test_nothing_says_where_trainboard_comes_from(tiny_repo: Path) -> None:
    proc = init(tiny_repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "nothing says where CI gets trainboard" in proc.stderr
    assert "fix: pass --install SPEC" in proc.stderr and "git+https://github.com/OWNER/trainboard@" in proc.stderr
    assert not (tiny_repo / ".github").exists()
    assert "pip install trainboard" not in proc.stdout + proc.stderr


def test_existing_workflows_are_kept_unless_forced(tiny_repo: Path) -> None:
    assert init(tiny_repo, "--install", "trainboard==0.1.0").returncode == ExitCode.OK
    git(tiny_repo, "add", "-A")
    (tiny_repo / WORKFLOWS / "trainboard.yml").unlink()  # one of the two there is enough to refuse
    again = init(tiny_repo, "--install", SPEC)
    assert again.returncode == ExitCode.CONFIG_ERROR
    assert ".github/workflows/trainboard-publish.yml: already there, nothing written" in again.stderr
    assert "--force" in again.stderr and not (tiny_repo / WORKFLOWS / "trainboard.yml").exists()
    forced = init(tiny_repo, "--install", SPEC, "--force")
    assert forced.returncode == ExitCode.OK, forced.stderr
    _, publish = load(tiny_repo)
    assert step(publish["jobs"]["publish"]["steps"], "Install trainboard")["run"] == f"pip install {SPEC}\n"
    check_fork_safe(tiny_repo, aws=False, checkout=False)


def test_what_init_refuses_names_the_flag_and_the_fix(tiny_repo: Path) -> None:
    cases = {
        ("--install", SPEC, "--extras", "train"): "--extras train: ",  # nothing installable to take extras
        ("--install", "/opt/trainboard.whl"): "CI has only what is committed in this repository",
        ("--install", "./missing.whl"): "this is not there",
        ("--install", "${{ secrets.TOKEN }}"): "not something pip can install in CI",
        ("--install", SPEC, "--schedule", "daily"): "--schedule 'daily': not a cron line of five fields",
        ("--install", SPEC, "--config", "nope.yaml"): "--config nope.yaml: no such file",
    }
    for args, message in cases.items():
        proc = init(tiny_repo, *args)
        assert proc.returncode == ExitCode.CONFIG_ERROR, (args, proc.stdout)
        assert message in proc.stderr and "fix: " in proc.stderr, (args, proc.stderr)
    (tiny_repo / "pyproject.toml").write_text('[project]\nname = "m"\nversion = "1"\n'
                                              '[project.optional-dependencies]\ntrain = []\n')
    unknown = init(tiny_repo, "--install", SPEC, "--extras", "gpu")
    assert unknown.returncode == ExitCode.CONFIG_ERROR
    assert "--extras gpu: pyproject.toml declares no such extra (it has: train)" in unknown.stderr
    (tiny_repo / "bad.yaml").write_text("job: {command: x}\nmetrics: {f1: {goal: up}}\n")
    bad = run_cli(["init", "--config", "bad.yaml", "--install", SPEC], cwd=tiny_repo)
    assert bad.returncode == ExitCode.CONFIG_ERROR and "bad.yaml:2" in bad.stderr
    assert not (tiny_repo / ".github").exists()

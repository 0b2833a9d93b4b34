"""DVC in whole runs, through the real CLI: `dvc repro` as the job, its metrics file
read beside MLflow, outputs pushed from the runner, the base branch's committed
metrics as the baseline, and a fresh clone pulling the outputs byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, git, run_cli
from trainboard.backend.exitcodes import ExitCode

CONFIG = {
    "name": "dvc-demo",
    "job": {"command": "dvc repro", "env": {"SEED": "1"}},
    "mlflow": {"tracking_uri": "sqlite:///.trainboard/mlflow.db", "experiment": "dvc", "poll_interval": 0.2},
    "metrics": {"f1": {"display": "F1", "goal": "max"}, "eval.loss": {"display": "Loss", "goal": "min"}},
    "compare": {"base": "main", "gates": {"f1": {"min": 0.5}}},
    "dvc": {"outputs": ["artifacts"]},
}


@pytest.fixture
def dvc_repo(tmp_path: Path, empty_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """examples/dvc as a git repository on main, with metrics.json committed (as a team would)."""
    for name, folder in (("DVC_SITE_CACHE_DIR", "site"), ("DVC_GLOBAL_CONFIG_DIR", "global"),
                         ("DVC_SYSTEM_CONFIG_DIR", "system")):
        monkeypatch.setenv(name, str(tmp_path / "dvc-home" / folder))  # keep DVC's own state in the test
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "dvc", repo)
    (repo / "tb.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    (repo / ".gitignore").write_text(".trainboard/\n")
    (repo / "metrics.json").write_text(json.dumps({"f1": 0.8, "eval": {"loss": 0.2}}) + "\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "T")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "dvc pipeline")
    (repo / ".trainboard").mkdir()
    shutil.copy(empty_mlflow_db, repo / ".trainboard" / "mlflow.db")
    return repo


def test_dvc_repro_run_pushes_outputs_brings_pointers_back_and_compares_with_main(dvc_repo: Path,
                                                                                tmp_path: Path) -> None:
    git(dvc_repo, "checkout", "-q", "-b", "seed-2")
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "job.env.SEED=2"], cwd=dvc_repo,
                   env={"PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == ExitCode.OK, proc.stdout[-4000:] + proc.stderr
    (run,) = (dvc_repo / ".trainboard" / "runs").iterdir()
    record = json.loads((run / "record.json").read_text())
    # No MLflow run of main: the baseline is main's committed metrics.json.
    head = git(dvc_repo, "rev-parse", "--short=7", "main").strip()
    assert f"Comparison with main @ {head}" in proc.stdout
    rows = {row["key"]: row for row in record["comparison"]["rows"]}
    produced = json.loads((dvc_repo / "metrics.json").read_text())  # brought back into the checkout
    assert rows["f1"]["before"] == pytest.approx(0.8) and rows["f1"]["after"] == pytest.approx(produced["f1"])
    assert rows["eval.loss"]["after"] == pytest.approx(produced["eval"]["loss"])
    # The pointer files came back; the outputs are in the default remote, not in git.
    assert {"artifacts.dvc", "dvc.lock", "metrics.json", ".gitignore"} <= set(record["dvc_files"])
    assert "/artifacts" in (dvc_repo / ".gitignore").read_text()
    assert "dvc push -r trainboard" in (run / "dvc.log").read_text()  # the DVC step's own log, kept here
    storage = dvc_repo / ".trainboard" / "dvc-storage"
    assert any(p.is_file() for p in storage.rglob("*"))

    # Anyone with the commit and the pointer files gets the outputs back, byte for byte.
    git(dvc_repo, "add", "artifacts.dvc", "dvc.lock", "metrics.json", ".gitignore")
    git(dvc_repo, "commit", "-qm", "outputs")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(dvc_repo), str(clone))
    dvc = str(ROOT / ".venv" / "bin" / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=clone, check=True)
    subprocess.run([dvc, "remote", "add", "-d", "trainboard", str(storage)], cwd=clone, check=True)
    pulled = subprocess.run([dvc, "pull", "-q"], cwd=clone, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    workspace = run / "workspace"
    for rel in ("model/weights.bin", "artifacts/vocab.txt"):
        assert (clone / rel).read_bytes() == (workspace / rel).read_bytes(), rel


def test_a_folder_remote_is_refused_for_a_remote_runner(dvc_repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "runner={kind: ssh, host: gpu-box}"], cwd=dvc_repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "dvc.remote" in proc.stderr and "s3://" in proc.stderr
    assert not (dvc_repo / ".trainboard" / "runs").exists()


def test_a_dvc_yaml_in_another_folder_of_a_repository_without_dvc_is_not_this_runs(repo: Path) -> None:
    """Like this repository's examples/dvc: the job at the root does not become a DVC run."""
    (repo / "examples" / "pipeline").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "dvc" / "dvc.yaml", repo / "examples" / "pipeline" / "dvc.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "an example pipeline")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr
    assert "dvc init" not in proc.stdout and "dvc push" not in proc.stdout and "DVC" not in proc.stdout
    (run,) = (repo / ".trainboard" / "runs").iterdir()
    assert not (run / "dvc.log").exists() and "dvc_files" not in json.loads((run / "record.json").read_text())

"""job.params_schema: the params a job declares, checked before anything is provisioned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY_CONFIG, git, run_cli
from trainboard.backend.config import ConfigError, load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.params_schema import check_params

SCHEMA = "epochs: 1\nlearning_rate: 1.0e-4\nname: small\nthreads: null\noptim: {momentum: 0.9}\n"
CONFIG = TINY_CONFIG.replace("  outputs: [metrics.json]\n",
                             "  outputs: [metrics.json]\n  params_schema: schema.yaml\n").replace(
    "params:\n  epochs: 2\n  base_f1: 0.6\n  sleep: 0.0\n",
    "params:\n  epochs: 2\n  learning_rate: 0.001\n  threads: 4\n  optim: {momentum: 0.5}\n")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "tb.yaml").write_text(CONFIG)
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    return tmp_path


def refused(folder: Path, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_params(load_config(folder / "tb.yaml", list(overrides)), folder)
    return info.value


def test_declared_params_of_the_right_kind_pass(folder: Path) -> None:
    check_params(load_config(folder / "tb.yaml", ["params.learning_rate=1e-4", "params.threads=abc"]), folder)
    (folder / "tb.yaml").write_text(CONFIG.replace("learning_rate: 0.001", "learning_rate: 1e-3"))  # YAML 1.1: a str
    check_params(load_config(folder / "tb.yaml"), folder)


def test_a_misspelt_param_in_the_file_names_its_line_and_the_declared_one(folder: Path) -> None:
    (folder / "tb.yaml").write_text(CONFIG.replace("  epochs: 2\n", "  epocs: 2\n"))
    err = refused(folder)
    line = CONFIG.splitlines().index("  epochs: 2") + 1
    assert (err.file, err.line, err.setting) == (str(folder / "tb.yaml"), line, "params.epocs")
    assert "declares no param 'epocs'" in err.message
    assert err.fix.startswith("did you mean 'params.epochs'?") and "schema.yaml" in err.fix


def test_a_new_param_from_set_is_refused_naming_the_override(folder: Path) -> None:
    err = refused(folder, "params.warmup=5")
    assert err.setting == "params.warmup" and err.source == "--set params.warmup=5"
    assert "did you mean" not in err.fix  # nothing close: the schema is named instead
    nested = refused(folder, "params.optim.momentun=0.1")
    assert nested.setting == "params.optim.momentun" and "'params.optim.momentum'" in nested.fix


@pytest.mark.parametrize(("override", "wanted"), [
    ("params.epochs=two", "an integer"),
    ("params.epochs=true", "an integer"),
    ("params.learning_rate=fast", "a number"),
    ("params.optim=[1]", "a mapping"),
])
def test_a_value_of_the_wrong_kind_is_refused(folder: Path, override: str, wanted: str) -> None:
    err = refused(folder, override)
    assert f"the job expects {wanted}" in err.message and err.setting == override.partition("=")[0]


@pytest.mark.parametrize(("schema", "says"), [
    (None, "no file 'schema.yaml'"),
    ("- a\n- b\n", "does not hold a mapping"),
    ("a: [\n", "cannot be read as YAML"),
])
def test_a_missing_or_broken_schema_is_a_config_error(folder: Path, schema: str | None, says: str) -> None:
    if schema is None:
        (folder / "schema.yaml").unlink()
    else:
        (folder / "schema.yaml").write_text(schema)
    err = refused(folder)
    assert says in err.message and err.setting == "job.params_schema"


def test_the_example_job_declares_every_param_sample_params_sets() -> None:
    loaded = load_config(ROOT / "sample_params.yaml")
    check_params(loaded, ROOT)
    declared = yaml.safe_load((ROOT / loaded.config.job.params_schema).read_text())
    assert set(loaded.config.params) <= set(declared)


def test_cli_refuses_a_misspelt_param_with_exit_2_and_provisions_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tb.yaml").write_text(CONFIG.replace("  epochs: 2\n", "  epocs: 2\n"))
    (repo / "schema.yaml").write_text(SCHEMA)
    (repo / "job.py").write_text("print('ran')\n")
    (repo / ".gitignore").write_text(".trainboard/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@e.st", "-c", "user.name=T", "commit", "-q", "-m", "init")
    proc = run_cli(["run", "tb.yaml", "--no-tui"], cwd=repo)
    assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stdout + proc.stderr
    assert "tb.yaml:" in proc.stderr and "params.epocs" in proc.stderr and "did you mean 'params.epochs'" in proc.stderr
    assert not (repo / ".trainboard" / "runs").exists()


def test_with_a_schema_a_declared_param_the_file_lacks_is_taken_from_set() -> None:
    """The file sets eval_slice, not max_eval_samples: close names, both declared by the job."""
    loaded = load_config(ROOT / "sample_params.yaml", ["params.max_eval_samples=48", "params.max_train_samples=48"])
    check_params(loaded, ROOT)
    assert loaded.config.params["max_eval_samples"] == 48
    with pytest.raises(ConfigError) as info:
        check_params(load_config(ROOT / "sample_params.yaml", ["params.max_evl_samples=48"]), ROOT)
    assert "did you mean 'params.max_eval_samples'?" in info.value.fix

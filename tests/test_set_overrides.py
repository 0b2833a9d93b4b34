"""``--set`` overrides refused before anything starts: an empty value, an empty name part,
a value that is not YAML, a param set at the top level or misspelt, and a string for a list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainboard.backend.config import ConfigError, load_config
from trainboard.backend.exitcodes import ExitCode

CONFIG = """\
name: set-overrides
runner:
  kind: local
job:
  command: python job.py
  setup: []
mlflow:
  tracking_uri: sqlite:///.trainboard/mlflow.db
metrics:
  f1: {goal: max}
params:
  epochs: 2
  optim: {lr: 0.1}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tb.yaml"
    path.write_text(CONFIG)
    return path


def refused(path: Path, override: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    err = info.value
    assert err.file == "--set" or err.source == f"--set {override}", str(err)
    assert str(err).startswith("--set ") or f"(overridden by --set {override})" in str(err), str(err)
    assert err.fix, str(err)
    return err


def test_empty_value_is_refused_and_says_how_to_write_an_empty_string(config: Path) -> None:
    err = refused(config, "params.epochs=")
    assert err.setting == "params.epochs"
    assert "no value" in err.message
    assert """'params.epochs=""'""" in err.fix
    assert load_config(config, ['params.epochs=""']).config.params["epochs"] == ""


@pytest.mark.parametrize("override", ["params..epochs=2", ".params.epochs=2", "params.epochs.=2"])
def test_empty_name_part_is_refused(config: Path, override: str) -> None:
    err = refused(config, override)
    assert "empty part" in err.message
    assert "--set params.epochs=2" in err.fix


def test_value_that_is_not_yaml_is_refused_with_the_yaml_problem(config: Path) -> None:
    err = refused(config, "params.epochs=[1,2")
    assert err.setting == "params.epochs"
    assert "not valid YAML" in err.message and "']'" in err.message
    assert "quote it" in err.fix


def test_value_setting_a_key_twice_is_refused(config: Path) -> None:
    err = refused(config, "params.x={a: 1, a: 2}")
    assert "'a' twice" in err.message


@pytest.mark.parametrize(
    ("override", "near"),
    [
        ("epochs=2", "params.epochs"),  # a param of the file, set at the top level
        ("optim.lr=2", "params.optim.lr"),
        ("jbo.command=python x.py", "job.command"),  # a misspelt top-level setting
        ("params.epocs=2", "params.epochs"),  # a misspelt param of the file
        ("params.optim.lrr=2", "params.optim.lr"),
    ],
)
def test_unknown_setting_near_a_known_one_says_which(config: Path, override: str, near: str) -> None:
    err = refused(config, override)
    assert f"did you mean {near!r}?" in err.fix
    assert f"--set {near}={override.partition('=')[2]}" in err.fix


def test_new_param_with_no_close_match_is_taken(config: Path) -> None:
    params = load_config(config, ["params.warmup_steps=5", "params.optim.momentum=0.9"]).config.params
    assert params["warmup_steps"] == 5 and params["optim"] == {"lr": 0.1, "momentum": 0.9}
    # a param the file has is overridden as before
    assert load_config(config, ["params.epochs=3"]).config.params["epochs"] == 3


def test_string_for_a_list_setting_is_refused_with_a_list_to_write(config: Path) -> None:
    err = refused(config, "job.setup=python x.py")
    assert err.setting == "job.setup"
    assert """--set 'job.setup=["python x.py"]'""" in err.fix
    # the same in the file gets the file's advice, as before
    config.write_text(CONFIG.replace("setup: []", "setup: python x.py"))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.fix == "write a list (lines starting with '- ')"
    config.write_text(CONFIG)
    loaded = load_config(config, ['job.setup=["python x.py"]'])
    assert loaded.config.job.setup == ["python x.py"]


@pytest.mark.parametrize("override", ["params.epochs=", "params..epochs=2", "params.epochs=[1,2", "epochs=2",
                                      "params.epocs=2", "job.setup=python x.py"])
def test_cli_exits_2_and_starts_nothing(tmp_path: Path, override: str) -> None:
    (tmp_path / "tb.yaml").write_text(CONFIG)
    (tmp_path / "job.py").write_text("print('ran')\n")
    result = subprocess.run(
        [sys.executable, "-m", "trainboard.tui.cli", "run", "tb.yaml", "--no-tui", "--set", override],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                      "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == ExitCode.CONFIG_ERROR, (result.returncode, result.stderr, result.stdout)
    assert "--set" in result.stderr and "fix: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / ".trainboard").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.py", "tb.yaml"]


def test_readme_sample_error_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's bad-config example is what the command prints, line number included."""
    readme = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.strip().startswith("$ trainboard run sample_params.yaml"))
    command = readme[start].strip().removeprefix("$ trainboard run sample_params.yaml --set ")
    shown = []
    for line in readme[start + 1:]:
        if line.strip().startswith("```"):
            break
        shown.append(line[3:])
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError) as info:
        load_config("sample_params.yaml", [command])
    assert "\n".join(shown) == f"error: {info.value}"

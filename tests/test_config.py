"""The config: the documented sample, `--set` overrides, and every bad config through the real CLI.

A bad config must exit 2 (ExitCode.CONFIG_ERROR) with a message that names the
file, the line, the setting and the fix, and must start nothing: no run folder,
no MLflow database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from tests.conftest import ROOT, run_cli
from trainboard.backend.config import ConfigError, Gate, MetricSpec, RunConfig, load_config
from trainboard.backend.exitcodes import ExitCode

SAMPLE = ROOT / "sample_params.yaml"

# A valid config; every bad case below is this with one thing wrong.
#   line 1 name, 3 runner.kind, 4 job, 5 job.command, 6 mlflow, 7 tracking_uri,
#   8 poll_interval, 9 metrics, 10 metrics.f1, 11 compare, 12 gates, 13 gates.f1
GOOD = """\
name: bad
runner:
  kind: local
job:
  command: python job.py
mlflow:
  tracking_uri: sqlite:///.trainboard/mlflow.db
  poll_interval: 0.2
metrics:
  f1: {goal: max}
compare:
  gates:
    f1: {min_delta: -0.005}
"""


def edit(old: str, new: str) -> str:
    """GOOD with one line replaced (``new`` may span several lines, or be empty)."""
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


# --------------------------------------------------------------------------- the sample


def test_sample_params_loads_and_validates() -> None:
    loaded = load_config(SAMPLE)
    cfg = loaded.config
    assert cfg.runner.kind == "local"
    assert cfg.job.command == "python examples/intents/train.py"
    assert cfg.job.env["HF_HUB_OFFLINE"] == "1"  # numbers in env become strings
    assert set(cfg.compare.gates) <= set(cfg.metrics)
    assert loaded.raw["params"]["seed"] == 42


def _sections(text: str) -> dict[str, list[str]]:
    """Top-level key -> the lines of its block, the key's own line and its comment first."""
    lines = text.splitlines()
    out: dict[str, list[str]] = {}
    for index, line in enumerate(lines):
        match = re.match(r"^([a-z_]+):", line)
        if not match:
            continue
        start = index
        while start > 0 and lines[start - 1].startswith("#"):
            start -= 1
        end = index + 1
        while end < len(lines) and (not lines[end] or lines[end].startswith((" ", "#"))):
            end += 1
        out[match.group(1)] = lines[start:end]
    return out


def _commented_key(block: list[str], key: str, indent: str) -> bool:
    """``key`` is written at ``indent`` in ``block`` with a comment line right above it."""
    for index, line in enumerate(block):
        if re.match(rf"^{indent}{key}:", line):
            return index > 0 and block[index - 1].strip().startswith("#")
    return False


def test_sample_params_documents_every_setting() -> None:
    text = SAMPLE.read_text()
    sections = _sections(text)
    lines = text.splitlines()
    undocumented = [name for name in RunConfig.model_fields if not _commented_key(lines, name, "")]
    assert undocumented == [], f"top-level settings absent or without a comment: {undocumented}"
    # Sections that are models: each of their settings written, with a comment above it.
    missing = []
    for name, field in RunConfig.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            block = sections[name]
            missing += [f"{name}.{sub}" for sub in kind.model_fields
                        if not _commented_key(block, sub, "  ")]
    assert missing == [], f"settings absent or without a comment: {missing}"
    # Mappings of models (metrics, gates): their fields explained in the comments.
    for section, model in (("metrics", MetricSpec), ("compare", Gate)):
        comments = " ".join(line for line in sections[section] if line.strip().startswith("#"))
        unexplained = [f for f in model.model_fields if not re.search(rf"\b{f}\b", comments)]
        assert unexplained == [], f"{model.__name__} fields not explained: {unexplained}"


# --------------------------------------------------------------------------- --set


@pytest.fixture
def good_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


def test_set_parses_values_as_yaml(good_yaml: Path) -> None:
    loaded = load_config(
        good_yaml,
        [
            "params.epochs=3",
            "params.lr=0.25",
            "params.shuffle=true",
            "params.tag=abc",
            'params.empty=""',
            "mlflow.poll_interval=5",
            "job.command=python train.py --lr=0.1",  # only the first '=' splits
        ],
    )
    params = loaded.config.params
    assert params["epochs"] == 3 and type(params["epochs"]) is int
    assert params["lr"] == 0.25 and type(params["lr"]) is float
    assert params["shuffle"] is True
    assert params["tag"] == "abc"
    assert params["empty"] == ""
    assert loaded.config.mlflow.poll_interval == 5.0
    assert loaded.config.job.command == "python train.py --lr=0.1"
    assert loaded.overrides[0] == "params.epochs=3"
    assert loaded.raw["params"]["epochs"] == 3  # the record keeps the effective config


def test_set_creates_nested_settings(good_yaml: Path) -> None:
    overrides = ["params.optim.lr=0.1", "params.optim.name=adam", "report.log_lines=7"]
    loaded = load_config(good_yaml, overrides)
    assert loaded.config.params == {"optim": {"lr": 0.1, "name": "adam"}}
    assert loaded.config.report.log_lines == 7


def test_set_overrides_a_value_written_in_the_file(good_yaml: Path) -> None:
    loaded = load_config(good_yaml, ["compare.gates.f1.min_delta=-0.5"])
    assert loaded.config.compare.gates["f1"].min_delta == -0.5


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("job.command", "not of the form a.b=value"),
        ("=3", "names no setting"),
        ("job.command.shell=bash", "command is not a mapping"),
    ],
)
def test_set_bad_form_raises(good_yaml: Path, override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(good_yaml, [override])
    assert info.value.file == "--set"
    assert needle in str(info.value)
    assert info.value.fix


def test_set_value_that_fails_validation_names_the_override(good_yaml: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(good_yaml, ["mlflow.poll_interval=-1"])
    err = info.value
    assert (err.line, err.setting) == (8, "mlflow.poll_interval")
    assert err.source == "--set mlflow.poll_interval=-1"
    assert str(err).startswith(f"{good_yaml}:8 (overridden by --set mlflow.poll_interval=-1): ")


# --------------------------------------------------------------------------- ConfigError.render


def test_config_error_render() -> None:
    full = ConfigError("empty", file="a.yaml", line=7, setting="job.command", fix="write one")
    assert full.render() == "a.yaml:7: job.command: empty\n  fix: write one"
    assert str(full) == full.render()
    assert ConfigError("no such file", file="a.yaml").render() == "a.yaml: no such file"
    assert ConfigError("bad", file="a.yaml", line=3, fix="f").render() == "a.yaml:3: bad\n  fix: f"
    overridden = ConfigError("too small", file="a.yaml", line=8, setting="x.y",
                             source="--set x.y=0")
    assert overridden.render() == "a.yaml:8 (overridden by --set x.y=0): x.y: too small"
    # A setting that only the command line wrote has no line: the override is the place.
    only_cli = ConfigError("too small", file="a.yaml", setting="x.y", source="--set x.y=0")
    assert only_cli.render() == "--set x.y=0: x.y: too small"


# --------------------------------------------------------------------------- bad configs, real CLI


@dataclass(frozen=True)
class Bad:
    id: str
    yaml: str | None  # None: the config file does not exist
    line: int | None  # None: no line (a missing top-level key, --set, a missing file)
    setting: str | None
    needle: str  # a substring that only this fault's message has
    args: tuple[str, ...] = ()
    file: str = "bad.yaml"


CMD = "  command: python job.py"
GATE = "    f1: {min_delta: -0.005}"
POLL = "  poll_interval: 0.2"
NO_METRICS = edit("metrics:\n  f1: {goal: max}\n", "").replace(
    "compare:\n  gates:\n" + GATE + "\n", ""
)


def below_command(line: str) -> str:
    """GOOD with ``line`` added to job, below its command (at line 6)."""
    return edit(CMD, f"{CMD}\n{line}")


BAD = [
    Bad("missing-command", edit(CMD + "\n", "  workdir: .\n"), 4, "job.command",
        "job.command: Field required"),
    Bad("empty-command", edit(CMD, '  command: "  "'), 5, "job.command", "must not be empty"),
    Bad("unknown-top-level-key", edit("job:", "jobb:"), 4, "jobb",
        "unknown setting\n  fix: did you mean 'job'?"),
    Bad("unknown-nested-key", below_command("  timeout_minute: 5"), 6, "job.timeout_minute",
        "did you mean 'timeout_minutes'?"),
    Bad("runner-kind-unknown", edit("  kind: local", "  kind: kubernetes"), 3, "runner.kind",
        "unknown runner kind 'kubernetes'\n  fix: use kind: local (this machine), ssh"),
    Bad("runner-ssh-without-host", edit("  kind: local", "  kind: ssh"), 2, "runner.host", "Field required"),
    Bad("runner-ssh-misspelt", edit("  kind: local", "  kind: ssh\n  hostt: gpu-box"), 4, "runner.hostt",
        "did you mean 'host'?"),
    Bad("runner-ec2-max-price-on-demand", edit("  kind: local", "  kind: ec2\n  max_price: 0.5"), 4,
        "runner.max_price", "max_price applies to spot instances only\n  fix: set market: spot"),
    Bad("runner-ec2-bad-ami", edit("  kind: local", "  kind: ec2\n  ami: ubuntu"), 4, "runner.ami",
        "must be an image id (ami-...) or ssm:/"),
    Bad("runner-ec2-bad-cidr", edit("  kind: local", "  kind: ec2\n  ssh_cidr: my-laptop"), 4,
        "runner.ssh_cidr", "must be auto or a CIDR block"),
    Bad("runner-ec2-market", edit("  kind: local", "  kind: ec2\n  market: cheap"), 4,
        "runner.market", "'on-demand' or 'spot'"),
    Bad("metrics-empty", edit("metrics:\n  f1: {goal: max}", "metrics: {}"), 9, "metrics",
        "at least 1 item"),
    Bad("metrics-missing", NO_METRICS, None, "metrics", "metrics: Field required"),
    Bad("gate-unknown-metric", edit(GATE, "    accuracy: {min: 0.5}"), 13,
        "compare.gates.accuracy", "no metric named 'accuracy' is followed"),
    Bad("gate-no-bound", edit(GATE, "    f1: {}"), 13, "compare.gates.f1",
        "a gate needs at least one of min, max, min_delta, max_delta"),
    Bad("goal-not-max-or-min", edit("  f1: {goal: max}", "  f1: {goal: maximize}"), 10,
        "metrics.f1.goal", "'max' or 'min'"),
    Bad("poll-interval-negative", edit(POLL, "  poll_interval: -1"), 8, "mlflow.poll_interval",
        "greater than 0"),
    Bad("poll-interval-string", edit(POLL, "  poll_interval: fast"), 8, "mlflow.poll_interval",
        "valid number"),
    Bad("invalid-yaml-indentation", edit(POLL, " " + POLL), 8, None, "not valid YAML"),
    Bad("duplicate-key", below_command("  command: python other.py"), 6, "job.command",
        "'job.command' is set twice (first on line 5)"),
    Bad("workdir-absolute", below_command("  workdir: /tmp"), 6, "job.workdir",
        "must be a path inside the repository"),
    Bad("workdir-dotdot", below_command("  workdir: src/../../x"), 6, "job.workdir",
        "must be a path inside the repository"),
    # Only the session's check stage can see this one (it needs the repository root).
    Bad("workdir-does-not-exist", below_command("  workdir: nothere"), 6, "job.workdir",
        "folder 'nothere' does not exist"),
    Bad("tracking-uri-scheme",
        edit("  tracking_uri: sqlite:///.trainboard/mlflow.db", "  tracking_uri: ftp://x/y"), 7,
        "mlflow.tracking_uri", "must start with sqlite:///, http://, https://, postgresql://"),
    Bad("tracking-uri-file-store",
        edit("  tracking_uri: sqlite:///.trainboard/mlflow.db", "  tracking_uri: file:./mlruns"), 7,
        "mlflow.tracking_uri", "MLflow's file store (file:) is in maintenance mode"),
    Bad("timeout-a-boolean", below_command("  timeout_minutes: true"), 6, "job.timeout_minutes",
        "valid number\n  fix: write a number, unquoted (true and false are not numbers)"),
    Bad("env-key-with-equals", below_command("  env:\n    A=B: x"), 7, "job.env.A=B",
        "'A=B' is not a name an environment variable can have"),
    Bad("setup-a-string", below_command("  setup: pip install -e ."), 6, "job.setup",
        "valid list"),
    Bad("env-value-a-list", below_command("  env:\n    A: [1, 2]"), 6, "job.env",
        "env value for 'A' must be a string or number"),
    Bad("top-level-a-list", "- job\n- metrics\n", 1, None,
        "the top level must be a mapping of settings"),
    Bad("set-bad-form", GOOD, None, "--set", "override 'job.command' is not of the form a.b=value",
        args=("--set", "job.command")),
    Bad("set-bad-value", GOOD, 8, "mlflow.poll_interval",
        "(overridden by --set mlflow.poll_interval=-1)", args=("--set", "mlflow.poll_interval=-1")),
    Bad("file-does-not-exist", None, None, None, "nope.yaml: no such file", file="nope.yaml"),
]


def _tree(root: Path) -> set[str]:
    paths = (p.relative_to(root) for p in root.rglob("*"))
    return {str(p) for p in paths if ".git" not in p.parts}


def test_good_base_config_is_valid(good_yaml: Path) -> None:
    """The bad cases are each one edit away from this config, so each fails for its own reason."""
    assert load_config(good_yaml).config.job.command == "python job.py"


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_config_exits_2_names_the_fault_and_starts_nothing(tiny_repo: Path, case: Bad) -> None:
    if case.yaml is not None:
        (tiny_repo / case.file).write_text(case.yaml)
    before = _tree(tiny_repo)

    result = run_cli(["run", case.file, "--no-tui", *case.args], cwd=tiny_repo, timeout=60)

    err = result.stderr
    assert result.returncode == ExitCode.CONFIG_ERROR, (result.returncode, err, result.stdout)
    assert case.needle in err, err
    if case.setting == "--set":
        assert "--set" in err and case.file not in err, err
    else:
        assert case.file in err, err
    if case.line is not None:
        assert re.search(rf"{re.escape(case.file)}:{case.line}\b", err), err
    else:
        assert not re.search(rf"{re.escape(case.file)}:\d", err), err
    if case.setting is not None and case.setting != "--set":
        assert case.setting in err, err
    assert "fix: " in err, err
    assert "Traceback" not in err, err
    # Nothing started: no run folder, no MLflow database, no file at all.
    assert not (tiny_repo / ".trainboard" / "runs").exists()
    assert not list(tiny_repo.rglob("*.db"))
    assert _tree(tiny_repo) == before


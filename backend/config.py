"""The run's config: schema, loading with line numbers, and `--set` overrides.

A bad config raises :class:`ConfigError`, which names the file, the line, the
setting and the fix. Nothing is started before :func:`load_config` returns.

The parts live beside this module, and every public name is importable from here:
the section models in ``config_schema``, the strict YAML reader in ``config_yaml``,
``--set`` in ``config_overrides``, the error and its wording in ``config_errors``
and ``config_explain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainboard.backend.config_errors import ConfigError, Path_
from trainboard.backend.config_explain import _explain
from trainboard.backend.config_overrides import apply_overrides
from trainboard.backend.config_schema import (
    DEFAULT_AMI,
    CompareConfig,
    DvcConfig,
    Ec2RunnerConfig,
    Gate,
    GithubConfig,
    JobConfig,
    LocalRunnerConfig,
    MetricSpec,
    MlflowConfig,
    ReportConfig,
    RunConfig,
    RunnerConfig,
    SshRunnerConfig,
)
from trainboard.backend.config_yaml import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NUMBER_CHARS,
    MAX_OVERRIDE_CHARS,
    MAX_VALUES,
    _DuplicateKey,
    _parse,
    _read,
    _Refused,
    _visible,
)

__all__ = [
    "DEFAULT_AMI",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NUMBER_CHARS",
    "MAX_OVERRIDE_CHARS",
    "MAX_VALUES",
    "CompareConfig",
    "ConfigError",
    "DvcConfig",
    "Ec2RunnerConfig",
    "Gate",
    "GithubConfig",
    "JobConfig",
    "LoadedConfig",
    "LocalRunnerConfig",
    "MetricSpec",
    "MlflowConfig",
    "ReportConfig",
    "RunConfig",
    "RunnerConfig",
    "SshRunnerConfig",
    "load_config",
]


@dataclass(frozen=True)
class LoadedConfig:
    config: RunConfig
    path: Path
    overrides: tuple[str, ...]
    raw: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)

    def error(self, setting: str, message: str, fix: str = "") -> ConfigError:
        """A ConfigError about ``setting`` pointing at the line that sets it."""
        keys = tuple(setting.split("."))
        line = None
        while keys and line is None:
            line, keys = self.lines.get(keys), keys[:-1]
        source = next((f"--set {o}" for o in self.overrides if o.partition("=")[0].strip() == setting), "")
        return ConfigError(message, file=str(self.path), line=line, setting=setting, fix=fix, source=source)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError, and nothing else."""
    path = Path(path)
    shown = _visible(str(path), 200)
    text = _read(path, shown)
    try:
        data, lines = _parse(text)
    except _Refused as exc:
        raise ConfigError(exc.message, file=shown, line=exc.line, fix=exc.fix) from None
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{_visible(dup.key)!r} is set twice (first on line {dup.first})",
            file=shown,
            line=dup.line,
            setting=_visible(dup.key),
            fix="keep one of them",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"not valid YAML: {_visible(str(exc.problem or exc), 200)}",
            file=shown,
            line=mark.line + 1 if mark else None,
            fix="check the indentation and quoting on that line",
        ) from None
    except yaml.YAMLError as exc:  # no position known (libyaml's own failures)
        raise ConfigError(f"not valid YAML: {_visible(str(exc), 200)}", file=shown, line=1,
                          fix="check the file is the YAML config") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", file=shown, line=1,
                          fix="start from sample_params.yaml")
    overridden = apply_overrides(data, overrides)

    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, shown, lines, overridden) from None
    return LoadedConfig(config=config, path=path, overrides=tuple(overrides), raw=data, lines=lines)

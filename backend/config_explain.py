"""Pydantic's validation errors as a :class:`ConfigError`: the file, the line, the setting and the fix."""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from trainboard.backend.config_errors import ConfigError, Path_, _GateError, _SettingError
from trainboard.backend.config_schema import _RUNNER_MODELS, RunConfig
from trainboard.backend.config_yaml import _visible

_FIXES: dict[str, str] = {
    "missing": "add it; sample_params.yaml documents every setting",
    "extra_forbidden": "remove it or check its spelling; sample_params.yaml lists the settings",
    "literal_error": "use one of the values named above",
    "float_parsing": "write a number",
    "float_type": "write a number, unquoted (true and false are not numbers)",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number, unquoted (true and false are not numbers)",
    "int_from_float": "write a whole number",
    "bool_type": "write true or false (a number is not a boolean)",
    "finite_number": "write a finite number (.inf and .nan are not allowed here)",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "too_short": "add at least one entry",
    "dict_type": "write a mapping (key: value lines indented below it)",
    "model_type": "write a mapping (key: value lines indented below it)",
    "list_type": "write a list (lines starting with '- ')",
    "string_type": "write a string; quote it if YAML reads it as something else",
}

_SETTING_FIXES: dict[str, str] = {
    "runner.kind": "use kind: local (this machine), ssh (a host you can SSH into), ec2 (a fresh instance) "
                   "or ray (a Ray cluster)",
    "job.command": 'set job.command to the command that trains, e.g. "python train.py"',
    "metrics": "list the metrics to follow, e.g. metrics: {f1: {goal: max}}",
    "mlflow.tracking_uri": "e.g. sqlite:///.trainboard/mlflow.db or http://mlflow.internal:5000",
}


def _explain(exc: ValidationError, file: str, lines: dict[Path_, int], overridden: dict[Path_, str]) -> ConfigError:
    """Turn pydantic's first error into a ConfigError with file, line, setting and fix."""
    errors = exc.errors()
    # An unknown key is usually a misspelt one: name it rather than the "missing"
    # setting its typo causes (`jobb:` would otherwise report `job: Field required`).
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(str(part) for part in error["loc"])
    runner_kind = ""
    if len(loc) > 1 and loc[0] == "runner" and loc[1] in _RUNNER_MODELS:
        runner_kind, loc = loc[1], (loc[0], *loc[2:])  # drop pydantic's union tag
    kind = error["type"]
    message = error["msg"]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _GateError):
        loc = ("compare", "gates", ctx_error.key)
        message = f"no metric named {_visible(ctx_error.key)!r} is followed"
        fix = f"gate one of the metrics: {_visible(', '.join(ctx_error.known), 200)}, or add it under metrics"
    elif isinstance(ctx_error, _SettingError):
        loc, message, fix = tuple(ctx_error.setting.split(".")), ctx_error.message, ctx_error.fix
    elif kind == "union_tag_invalid":
        loc = (*loc, "kind")
        message = f"unknown runner kind {_visible(str((error.get('ctx') or {}).get('tag')))!r}"
        fix = _SETTING_FIXES["runner.kind"]
    else:
        message = message.removeprefix("Value error, ")
        setting = ".".join(loc)
        fix = _SETTING_FIXES.get(setting, "") if kind != "extra_forbidden" else ""
        fix = fix or _FIXES.get(kind, "see the comments in sample_params.yaml")
        if kind == "extra_forbidden":
            message = "unknown setting"
            known = list(_RUNNER_MODELS[runner_kind].model_fields) if runner_kind else _settings_at(loc[:-1])
            near = difflib.get_close_matches(loc[-1], known, n=1)
            if near:
                fix = f"did you mean {near[0]!r}? Otherwise remove it"
                fix += " (sample_params.yaml lists the settings)"
    # The deepest written path names the line; a missing key points at its parent.
    probe = loc
    line = None
    while probe:
        if probe in lines:
            line = lines[probe]
            break
        probe = probe[:-1]
    source = ""
    for keys, text in overridden.items():
        if loc[: len(keys)] == keys or keys[: len(loc)] == loc:
            source = text
            break
    if kind == "list_type" and source and loc:
        fix = _list_fix(".".join(loc), source)
    return ConfigError(message, file=file, line=line, setting=_visible(".".join(loc), 120), fix=fix, source=source)


def _settings_at(loc: Path_) -> list[str]:
    """The setting names the schema allows in the mapping at ``loc`` (for "did you mean")."""
    kind: Any = RunConfig
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(part)
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]  # a key of metrics or gates: its value's schema
        else:
            return []
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _list_fix(setting: str, source: str) -> str:
    """The fix for a ``--set`` that gave a list setting a single value: the value as a one-item list."""
    value = source.partition("=")[2].strip()
    item = value if value.startswith(("\"", "'")) else '"' + value.replace('"', '\\"') + '"'
    return (f"{_visible(setting, 120)} is a list: write it as a YAML list, e.g. "
            f"--set '{_visible(setting, 120)}=[{_visible(item)}]'")

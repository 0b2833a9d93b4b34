"""``--set a.b=value``: the command line's overrides, checked and applied to the config's data."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from trainboard.backend.config_errors import ConfigError, Path_
from trainboard.backend.config_schema import RunConfig
from trainboard.backend.config_yaml import (
    MAX_DEPTH,
    MAX_OVERRIDE_CHARS,
    _DuplicateKey,
    _parse,
    _Refused,
    _unprintable_refusal,
    _visible,
)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[Path_, str]:
    """Apply each ``--set`` to ``data`` in order; the settings each one set, as ``--set ...`` text.

    A ``--set`` that names a setting the file does not have, but close to one it has
    (``epocs`` for ``params.epochs``), is refused rather than added."""
    written = _snapshot(data)
    overridden: dict[Path_, str] = {}
    for item in overrides:
        keys = _apply_override(data, item, written)
        overridden[keys] = f"--set {_visible(item)}"
    return overridden


def _snapshot(data: dict[str, Any]) -> dict[str, Any]:
    """The file's own top-level keys and its params, before any override."""
    params = data.get("params")
    job = data.get("job")
    declared = isinstance(job, dict) and bool(job.get("params_schema"))
    return {"keys": set(data), "params": _copy_keys(params) if isinstance(params, dict) else {},
            "declared": declared}  # the job declares its params: the check stage judges new ones


def _copy_keys(node: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): _copy_keys(v) if isinstance(v, dict) else None for k, v in node.items()}


def _apply_override(data: dict[str, Any], item: str, written: dict[str, Any] | None = None) -> Path_:
    shown = f"--set {_visible(item)}"
    dotted, keys, text = _split(item, shown)
    if written is not None:
        _check_names(keys, text, written, shown)
    value = _value(dotted, text, shown)
    runner = data.get("runner")
    if tuple(keys) == ("runner", "kind") and isinstance(runner, dict) and runner.get("kind", "local") != value:
        # The file's runner settings are its kind's (an ssh host, an EC2 region): another kind,
        # set on the command line, starts from its own defaults and the --set that follow.
        data["runner"] = {}
    node: Any = data
    for key in keys[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[key] = child
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set {_visible(dotted)}: {_visible(key)} is not a mapping",
                file="--set",
                setting=_visible(dotted),
                source=shown,
                fix=f"override {key} itself, or a key of a mapping",
            )
        node = child
    node[keys[-1]] = value
    return keys


def _split(item: str, shown: str) -> tuple[str, Path_, str]:
    """``a.b=value`` -> ("a.b", ("a", "b"), "value"), or a ConfigError about its form."""
    if len(item) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"the override is {len(item):,} characters long (at most {MAX_OVERRIDE_CHARS:,})",
                          file="--set", source=shown, fix="put large values in a file the job reads")
    refusal = _unprintable_refusal(item, "the override")
    if refusal is not None:
        raise ConfigError(refusal.message, file="--set", source=shown, fix=refusal.fix)
    if "=" not in item:
        raise ConfigError(
            f"override {_visible(item)!r} is not of the form a.b=value",
            file="--set",
            source=shown,
            fix="write --set job.command='python train.py' or --set params.epochs=2",
        )
    dotted, _, text = item.partition("=")
    dotted = dotted.strip()
    parts = dotted.split(".")
    keys = tuple(k for k in parts if k)
    if not keys:
        raise ConfigError(f"override {_visible(item)!r} names no setting", file="--set", source=shown,
                          fix="write --set a.b=value")
    if len(keys) > MAX_DEPTH:
        raise ConfigError(f"the setting is nested more than {MAX_DEPTH} deep", file="--set",
                          setting=_visible(dotted), source=shown, fix="name a setting of the config")
    if len(keys) != len(parts):
        raise ConfigError("the setting's name has an empty part (a leading, trailing or doubled '.')",
                          file="--set", setting=_visible(dotted), source=shown,
                          fix=f"join the names with single dots: --set {_visible('.'.join(keys))}={_visible(text)}")
    if not text.strip():
        raise ConfigError("no value after '='", file="--set", setting=_visible(dotted), source=shown,
                          fix=f"give a value, e.g. --set {_visible(dotted)}=2; for an empty string, quote it: "
                              f"--set '{_visible(dotted)}=\"\"'")
    return dotted, keys, text


def _value(dotted: str, text: str, shown: str) -> Any:
    """The override's value: ``text`` read as YAML, or a ConfigError naming the YAML problem."""
    fix = f"quote it as YAML if it is text: --set '{_visible(dotted)}=\"...\"'"
    try:
        value, _ = _parse(text)
    except _Refused as exc:
        raise ConfigError(f"its value: {exc.message}", file="--set", setting=_visible(dotted), source=shown,
                          fix=exc.fix) from None
    except _DuplicateKey as dup:
        raise ConfigError(f"its value sets {_visible(dup.key)!r} twice", file="--set", setting=_visible(dotted),
                          source=shown, fix="keep one of them") from None
    except yaml.YAMLError as exc:
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
        raise ConfigError(f"its value is not valid YAML: {_visible(problem, 200)}", file="--set",
                          setting=_visible(dotted), source=shown, fix=fix) from None
    if isinstance(value, str) and value.strip() == text.strip():
        try:  # YAML 1.1 reads 1e-4 as a string; on the command line it means a number
            value = float(value) if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()) else value
        except ValueError:
            pass
    return value


def _check_names(keys: Path_, text: str, written: dict[str, Any], shown: str) -> None:
    """Refuse a setting the file lacks that is a misspelling of one it has, or a param set at the top."""
    dotted = ".".join(keys)
    head = keys[0]
    if head not in RunConfig.model_fields and head not in written["keys"]:
        if head in written["params"]:
            near = "params." + ".".join(keys)
        else:
            close = difflib.get_close_matches(head, list(RunConfig.model_fields), n=1)
            near = ".".join((close[0], *keys[1:])) if close else ""
        if near:
            raise ConfigError("unknown setting", file="--set", setting=_visible(dotted), source=shown,
                              fix=f"did you mean {_visible(near)!r}? --set {_visible(near)}={_visible(text)}")
        return
    if head != "params" or written["declared"]:
        return
    node: dict[str, Any] | None = written["params"]
    for depth, key in enumerate(keys[1:], start=1):
        if node is None:
            return
        if key not in node:
            close = difflib.get_close_matches(key, list(node), n=1)
            if close:
                near = ".".join((*keys[:depth], close[0]))
                raise ConfigError(
                    f"the config's params has no {_visible(key)!r}", file="--set", setting=_visible(dotted),
                    source=shown,
                    fix=f"did you mean {_visible(near)!r}? --set {_visible(near)}={_visible(text)} "
                        f"(a new param is taken only if it is not a near-copy of one the file has)")
            return
        node = node[key]

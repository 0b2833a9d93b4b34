"""``--set a.b=value``: one override of the command line applied to the config's data."""

from __future__ import annotations

import re
from typing import Any

import yaml

from trainboard.backend.config_errors import ConfigError, Path_
from trainboard.backend.config_yaml import (
    MAX_DEPTH,
    MAX_OVERRIDE_CHARS,
    _DuplicateKey,
    _parse,
    _Refused,
    _unprintable_refusal,
    _visible,
)


def _apply_override(data: dict[str, Any], item: str) -> Path_:
    shown = f"--set {_visible(item)}"
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
    keys = tuple(k for k in dotted.split(".") if k)
    if not keys:
        raise ConfigError(f"override {_visible(item)!r} names no setting", file="--set", source=shown,
                          fix="write --set a.b=value")
    if len(keys) > MAX_DEPTH:
        raise ConfigError(f"the setting is nested more than {MAX_DEPTH} deep", file="--set",
                          setting=_visible(dotted), source=shown, fix="name a setting of the config")
    try:
        value, _ = _parse(text) if text.strip() else ("", {})
    except _Refused as exc:
        raise ConfigError(f"its value: {exc.message}", file="--set", setting=_visible(dotted), source=shown,
                          fix=exc.fix) from None
    except (yaml.YAMLError, _DuplicateKey):
        value = text  # not YAML: the text as it is
    if isinstance(value, str) and value.strip() == text.strip():
        try:  # YAML 1.1 reads 1e-4 as a string; on the command line it means a number
            value = float(value) if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()) else value
        except ValueError:
            pass
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

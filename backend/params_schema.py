"""The params a job declares: ``job.params_schema`` names a YAML file of the job's
params with their defaults, and the run's ``params`` are checked against it at the
check stage, before anything is provisioned.

A param the job does not declare (``epocs``) is refused with the nearest declared
name; a value of the wrong kind (``epochs: two`` where the default is ``1``) is
refused naming the kind the default has. A default of ``null`` accepts anything,
and a float accepts an integer. Nested mappings are checked key by key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainboard.backend.config_errors import ConfigError

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig

_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "true or false"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def load_schema(loaded: LoadedConfig, root: Path) -> dict[str, Any] | None:
    """The declared params, or None when the config declares none."""
    name = loaded.config.job.params_schema
    if not name:
        return None
    path = root / name
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise loaded.error("job.params_schema", f"no file {name!r} in {root}",
                           fix="name the YAML file of the job's params and their defaults, "
                               "relative to the repository root; or remove the setting") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise loaded.error("job.params_schema", f"{name} cannot be read as YAML: {str(exc).splitlines()[0]}",
                           fix="make it a YAML mapping of param names to their defaults") from None
    if not isinstance(data, dict):
        raise loaded.error("job.params_schema", f"{name} does not hold a mapping of params",
                           fix="make it a YAML mapping of param names to their defaults")
    return data


def check_params(loaded: LoadedConfig, root: Path) -> None:
    """Refuse a param the job does not declare, or one whose value is of the wrong kind."""
    schema = load_schema(loaded, root)
    if schema is not None:
        _check_mapping(loaded, loaded.config.params, schema, ("params",))


def _check_mapping(loaded: LoadedConfig, given: dict[str, Any], declared: dict[str, Any],
                   where: tuple[str, ...]) -> None:
    schema_file = loaded.config.job.params_schema
    for key, value in given.items():
        setting = ".".join((*where, str(key)))
        if key not in declared:
            near = difflib.get_close_matches(str(key), [str(k) for k in declared], n=1)
            fix = f"did you mean {'.'.join((*where, near[0]))!r}? " if near else ""
            fix += f"the job's params are listed in {schema_file}; add the param there if the job reads it"
            raise loaded.error(setting, f"the job declares no param {str(key)!r}", fix=fix)
        default = declared[key]
        if isinstance(default, dict) and isinstance(value, dict):
            _check_mapping(loaded, value, default, (*where, str(key)))
        elif not _same_kind(value, default):
            raise _kind_error(loaded, setting, value, default)


def _same_kind(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) or _reads_as_float(value)
    for kind, _ in _KINDS:
        if isinstance(default, kind):
            return isinstance(value, kind)
    return True


def _reads_as_float(value: Any) -> bool:
    """YAML 1.1 reads ``1e-4`` as a string; a job reading floats takes it."""
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _kind_error(loaded: LoadedConfig, setting: str, value: Any, default: Any) -> ConfigError:
    wanted = next((words for kind, words in _KINDS if isinstance(default, kind)), type(default).__name__)
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return loaded.error(setting, f"the job expects {wanted} (its default is {default!r}), got {shown[:80]}",
                        fix=f"write {wanted}, as in {loaded.config.job.params_schema}")

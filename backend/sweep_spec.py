"""Declaring a sweep: Hydra override text (``a,b``, ``range()``, ``choice()``,
``interval()``) expanded into members, each a set of ``--set`` overrides, and
the config validated for every member before anything starts."""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainboard.backend.config_errors import ConfigError

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig

SWEEP_FILE = "--sweep"
_COMMAND_LINE_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")
MODES = ("grid", "random")


@dataclass(frozen=True)
class Member:
    """One run of a sweep: its place in the sweep and the values it sets."""

    index: int
    values: tuple[tuple[str, Any], ...]  # (setting, value), in declaration order

    def overrides(self) -> list[str]:
        """The member's values as ``--set`` strings that ``load_config`` reads back."""
        return [f"{setting}={render_value(value)}" for setting, value in self.values]

    def label(self) -> str:
        return " ".join(self.overrides())


def render_value(value: Any) -> str:
    """A value as YAML flow text, so the ``--set`` parser reads back the same value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    text = text.strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text.endswith("..."):
        text = text[: -len("...")].strip()
    if isinstance(value, str) and _COMMAND_LINE_NUMBER.fullmatch(text):
        return "'" + text + "'"  # --set reads an unquoted 1e-4 as a number
    return text


@dataclass(frozen=True)
class _Axis:
    setting: str
    text: str
    values: tuple[Any, ...] = ()  # the listed values (grid or random draw among them)
    interval: tuple[Any, Any] | None = None  # (start, end) of interval(): random only


def _error(message: str, fix: str, setting: str = "", source: str = "") -> ConfigError:
    return ConfigError(message, file=SWEEP_FILE, setting=setting, fix=fix, source=source)


def _as_items(sweeps: list[str] | tuple[str, ...] | dict[str, str]) -> list[tuple[str, str]]:
    if isinstance(sweeps, dict):
        return [(str(k), str(v)) for k, v in sweeps.items()]
    items = []
    for item in sweeps:
        if "=" not in item:
            raise _error(f"sweep {item!r} is not of the form a.b=values",
                         "write --sweep params.learning_rate=1e-4,5e-5", source=f"--sweep {item}")
        setting, _, text = item.partition("=")
        items.append((setting.strip(), text.strip()))
    return items


def _check_setting(setting: str, text: str) -> None:
    parts = setting.split(".")
    if len(parts) < 2 or not all(part.strip() for part in parts):
        raise _error(f"{setting!r} is not a dotted setting path",
                     "name a setting of the config with its section, e.g. params.epochs",
                     setting=setting, source=f"--sweep {setting}={text}")


def _parse_axis(setting: str, text: str) -> _Axis:
    """One declared setting, parsed with Hydra's override grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException

    _check_setting(setting, text)
    source = f"--sweep {setting}={text}"
    if not text:
        raise _error("the sweep lists no values", "list values: a,b,c or range(1,4) or choice(a,b)",
                     setting=setting, source=source)
    try:
        override = OverridesParser.create().parse_overrides([f"{setting}={text}"])[0]
    except HydraException as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _error(f"not a valid sweep value: {first}",
                     "use Hydra's override grammar: a,b,c  range(1,4)  choice(a,b)  interval(0.1,0.5)",
                     setting=setting, source=source) from None
    if override.is_interval_sweep():
        sweep = override.value()
        assert isinstance(sweep, IntervalSweep)
        return _Axis(setting, text, interval=(sweep.start, sweep.end))
    values: tuple[Any, ...]
    if override.is_sweep_override():
        values = tuple(override.sweep_iterator())
    else:
        values = (override.value(),)
    if not values:
        raise _error("the sweep lists no values", "list at least one value, e.g. range(1,4) not range(4,1)",
                     setting=setting, source=source)
    return _Axis(setting, text, values=values)


def parse_axes(sweeps: list[str] | tuple[str, ...] | dict[str, str]) -> list[_Axis]:
    items = _as_items(sweeps)
    if not items:
        raise _error("the sweep declares no settings",
                     "declare at least one, e.g. --sweep params.learning_rate=1e-4,5e-5")
    seen: set[str] = set()
    for setting, text in items:
        if setting in seen:
            raise _error(f"{setting!r} is swept twice", "declare each setting once, with all its values",
                         setting=setting, source=f"--sweep {setting}={text}")
        seen.add(setting)
    return [_parse_axis(setting, text) for setting, text in items]


def _draw(axis: _Axis, rng: random.Random) -> Any:
    if axis.interval is None:
        return rng.choice(axis.values)
    start, end = axis.interval
    if isinstance(start, int) and isinstance(end, int):
        return rng.randint(start, end)
    return rng.uniform(float(start), float(end))


def expand(
    sweeps: list[str] | tuple[str, ...] | dict[str, str],
    mode: str = "grid",
    max_runs: int | None = None,
    seed: int = 0,
) -> list[Member]:
    """The sweep's members.

    ``sweeps`` is ``["params.lr=1e-4,5e-5", ...]`` (as ``--sweep`` gives) or
    ``{"params.lr": "1e-4,5e-5"}`` (the config's ``sweep.params``).

    * ``grid``: the cartesian product, the first declared setting varying
      slowest; ``max_runs`` keeps the first ``max_runs`` members of it.
      ``interval()`` is refused (a grid cannot enumerate it).
    * ``random``: ``max_runs`` members (required), each value drawn with
      ``random.Random(seed)``: one of the listed values, or uniform in
      ``interval(a,b)`` (an integer in ``[a, b]`` when both ends are ints).
      The same seed gives the same members.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown sweep mode {mode!r}", file=SWEEP_FILE, setting="sweep.mode",
                          fix="set sweep.mode to grid or random")
    if max_runs is not None and max_runs < 1:
        raise ConfigError(f"max_runs is {max_runs}; it must be at least 1", file=SWEEP_FILE,
                          setting="sweep.max_runs", fix="set sweep.max_runs to 1 or more, or leave it out")
    axes = parse_axes(sweeps)
    if mode == "grid":
        for axis in axes:
            if axis.interval is not None:
                raise _error("interval() can only be sampled, not listed in a grid",
                             "set sweep.mode to random with sweep.max_runs, or list values: a,b,c",
                             setting=axis.setting, source=f"--sweep {axis.setting}={axis.text}")
        combos = itertools.islice(itertools.product(*(axis.values for axis in axes)), max_runs)
        return [Member(i, tuple(zip((a.setting for a in axes), combo, strict=True)))
                for i, combo in enumerate(combos)]
    if max_runs is None:
        raise ConfigError("a random sweep needs max_runs (how many members to draw)", file=SWEEP_FILE,
                          setting="sweep.max_runs", fix="set sweep.max_runs, e.g. --set sweep.max_runs=8")
    rng = random.Random(seed)
    return [Member(i, tuple((axis.setting, _draw(axis, rng)) for axis in axes)) for i in range(max_runs)]


def validate_members(
    config_path: str | Path,
    base_overrides: list[str] | tuple[str, ...],
    members: list[Member],
    root: Path | None = None,
) -> list[LoadedConfig]:
    """Each member's config: the config loaded with its overrides (and, given the repository
    ``root``, its params checked against job.params_schema). The first member that does not
    validate raises a ConfigError naming it, its values and the reason."""
    from trainboard.backend.config import load_config
    from trainboard.backend.params_schema import check_params

    configs = []
    for member in members:
        try:
            loaded = load_config(config_path, [*base_overrides, *member.overrides()])
            if root is not None:
                check_params(loaded, root)
        except ConfigError as exc:
            raise ConfigError(
                f"sweep member {member.index} ({member.label()}) does not validate: {exc.message}",
                file=exc.file,
                line=exc.line,
                setting=exc.setting,
                fix=exc.fix or "change the sweep's values for that setting",
            ) from None
        configs.append(loaded)
    return configs


def plan(loaded: LoadedConfig, command_line: list[str] | tuple[str, ...], root: Path) -> tuple[
        list[Member], list[LoadedConfig]]:
    """The members of the sweep ``loaded`` (its ``sweep.params``) and ``--sweep`` declare (the
    command line wins for a setting both name), and each member's validated config.
    No members (neither declares one): ``([], [])``, a single run."""
    declared = dict(loaded.config.sweep.params)
    for setting, text in _as_items(list(command_line)):
        declared.pop(setting, None)
        declared[setting] = text
    if not declared:
        return [], []
    cfg = loaded.config.sweep
    if cfg.objective and cfg.objective not in loaded.config.metrics:
        raise loaded.error("sweep.objective", f"{cfg.objective!r} is not one of the metrics",
                           fix=f"name one of: {', '.join(loaded.config.metrics)}, or leave it out")
    members = expand(declared, cfg.mode, cfg.max_runs, cfg.seed)
    return members, validate_members(loaded.path, loaded.overrides, members, root)

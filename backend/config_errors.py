"""The config's errors: :class:`ConfigError`, the one a user sees, and the
validators' own, which name the setting a rule across settings blames."""

from __future__ import annotations

Path_ = tuple[str, ...]


class ConfigError(Exception):
    """A config problem a user can fix. ``str()`` is the whole message."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        setting: str = "",
        fix: str = "",
        source: str = "",
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.setting = setting
        self.fix = fix
        self.source = source  # "--set a.b=..." when the value came from the command line
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.source:
            where = f"{where} (overridden by {self.source})" if self.line else self.source
        head = f"{where}: {self.setting}: {self.message}" if self.setting else f"{where}: {self.message}"
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class _SettingError(ValueError):
    """A rule across settings, blamed on one of them."""

    def __init__(self, setting: str, message: str, fix: str) -> None:
        self.setting, self.message, self.fix = setting, message, fix
        super().__init__(message)


class _GateError(ValueError):
    def __init__(self, key: str, known: list[str]) -> None:
        self.key = key
        self.known = known
        super().__init__(f"gate for unknown metric {key!r}")

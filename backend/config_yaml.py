"""The strict YAML reader of config files and ``--set`` values.

The loader refuses, quickly and with a line, what it cannot handle: a file over
MAX_FILE_BYTES (checked before it is read whole), NUL and other control
characters, text that is not UTF-8, values nested deeper than MAX_DEPTH, more
than MAX_VALUES values once aliases are expanded (so "billion laughs" stops at
the alias that crosses the budget, in milliseconds), recursive aliases, numbers
written with more than MAX_NUMBER_CHARS characters and mapping keys that are
not names. The file is parsed once: libyaml scans it, and the document is
composed here, where the limits are counted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from trainboard.backend.config_errors import ConfigError, Path_

MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 20_000
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
MAX_OVERRIDE_CHARS = 64 * 1024

# C0 and C1 controls but tab, LF and CR; DEL; the line and paragraph separators
# (YAML counts them as line breaks, editors do not); bidirectional overrides (they
# make text read differently from what it is); BOM past the start; non-characters.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ufeff\ufffe\uffff\ud800-\udfff]")
_LINE_BREAK = re.compile(r"\r\n?|\n")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """Input the loader will not take, at a 1-based line (None where the text has no lines)."""

    def __init__(self, message: str, fix: str, line: int | None = None) -> None:
        self.message, self.fix, self.line = message, fix, line
        super().__init__(message)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        self.key, self.line, self.first = key, line, first


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X}" + (" (NUL)" if char == "\0" else "")


def _visible(text: str, limit: int = 80) -> str:
    """``text`` fit for a message: control characters escaped, long text cut."""
    shown = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _unprintable_refusal(text: str, what: str, columns: bool = True) -> _Refused | None:
    """A refusal of the first control character in ``text``, at its line (and column)."""
    match = _UNPRINTABLE.search(text)
    if match is None:
        return None
    index = match.start()
    line = len(_LINE_BREAK.findall(text, 0, index)) + 1
    column = index - max(text.rfind("\n", 0, index), text.rfind("\r", 0, index))
    where = f" (column {column})" if columns else ""
    return _Refused(f"{what} holds the control character {_char_name(match.group())}{where}",
                    "delete it (most editors do not show it); a config is plain text", line)


try:  # libyaml scans and parses in C, about four times faster than PyYAML's Python parser
    from yaml._yaml import CParser as _Events
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _LineLoader(_Events, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader that composes in Python, counting values, depth and alias expansion,
    and refuses duplicate keys (YAML would silently keep the last) and keys that are not names."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.values = 0  # values composed so far, each alias counted as the values it stands for
        self.depth = 0
        self.sizes: dict[str, int] = {}  # anchor -> the values its node holds (set once composed)

    get_single_node = yaml.composer.Composer.get_single_node  # not libyaml's: it composes in C, uncounted

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event: Any = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor in self.anchors:  # else Composer says "found undefined alias"
                size = self.sizes.get(anchor)
                if size is None:
                    raise _Refused(f"the alias *{_visible(anchor)} is inside the value it refers to "
                                   "(a recursive alias)",
                                   "write the value out, or anchor a value that does not contain its alias", line)
                self._count(size, line, anchor)
            return super().compose_node(parent, index)  # type: ignore[return-value]
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"values are nested more than {MAX_DEPTH} deep",
                           "flatten the structure; a config this deep is not one a person wrote", line)
        before = self.values
        self._count(1, line, "")
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[str(event.anchor)] = self.values - before
        return node  # type: ignore[return-value]

    def _count(self, size: int, line: int, alias: str) -> None:
        self.values += size
        if self.values > MAX_VALUES:
            if alias:
                raise _Refused(f"the alias *{_visible(alias)} expands beyond {MAX_VALUES:,} values "
                               "(aliases that repeat aliases grow exponentially)",
                               "write the values out, or use fewer aliases", line)
            raise _Refused(f"more than {MAX_VALUES:,} values", "keep data out of the config: put it in a file "
                           "the job reads, and name that file in params", line)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise _Refused(f"a number written with {len(node.value):,} characters (at most {MAX_NUMBER_CHARS})",
                           "write a number of sensible size; quote it if it is meant as text", line)
        try:
            value = super().construct_object(node, deep=deep)
        except (_Refused, _DuplicateKey, yaml.YAMLError):
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:  # e.g. !!timestamp 2024-13-01, !!float abc
            raise _Refused(f"cannot read this value: {_visible(str(exc))}",
                           "write a plain value; quote it to make it text", line) from None
        if isinstance(value, str):  # escapes in double quotes ("\0", "\x07") make what the text did not show
            refusal = _unprintable_refusal(value, "this value (through an escape)", columns=False)
            if refusal is not None:
                refusal.line = line
                raise refusal
        return value


def _key_kind(key: Any) -> str:
    if isinstance(key, bool):
        return "true/false (YAML reads yes, no, on and off as booleans)"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return "a number"
    if isinstance(key, list | tuple):
        return "a list"
    if isinstance(key, dict):
        return "a mapping"
    return f"a {type(key).__name__}"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *base`: SafeConstructor merges it below
            continue
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            fix = (f"quote it: '{_visible(str(key_node.value))}': ..." if isinstance(key_node, yaml.ScalarNode)
                   else "write a name before the colon; a list or a mapping cannot be a key")
            raise _Refused(f"a key must be a name, and this one is {_key_kind(key)}", fix, line)
        if key in seen:
            raise _DuplicateKey(key, line, seen[key])
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[type-var]


def _parse(text: str) -> tuple[Any, dict[Path_, int]]:
    """YAML ``text`` -> (data, line map), within the limits above. Raises _Refused,
    _DuplicateKey, yaml.YAMLError."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        lines = _line_map(node)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    _check_keys(data, lines)
    return data, lines


def _check_keys(data: Any, lines: dict[Path_, int], path: Path_ = ()) -> None:
    """Every mapping key a name, wherever it came from (merges included)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise _Refused(f"{'.'.join(path) or 'the top level'}: a key must be a name, and one is "
                               f"{_key_kind(key)}", "quote the key", _line_of(lines, path))
            _check_keys(value, lines, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_keys(item, lines, (*path, str(index)))


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path``, or of the nearest written setting above it."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _line_map(node: yaml.Node | None, path: Path_ = (), out: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """Every setting's dotted path -> the 1-based line where it is written."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # not a name: construction refuses it, with its line
            key_path = (*path, str(key_node.value))
            if key_path in out:  # name the whole path: `command` alone could be anywhere
                raise _DuplicateKey(".".join(key_path), key_node.start_mark.line + 1, out[key_path])
            out[key_path] = key_node.start_mark.line + 1
            _line_map(value_node, key_path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            out[item_path] = item.start_mark.line + 1
            _line_map(item, item_path, out)
    return out


def _read(path: Path, shown: str) -> str:
    """The file's text: at most MAX_FILE_BYTES, UTF-8, no control characters."""
    try:
        with path.open("rb") as handle:  # read no more than the cap: /dev/zero is a "file" too
            blob = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            "no such file", file=shown, fix="pass the path of your params file, e.g. sample_params.yaml"
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a file", file=shown,
                          fix="pass the path of your params file, e.g. sample_params.yaml") from None
    except (OSError, ValueError) as exc:  # permissions, a name too long, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read it: {reason}", file=shown, fix="pass a readable file") from None
    if len(blob) > MAX_FILE_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; the limit is passed on this line",
            file=shown, line=len(_LINE_BREAK.findall(blob[:MAX_FILE_BYTES].decode("latin-1"))) + 1,
            fix="keep data out of the config: put it in a file the job reads, and name that file in params")
    nul = blob.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"a NUL byte at offset {nul}: this is not a text file",
                          file=shown, line=len(_LINE_BREAK.findall(blob[:nul].decode("latin-1"))) + 1,
                          fix="pass the YAML config, saved as UTF-8 text")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: byte 0x{blob[exc.start]:02x} at offset {exc.start}", file=shown,
                          line=len(_LINE_BREAK.findall(blob[: exc.start].decode("latin-1"))) + 1,
                          fix="save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark at the start is allowed
    refusal = _unprintable_refusal(text, "this line")
    if refusal is not None:
        raise ConfigError(refusal.message, file=shown, line=refusal.line, fix=refusal.fix)
    return text

"""Secrets never reach a view, a report, a PR or a file: replace their values with ***.

Two halves:

* :class:`Redactor` masks text: the known secret values (and the forms a job
  prints them in: URL-encoded, JSON-escaped, base64 at any alignment inside a
  longer blob) and token shapes that are secret wherever they appear.
* :func:`mask_config` / :func:`mask_overrides` give the copy of a run's config
  that may be written down (the run record): values under secret-named keys
  and every ``job.env`` value become ``***``. :func:`unmask_config` fills them
  back from sources that are not files trainboard wrote (the config file, the
  running job's own environment).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
# Environment variables (and config keys) whose values are secret, by name.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
# Shapes that are secret wherever they appear. Before a regex runs over a batch,
# cheap tests rule it out: a single character every match holds (found with
# memchr, ~0.03 ms a MiB), then the literal prefixes (~0.8 ms a MiB each).
SECRET_SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = (
    ("A", ("AKIA", "ASIA"), re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),  # AWS access key ids
    # GitHub: classic tokens (ghp_, gho_, ...) and fine-grained ones (github_pat_)
    ("_", ("gh", "github_pat_"), re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
)
# Config keys whose values are secret: the same words, as words of the key (snake, kebab or
# camel case), so that `tokenizer` or `max_tokens` are not taken for secrets.
SECRET_KEY = re.compile(r"(?<![a-z])(token|secrets?|password|passwd|api_?key|access_?key|private_?key"
                        r"|credentials?)(?![a-z])")
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
MIN_ANCHOR = 4  # the shortest alphanumeric run used as a secret's cheap pre-test
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_URLSAFE = str.maketrans("+/", "-_")


def is_secret_name(name: str) -> bool:
    """An environment variable's name that says its value is secret (SECRET_NAME)."""
    return bool(SECRET_NAME.search(name))


def is_secret_key(key: str) -> bool:
    """A config key that says its value is secret: ``token``, ``HF_TOKEN``, ``apiKey``,
    ``db-password``, ``credentials`` (SECRET_KEY)."""
    return bool(SECRET_KEY.search(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()))


def _base64_middles(data: bytes) -> set[str]:
    """What ``data`` looks like inside any longer base64 text, standard and urlsafe.

    Embedded at a byte offset k (mod 3), the characters that carry only its own
    bits are the same whatever surrounds it: the stable middle, one per alignment.
    """
    found: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode("ascii")
        start = -(-8 * k // 6)  # the first character with no bit of the k bytes before
        end = 8 * (k + len(data)) // 6  # after the last one with no bit of what follows
        middle = encoded[start:end]
        found.update((middle, middle.translate(_URLSAFE)))
    return found


def encoded_forms(value: str) -> set[str]:
    """The value and the forms a job prints it in: percent-encoded (quote, quote_plus),
    JSON-escaped (ASCII or not, ``\\/`` too), and base64 (standard, urlsafe, any alignment)."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    for ascii_only in (True, False):
        escaped = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.update((escaped, escaped.replace("/", "\\/")))
    forms |= _base64_middles(value.encode("utf-8"))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _anchor(form: str) -> str:
    """A substring every occurrence of ``form`` holds, shared by as many forms as possible:
    its longest alphanumeric run (percent-encoding and JSON escaping leave those alone)."""
    run = max(_ALNUM_RUN.findall(form), key=len, default="")
    return run if len(run) >= MIN_ANCHOR else form


class Redactor:
    """Masks known secret values (in every encoded form) and secret-shaped strings in text.

    Call it on a text, or on a batch with :meth:`lines`.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            # A multi-line value (a PEM key) reaches a log line by line: each line is one too.
            values.update(part.strip() for part in secret.splitlines())
        values = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
        self.secrets = frozenset(values)
        forms = sorted({f for v in values for f in encoded_forms(v)}, key=lambda f: (-len(f), f))
        self._forms = tuple(forms)
        # The cheap test before the regex: one substring search per anchor (none that
        # holds a shorter one: the shorter is found wherever the longer is). The value's
        # own longest alphanumeric run stands for its URL and JSON forms too.
        raw_anchor = {v: _anchor(v) for v in values}
        candidates = set(raw_anchor.values())
        for v in values:
            if raw_anchor[v] == v:  # no run long enough: each form is its own anchor
                candidates |= {_anchor(f) for f in encoded_forms(v)}
            else:
                candidates |= {_anchor(f) for f in _base64_middles(v.encode("utf-8"))
                               if len(f) >= MIN_SECRET_LENGTH}
        anchors: list[str] = []
        for anchor in sorted(candidates, key=len):
            if not any(a in anchor for a in anchors):
                anchors.append(anchor)
        self._anchors = tuple(anchors)
        self._pattern = re.compile("|".join(re.escape(f) for f in forms)) if forms else None

    @classmethod
    def from_env(cls, *envs: Mapping[str, str], extra: Iterable[str] = ()) -> Redactor:
        """Secrets are the values of variables named like TOKEN, SECRET, PASSWORD, KEY (and ``extra``)."""
        sources = envs or (os.environ,)
        return cls([*(v for env in sources for k, v in env.items() if is_secret_name(k)), *extra])

    @classmethod
    def for_config(cls, raw: Any, *envs: Mapping[str, str]) -> Redactor:
        """A run's: secret-named variables of ``envs`` (default: this environment) and of
        ``job.env``, and the values under secret-named keys anywhere in the config."""
        sources = envs or (os.environ,)
        env = (raw.get("job") or {}).get("env") if isinstance(raw, dict) else None
        job_env = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        return cls.from_env(*sources, job_env, extra=config_secrets(raw))

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """This redactor's secrets and ``secrets``."""
        more = set(secrets) - self.secrets
        return Redactor([*self.secrets, *more]) if more else self

    def __call__(self, text: str) -> str:
        if self._pattern is not None and any(a in text for a in self._anchors):
            text = self._pattern.sub(MASK, text)
        for char, prefixes, shape in SECRET_SHAPES:
            if char in text and any(p in text for p in prefixes):
                text = shape.sub(MASK, text)
        return text

    def lines(self, lines: list[str]) -> list[str]:
        """A batch at once: one scan of the joined text decides whether any line needs work."""
        joined = "\n".join(lines)
        cleaned = self(joined)
        if cleaned is joined:
            return lines
        split = cleaned.split("\n")
        # A secret that spans lines would merge them: then mask line by line.
        return split if len(split) == len(lines) else [self(line) for line in lines]

    def data(self, value: Any) -> Any:
        """A JSON-like value with every string in it masked (keys too)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


# --------------------------------------------------------------------------- the config, written down


def _scalars(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def config_secrets(raw: Any) -> list[str]:
    """The values under secret-named keys anywhere in a config (``job.env``'s included)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and is_secret_key(key):
                    found.extend(_scalars(item))
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(raw)
    return [v for v in found if v != MASK]


def _masked_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked_tree(v) for v in value]
    return value if value is None or isinstance(value, bool) else MASK


def mask_config(raw: Any, all_env: bool = True) -> Any:
    """The config as a record may keep it: a copy with the values under secret-named
    keys, and every ``job.env`` value (what a job's credentials travel in), as ``***``.
    With ``all_env`` False, only the secret-named ``job.env`` variables (SECRET_NAME)."""

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                secret = isinstance(key, str) and is_secret_key(key)
                in_env = path == ("job", "env") and (all_env or is_secret_name(str(key)))
                out[key] = _masked_tree(item) if secret or in_env else walk(item, (*path, str(key)))
            return out
        if isinstance(value, list | tuple):
            return [walk(item, path) for item in value]
        return value

    return walk(raw, ())


def mask_overrides(overrides: Iterable[str]) -> list[str]:
    """``--set`` values as a record may keep them: ``job.env.*`` and secret-named settings masked."""
    out = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        secret = parts[:2] == ["job", "env"] or any(is_secret_key(p) for p in parts)
        out.append(f"{key}={MASK}" if sep and secret else item)
    return out


def unmask_config(masked: Any, *sources: Any) -> Any:
    """``masked`` with each ``***`` filled from the first source that has a value at the
    same place (a source: a config as loaded, or ``{"job": {"env": the job's environment}}``).
    What no source knows stays ``***``."""

    def at(source: Any, path: tuple[Any, ...]) -> Any:
        for key in path:
            if isinstance(source, dict) and key in source:
                source = source[key]
            elif isinstance(source, list) and isinstance(key, int) and key < len(source):
                source = source[key]
            else:
                return MASK
        return source

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if value != MASK:
            return value
        for source in sources:
            found = at(source, path)
            if found != MASK and not isinstance(found, dict | list):
                return found
        return value

    return walk(masked, ())


def masked_config_file(text: str) -> str:
    """A config file's text as a copy of it may be written (the runner's workspace): unchanged
    when it holds no secret; else its settings as YAML (without the comments), with the values
    of secret-named keys and ``job.env`` variables masked, and those values masked wherever
    else they appear in it."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "# (trainboard: the config could not be read, so it is not copied)\n"
    want = mask_config(data, all_env=False)
    if want == data:
        return text
    env = (data.get("job") or {}).get("env") if isinstance(data, dict) else None
    values = config_secrets(data)
    if isinstance(env, dict):
        values += [str(v) for k, v in env.items() if is_secret_name(str(k)) and v is not None]
    header = "# the run's config with its secrets masked (written by trainboard)\n"
    return header + yaml.safe_dump(Redactor(values).data(want), sort_keys=False, allow_unicode=True)

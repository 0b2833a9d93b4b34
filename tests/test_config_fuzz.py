"""The config loader under hostile input: it loads, or it says ConfigError with a place.

Three layers:

- each input from the fault report (issue 9, item 6) as its own case, in process:
  the line or setting it names, and the time it takes;
- a property-based fuzz (hypothesis, derandomized, bounded): config documents
  built from the schema with random corruptions, raw text and bytes, and `--set`
  values; each loads or raises ConfigError naming a line or a setting, never
  anything else;
- a sample through the real CLI (`trainboard run F --no-tui`): exit 2, the file
  and line on stderr, no traceback, under 2 s, nothing created.

``benchmarks/fuzz_config.py`` runs the same generators in bulk and prints the counts.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.test_config import GOOD
from trainboard.backend.config import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, ConfigError, load_config
from trainboard.backend.exitcodes import ExitCode

BASE: dict[str, Any] = yaml.safe_load(GOOD)
LIMIT_S = 2.0  # the goal: every refusal in under 2 s


def laughs(levels: int = 9, indent: str = "") -> str:
    """Billion laughs: each anchor a list of ten aliases of the one before (10**levels strings)."""
    out = [f'{indent}l0: &l0 "lol"']
    for i in range(1, levels + 1):
        out.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(out) + "\n"


def with_params(body: str) -> str:
    """GOOD with a params section (its first entry on line 15) holding ``body``, indented."""
    return GOOD + "params:\n" + "".join(f"  {line}\n" for line in body.split("\n") if line)


def below_command(line: str) -> str:
    """GOOD with ``line`` (or lines) added to job, below its command (at line 6)."""
    cmd = "  command: python job.py"
    return GOOD.replace(cmd, f"{cmd}\n{line}")


# --------------------------------------------------------------------------- the reported inputs


@dataclass(frozen=True)
class Hostile:
    id: str
    content: str | bytes | Callable[[], bytes]  # a callable: built when used (the 50 MB file)
    line: int | None  # the line the message names; None: a --set argument, named instead
    needle: str
    overrides: tuple[str, ...] = ()
    setting: str = ""


HOSTILE = [
    Hostile("bell-in-a-name", GOOD.replace("name: bad", "name: a\x07b"), 1, "control character U+0007"),
    Hostile("nul-byte", GOOD + "x\0y\n", 14, "NUL byte"),
    Hostile("nul-through-an-escape", with_params('x: "a\\0b"'), 15, "U+0000 (NUL)"),
    Hostile("escape-character-raw", with_params("x: \x1b[31mred"), 15, "U+001B"),
    Hostile("del-character", with_params("x: a\x7fb"), 15, "U+007F"),
    Hostile("c1-next-line", with_params("x: a\x85b"), 15, "U+0085"),
    Hostile("line-separator", with_params("x: a\u2028b"), 15, "U+2028"),
    Hostile("bidi-override", with_params("x: a\u202eb"), 15, "U+202E"),
    Hostile("not-utf8", (GOOD + "x: caf\xe9\n").encode("latin-1"), 14, "not UTF-8"),
    Hostile("utf16", GOOD.encode("utf-16"), 1, "NUL byte"),
    Hostile("billion-laughs", with_params(laughs()), 20, "expands beyond"),
    Hostile("billion-laughs-at-top", GOOD + laughs(), 19, "expands beyond"),
    Hostile("recursive-alias-mapping", GOOD + "params: &p\n  x: *p\n", 15, "recursive alias"),
    Hostile("recursive-alias-list", with_params("x: &s [1, *s]"), 15, "recursive alias"),
    Hostile("undefined-alias", with_params("x: *nowhere"), 15, "not valid YAML"),
    Hostile("nesting-20000-flow", with_params("x: " + "[" * 20000 + "]" * 20000), 15, "nesting depth"),
    Hostile("nesting-100-mappings", with_params("x: " + "{a: " * 100 + "1" + "}" * 100), 15,
            f"nested more than {MAX_DEPTH} deep"),
    Hostile("nesting-100-block", GOOD + "params:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(100)),
            15 + MAX_DEPTH - 2, f"nested more than {MAX_DEPTH} deep"),
    Hostile("list-as-key", with_params("? [a, b]\n: 1"), 15, "this one is a list"),
    Hostile("mapping-as-key", with_params("{a: 1}: 2"), 15, "this one is a mapping"),
    Hostile("number-as-key", with_params("1: 2"), 15, "this one is a number"),
    Hostile("boolean-as-key", with_params("on: 2"), 15, "this one is true/false"),
    Hostile("null-as-key", with_params("~: 2"), 15, "this one is null"),
    Hostile("number-as-setting-key", GOOD.replace("  kind: local", "  1: local"), 3, "this one is a number"),
    Hostile("number-5000-digits", with_params("x: " + "9" * 5000), 15, "5,000 characters"),
    Hostile("sexagesimal-3000", with_params("x: " + "1:" * 3000 + "1"), 15, "6,001 characters"),
    Hostile("bad-timestamp", with_params("x: !!timestamp 2024-13-01"), 15, "cannot read this value"),
    Hostile("bad-float-tag", with_params("x: !!float abc"), 15, "cannot read this value"),
    Hostile("python-tag", with_params("x: !!python/object/apply:os.system [true]"), 15, "not valid YAML"),
    Hostile("file-50mb", lambda: b"name: '" + b"x" * (50 * 1024 * 1024) + b"'\n", 1, "larger than 1024 KiB"),
    Hostile("file-over-the-cap-many-lines", lambda: b"# pad\n" * (MAX_FILE_BYTES // 6 + 10),
            MAX_FILE_BYTES // 6 + 1, "larger than 1024 KiB"),
    Hostile("more-values-than-the-budget", with_params("x: [" + "1," * MAX_VALUES + "1]"), 15,
            f"more than {MAX_VALUES:,} values"),
    Hostile("two-documents", GOOD + "---\nname: other\n", 14, "not valid YAML"),
    Hostile("top-level-a-string", "just text\n", 1, "top level must be a mapping"),
    Hostile("bool-for-number", below_command("  timeout_minutes: true"), 6, "valid number",
            setting="job.timeout_minutes"),
    Hostile("quoted-number-for-number", GOOD.replace("poll_interval: 0.2", 'poll_interval: "0.2"'), 8,
            "valid number", setting="mlflow.poll_interval"),
    Hostile("infinite-number", GOOD.replace("poll_interval: 0.2", "poll_interval: .inf"), 8,
            "finite number", setting="mlflow.poll_interval"),
    Hostile("number-for-bool", GOOD.replace("  kind: local", "  kind: ec2\n  fallback_to_on_demand: 1"), 4,
            "valid boolean", setting="runner.fallback_to_on_demand"),
    Hostile("env-key-with-equals", below_command("  env:\n    A=B: x"), 7, "not a name an environment variable",
            setting="job.env.A=B"),
    Hostile("env-key-with-space", below_command("  env:\n    A B: x"), 7, "not a name an environment variable"),
    Hostile("env-key-leading-digit", below_command("  env:\n    1A: x"), 7, "not a name an environment variable"),
    Hostile("env-key-with-nul", below_command('  env:\n    "A\\0B": x'), 7, "U+0000 (NUL)"),
    Hostile("env-value-with-nul", below_command('  env:\n    A: "x\\0y"'), 7, "U+0000 (NUL)"),
    Hostile("tracking-uri-file-relative", GOOD.replace("sqlite:///.trainboard/mlflow.db", "file:./mlruns"), 7,
            "file store (file:) is in maintenance mode", setting="mlflow.tracking_uri"),
    Hostile("tracking-uri-file-absolute", GOOD.replace("sqlite:///.trainboard/mlflow.db", "file:///tmp/mlruns"),
            7, "use sqlite:///", setting="mlflow.tracking_uri"),
    # --set: the argument is the place.
    Hostile("set-recursive-alias", GOOD, None, "recursive alias", ("params.x=&a [1, *a]",), "params.x"),
    Hostile("set-billion-laughs", GOOD, None, "expands beyond",
            ("params.x={" + laughs(7).replace("\n", ", ").rstrip(", ") + "}",), "params.x"),
    Hostile("set-deep-value", GOOD, None, f"nested more than {MAX_DEPTH} deep",
            ("params.x=" + "[" * 100 + "]" * 100,), "params.x"),
    Hostile("set-number-5000-digits", GOOD, None, "5,000 characters", ("params.x=" + "9" * 5000,), "params.x"),
    Hostile("set-deep-setting", GOOD, None, f"nested more than {MAX_DEPTH} deep",
            ("params" + ".a" * 100 + "=1",)),
    Hostile("set-nul", GOOD, None, "U+0000 (NUL)", ("params.x=a\0b",)),
    Hostile("set-control-in-name", GOOD, None, "U+0007", ("params.a\x07b=1",)),
    Hostile("set-huge", GOOD, None, "characters long", ("params.x=" + "x" * 100_000,)),
    Hostile("set-list-key", GOOD, None, "this one is a list", ("params.x={[a]: 1}",), "params.x"),
    Hostile("set-env-key-leading-digit", GOOD, 4, "not a name an environment variable", ("job.env.1A=x",)),
    Hostile("set-bool-for-number", GOOD, 8, "valid number", ("mlflow.poll_interval=true",),
            "mlflow.poll_interval"),
    Hostile("set-file-store", GOOD, 7, "file store", ("mlflow.tracking_uri=file:/tmp/x",), "mlflow.tracking_uri"),
]


def write(path: Path, content: str | bytes | Callable[[], bytes]) -> None:
    if callable(content):
        content = content()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def assert_placed(err: ConfigError, path: Path, text_lines: int | None = None) -> None:
    """``err`` names a line of ``path``, or a setting, or the --set argument; and a fix."""
    assert err.file in (str(path), "--set"), err
    if err.line is not None:
        assert err.line >= 1, err
        if text_lines is not None:
            assert err.line <= text_lines + 1, (err.line, text_lines, str(err))
    else:
        assert err.setting or err.source, err
    assert err.fix, err
    assert "Traceback" not in str(err)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_hostile_input_is_refused_quickly_with_its_place(tmp_path: Path, case: Hostile) -> None:
    path = tmp_path / "hostile.yaml"
    write(path, case.content)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path, list(case.overrides))
    elapsed = time.perf_counter() - started
    err = info.value
    assert case.needle in str(err), str(err)
    assert_placed(err, path)
    assert err.line == case.line, str(err)
    if case.line is not None:
        assert f"{path}:{case.line}" in str(err), str(err)
    else:
        assert str(err).startswith("--set "), str(err)  # the argument, shown escaped and cut
        assert "\0" not in str(err) and "\x07" not in str(err)
        assert len(str(err)) < 1000
    if case.setting:
        assert err.setting == case.setting, str(err)
    assert elapsed < LIMIT_S, f"{case.id}: {elapsed:.2f} s"


def test_a_folder_and_a_device_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="larger than"):  # read up to the cap, not forever
        load_config("/dev/zero")
    assert time.perf_counter() - started < LIMIT_S


def test_what_stays_valid(tmp_path: Path) -> None:
    """The limits leave ordinary YAML alone: anchors, merges, a BOM, CRLF, tabs in values, unicode."""
    text = GOOD.replace("name: bad", "name: modèle ✓") + (
        "params:\n"
        "  base: &base {lr: 0.1, layers: [64, 64]}\n"
        "  small:\n"
        "    <<: *base\n"
        "    lr: 0.01\n"
        "  again: *base\n"
        '  sep: "a\\tb"\n'
        "  big: 123456789012345678901234567890\n"
    )
    path = tmp_path / "ok.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    loaded = load_config(path, ["params.tag=&t [1, 2]", "job.env.HF_HOME=/tmp/hf"])
    params = loaded.config.params
    assert params["small"] == {"lr": 0.01, "layers": [64, 64]}
    assert params["again"] == params["base"]
    assert params["sep"] == "a\tb" and params["tag"] == [1, 2]
    assert loaded.config.name == "modèle ✓"
    assert loaded.config.job.env == {"HF_HOME": "/tmp/hf"}
    assert loaded.lines[("params", "small", "lr")] == 18  # lines count CRLF once


# --------------------------------------------------------------------------- generators
#
# Plain functions of a random.Random, so the fuzz below (hypothesis drives the
# Random) and benchmarks/fuzz_config.py (a seeded Random) share them.

SNIPPETS = [
    "\x07", "\0", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\ud7ff", "\t", "\r",
    "&a [*a]", "*nowhere", "&x", "!!timestamp 2024-13-01", "!!float x", "!!int x", "!!binary %%",
    "!!python/name:os.system", "!!set {a, b}", "!!omap [a: 1]", "<<: *nope", "<<: [1]",
    "? [a]\n: 1", "? {a: 1}\n: 1", "1: x", "on: x", "~: x", "9" * 5000, "1:" * 200 + "1", ".inf", ".nan",
    "[" * 200, "]" * 5, "{" * 70 + "}" * 70, "[" * 70 + "]" * 70, "---", "...", "%YAML 1.1", "%TAG ! x",
    "'", '"', "|", ">", "-", ":", "? ", "#", "@", "`", "\\", '"\\x07"', '"\\0"', '"\\ud800"', "\n  \n", "\n\t",
    "true", "false", "null", "1", "-1", "0.0", "1e999", "''", "[]", "{}", "file:./mlruns", "A=B: x",
]

SETTINGS_PATHS = [
    ("name",), ("runner",), ("runner", "kind"), ("runner", "host"), ("runner", "port"), ("runner", "market"),
    ("runner", "keepalive_seconds"), ("runner", "disk_gb"), ("runner", "tags"), ("runner", "fallback_to_on_demand"),
    ("job",), ("job", "command"), ("job", "setup"), ("job", "env"), ("job", "env", "A"), ("job", "timeout_minutes"),
    ("job", "workdir"), ("job", "outputs"), ("mlflow",), ("mlflow", "tracking_uri"), ("mlflow", "poll_interval"),
    ("mlflow", "experiment"), ("metrics",), ("metrics", "f1"), ("metrics", "f1", "goal"), ("metrics", "f1", "digits"),
    ("compare",), ("compare", "gates"), ("compare", "gates", "f1"), ("compare", "gates", "f1", "min"),
    ("params",), ("params", "x"), ("report", "log_lines"), ("dvc", "outputs"), ("dvc", "remote"),
    ("github", "publish"), ("github", "repo"), ("unknown",), ("job", "unknown"),
]


def random_text(rng: random.Random, size: int = 12) -> str:
    """Short text, sometimes with control characters, quotes or unicode."""
    pool = "abc xyz_-.:/=#&*!|>'\"{}[],?%@`\\0123456789\t\n\x00\x07\x1b\x7f\x85é✓\u2028\u202e\ufeff"
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, size)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**64, rng.randint(-10**6, 10**6)])
    if kind == 3:
        return rng.choice([0.0, -0.5, 1e-9, 1e308, float("inf"), float("-inf"), float("nan"), rng.random()])
    if kind in (4, 5, 6, 7):
        return random_text(rng)
    if kind in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_text(rng, 6) or "k": random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _set_path(doc: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node: Any = doc
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def _drop_path(doc: dict[str, Any], keys: tuple[str, ...]) -> None:
    node: Any = doc
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(keys[-1], None)


def corrupt_text(rng: random.Random, text: str) -> str:
    """``text`` with a snippet or random characters put in, or a piece cut out, at random places."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(text))
        move = rng.randrange(4)
        if move == 0:
            text = text[:at] + rng.choice(SNIPPETS) + text[at:]
        elif move == 1:
            text = text[:at] + random_text(rng, 8) + text[at:]
        elif move == 2:
            text = text[:at] + text[at + rng.randint(1, 20):]
        else:  # a snippet as the value of a line's key
            lines = text.split("\n")
            index = rng.randrange(len(lines))
            head, colon, _ = lines[index].partition(":")
            if colon:
                lines[index] = f"{head}: {rng.choice(SNIPPETS)}"
            text = "\n".join(lines)
    return text


def corrupted_document(rng: random.Random) -> str:
    """A config built from the schema's settings, with random values set and settings removed,
    dumped as YAML, then sometimes corrupted as text."""
    doc = yaml.safe_load(GOOD)
    for _ in range(rng.randint(1, 3)):
        keys = rng.choice(SETTINGS_PATHS)
        if rng.random() < 0.2:
            _drop_path(doc, keys)
        else:
            _set_path(doc, keys, random_value(rng))
    text = yaml.safe_dump(doc, allow_unicode=rng.random() < 0.5, default_flow_style=rng.choice([None, True]))
    return corrupt_text(rng, text) if rng.random() < 0.6 else text


def random_override(rng: random.Random) -> str:
    keys = ".".join(rng.choice(SETTINGS_PATHS))
    if rng.random() < 0.2:
        keys = random_text(rng, 10)
    value = rng.choice([rng.choice(SNIPPETS), random_text(rng), yaml.safe_dump(random_value(rng)).strip()])
    return f"{keys}={value}" if rng.random() < 0.9 else keys + value


# --------------------------------------------------------------------------- the fuzz

FUZZ = settings(max_examples=250, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def loads_or_is_placed(path: Path, content: str | bytes, overrides: tuple[str, ...] | list[str] = ()) -> None:
    """The property: load_config returns, or raises ConfigError with a place, quickly."""
    data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    started = time.perf_counter()
    try:
        load_config(path, overrides)
    except ConfigError as err:
        assert_placed(err, path, text_lines=len(re.findall(rb"\r\n?|\n", data)) + 1)
    assert time.perf_counter() - started < LIMIT_S


@FUZZ
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_corrupted_documents(tmp_path: Path, rng: random.Random) -> None:
    loads_or_is_placed(tmp_path / "fuzz.yaml", corrupted_document(rng))


@FUZZ
@given(text=st.text(max_size=400))
def test_fuzz_raw_text(tmp_path: Path, text: str) -> None:
    loads_or_is_placed(tmp_path / "fuzz.yaml", text)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_fuzz_raw_bytes(tmp_path: Path, blob: bytes) -> None:
    loads_or_is_placed(tmp_path / "fuzz.yaml", blob)


@FUZZ
@given(rng=st.randoms(use_true_random=False), raw=st.lists(st.text(max_size=40), max_size=2))
def test_fuzz_overrides(tmp_path: Path, rng: random.Random, raw: list[str]) -> None:
    overrides = [random_override(rng) for _ in range(rng.randint(1, 3))] + raw
    loads_or_is_placed(tmp_path / "fuzz.yaml", GOOD, overrides)


# --------------------------------------------------------------------------- through the CLI

CLI_SAMPLE = [case for case in HOSTILE if case.id in {
    "bell-in-a-name", "nul-byte", "not-utf8", "billion-laughs", "recursive-alias-mapping", "nesting-20000-flow",
    "list-as-key", "number-5000-digits", "file-50mb", "bool-for-number", "env-key-with-equals",
    "tracking-uri-file-relative", "set-recursive-alias", "set-deep-setting",
}]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.relative_to(root).parts}


@pytest.mark.parametrize("case", CLI_SAMPLE, ids=[case.id for case in CLI_SAMPLE])
def test_cli_exits_2_with_the_place_quickly_and_starts_nothing(tiny_repo: Path, case: Hostile) -> None:
    write(tiny_repo / "bad.yaml", case.content)
    before = _tree(tiny_repo)
    args = [a for item in case.overrides for a in ("--set", item)]

    started = time.perf_counter()
    result = run_cli(["run", "bad.yaml", "--no-tui", *args], cwd=tiny_repo, timeout=60)
    elapsed = time.perf_counter() - started

    err = result.stderr
    assert result.returncode == ExitCode.CONFIG_ERROR, (result.returncode, err[-2000:])
    assert case.needle in err, err
    if case.line is not None:
        assert re.search(rf"^error: bad\.yaml:{case.line}\b", err), err
    else:
        assert err.startswith("error: --set "), err
    assert "fix: " in err and "Traceback" not in err, err
    assert elapsed < LIMIT_S, f"{case.id}: {elapsed:.2f} s"
    assert not (tiny_repo / ".trainboard").exists()
    assert _tree(tiny_repo) == before

"""Fuzz `trainboard run CONFIG --no-tui` with invalid configs and `--set` values; count the outcomes.

    .venv/bin/python benchmarks/fuzz_config.py [--random 440] [--seed 9] [--subprocess 15]

Inputs: every hostile input of the test suite (tests/test_config_fuzz.py HOSTILE:
the shapes of issue 9, item 6) plus --random generated ones, each invalid by
construction: a schema-built document with random values and text corruptions,
random text or bytes, or random --set values, each with one fault that no valid
config has (a control character or NUL, a wrongly typed setting, an unknown
setting, an alias bomb, a recursive alias, nesting past the limit, a key that is
not a name, an absurd number, a malformed or hostile --set).

Each goes through the CLI's own code path in this process (`trainboard.tui.cli.main`, stderr
captured, in a throwaway git repository), and a sample of --subprocess inputs
through the real command in a subprocess (interpreter start included). Printed:
how many inputs, how many exited 2 naming the file and line (or the setting, or
the --set argument), how many anything else, and the slowest; against the
baseline of loading the valid sample_params.yaml the same way, and of
`trainboard --help` for the subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from tests.conftest import make_tiny_repo  # noqa: E402
from tests.test_config import GOOD  # noqa: E402
from tests.test_config_fuzz import (  # noqa: E402
    HOSTILE,
    corrupt_text,
    corrupted_document,
    laughs,
    random_text,
    random_value,
)

REFUSED_CHARS = "\x00\x01\x07\x08\x0b\x0c\x1b\x7f\x85\x9f\u2028\u2029\u202e\u2066"

# Settings and a value of the wrong type for each (bool for a number, a number for a bool, ...).
WRONG: dict[tuple[str, ...], list[object]] = {
    ("mlflow", "poll_interval"): [True, "2", [1], {"a": 1}, None, -1],
    ("job", "timeout_minutes"): [True, False, "30", [30]],
    ("job", "command"): [None, 1, True, [], {"a": "b"}, "  "],
    ("job", "setup"): ["pip install x", 1, {"a": 1}],
    ("job", "env"): [["A"], "A=B", 1],
    ("report", "log_lines"): [True, 1.5, "30", 10**9],
    ("metrics", "f1", "digits"): [True, 2.0, "4", 99],
    ("metrics", "f1", "goal"): ["maximize", 1, True],
    ("runner", "kind"): ["kubernetes", 1, None],
    ("name",): [1, True, [], {"a": 1}],
    ("mlflow", "tracking_uri"): ["file:./mlruns", "file:///tmp/x", "ftp://x", "./mlruns", 5],
    ("compare", "gates", "f1", "min"): [True, "0.5", [0.5]],
    ("github", "publish"): ["sometimes", True],
}
ENV_KEYS = ["A=B", "A B", "1A", "", "A-B", "A.B", "Ä"]


@dataclass
class Input:
    kind: str
    content: bytes
    overrides: list[str]


def _dump(doc: dict[str, object], rng: random.Random) -> str:
    return yaml.safe_dump(doc, allow_unicode=rng.random() < 0.5, default_flow_style=rng.choice([None, True]))


def _with_char(text: str, rng: random.Random) -> str:
    at = rng.randint(0, len(text))
    return text[:at] + rng.choice(REFUSED_CHARS) + text[at:]


def _wrong_type(rng: random.Random) -> str:
    doc = yaml.safe_load(GOOD)
    keys, values = rng.choice(list(WRONG.items()))
    node = doc
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = rng.choice(values)
    if keys == ("job", "env") and rng.random() < 0.5:
        doc["job"]["env"] = {rng.choice(ENV_KEYS): random_text(rng, 5)}
    return _dump(doc, rng)


def _bomb(rng: random.Random) -> str:
    choices = [
        lambda: GOOD + "params:\n" + "".join(f"  {line}\n" for line in laughs(rng.randint(5, 12)).splitlines()),
        lambda: GOOD + "params: &p\n  x: [1, *p]\n",
        lambda: GOOD + "params:\n  x: " + "[" * rng.randint(65, 30000) + "]" * rng.randint(0, 30000) + "\n",
        lambda: GOOD + "params:\n  x: " + "{a: " * rng.randint(65, 900) + "1" + "}" * 900 + "\n",
        lambda: GOOD + "params:\n  x: " + rng.choice("123456789") * rng.randint(101, 20000) + "\n",
        lambda: GOOD + "params:\n  " + rng.choice(["? [a]\n  : 1", "{a: 1}: 2", "1: x", "on: x", "~: x", "2.5: x"]),
        lambda: GOOD + "params:\n  x: [" + "1," * rng.randint(20_001, 60_000) + "1]\n",
        lambda: GOOD + "params:\n  x: [" + "1," * rng.randint(15_000, 19_900) + "1]\nunknown: 1\n",  # parsed whole
        lambda: "name: '" + "x" * rng.randint(1024 * 1024, 3 * 1024 * 1024) + "'\n",
        lambda: GOOD + rng.choice(["job: {command: x}\n", "name: again\n", "1: x\n", "? [a]\n: 1\n"]),
        lambda: GOOD + f"unknown_{rng.randint(0, 999)}: {json.dumps(random_value(rng))}\n",
    ]
    return rng.choice(choices)()


def _bad_override(rng: random.Random) -> list[str]:
    keys, wrong = rng.choice(list(WRONG.items()))
    path = ".".join(keys)
    choices = [
        lambda: "params.x=&a [1, *a]",
        lambda: "params.x={" + laughs(rng.randint(5, 9)).replace("\n", ", ").rstrip(", ") + "}",
        lambda: "params.x=" + "[" * rng.randint(65, 500) + "]" * 500,
        lambda: "params.x=" + "9" * rng.randint(101, 5000),
        lambda: "params" + ".a" * rng.randint(65, 5000) + "=1",
        lambda: _with_char(f"params.x={random_text(rng)}", rng),
        lambda: f"{path}={json.dumps(rng.choice(wrong))}",
        lambda: f"job.env.{rng.choice(ENV_KEYS[1:])}=x",
        lambda: rng.choice(["", "=", "=1", "job.command", "...=1", "job.command.x=1"]),
        lambda: f"unknown{random_text(rng, 4).replace('=', '').replace('.', '')}x.y={random_text(rng)}",
        lambda: "params.x=" + "x" * rng.randint(64 * 1024 + 1, 200_000),
    ]
    return [rng.choice(choices)()]


def generate(rng: random.Random) -> Input:
    """One invalid input, from one of the families above."""
    family = rng.randrange(7)
    if family == 0:
        return Input("document+char", _with_char(corrupted_document(rng), rng).encode("utf-8", "surrogatepass"), [])
    if family == 1:
        text = _wrong_type(rng)
        return Input("wrong-type", (corrupt_text(rng, text) if rng.random() < 0.3 else text).encode(), [])
    if family == 2:
        return Input("bomb", _bomb(rng).encode(), [])
    if family == 3:
        blob = bytearray(rng.randbytes(rng.randint(1, 400)))
        blob.insert(rng.randint(0, len(blob)), rng.choice([0, 0xFF, 0xC0, 0x07]))  # never valid in a config
        if rng.random() < 0.5:
            blob[rng.randrange(len(blob))] = 0
        return Input("bytes", bytes(blob), [])
    if family == 4:
        text = "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 200)))
        return Input("text+char", _with_char(text, rng).encode("utf-8", "surrogatepass"), [])
    if family == 5:
        return Input("set", GOOD.encode(), _bad_override(rng))
    value = yaml.safe_dump(random_value(rng)).strip()  # a random value under an unknown setting
    return Input("set-unknown", GOOD.encode(), [f"nosuch{rng.randint(0, 99)}.x={value}"])


def classify(rc: int, err: str, file: str) -> str:
    """placed: exit 2 naming file:line, or a setting, or the --set argument; else what it was."""
    if "Traceback" in err:
        return "traceback"
    if rc != 2:
        return f"exit {rc}"
    first = err.splitlines()[0] if err else ""
    if re.match(rf"error: {re.escape(file)}:\d+\b", first):
        return "placed"
    if re.match(rf"error: {re.escape(file)}: [^:\s]+: ", first) or first.startswith("error: --set "):
        return "placed"
    return "exit 2, no place"


def run_in_process(args: list[str]) -> tuple[int, str, float]:
    from trainboard.tui.cli import main

    err = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - what escapes main is what the fuzz looks for
            import traceback

            err.write(traceback.format_exc())
            rc = -1
    return rc, err.getvalue(), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=440, help="generated inputs besides the hostile ones")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--subprocess", type=int, default=15, help="inputs also run as a real `trainboard` process")
    opts = parser.parse_args()

    rng = random.Random(opts.seed)
    inputs: list[Input] = []
    for case in HOSTILE:
        content = case.content() if callable(case.content) else case.content
        inputs.append(Input(f"hostile:{case.id}", content if isinstance(content, bytes) else content.encode(),
                            list(case.overrides)))
    inputs += [generate(rng) for _ in range(opts.random)]

    work = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
    repo = make_tiny_repo(work / "repo")
    (repo / "cases").mkdir()
    os.chdir(repo)

    # Baseline: the valid sample, loaded by the same code (load_config; a valid config would start a run).
    from trainboard.backend.config import load_config

    (repo / "good.yaml").write_bytes((ROOT / "sample_params.yaml").read_bytes())
    base_times = []
    for _ in range(20):
        started = time.perf_counter()
        load_config("good.yaml")
        base_times.append(time.perf_counter() - started)

    outcomes: dict[str, int] = {}
    others: list[str] = []
    slowest = (0.0, "")
    per_family: dict[str, float] = {}
    created = 0
    for index, item in enumerate(inputs):
        name = f"cases/{index:04d}.yaml"
        (repo / name).write_bytes(item.content)
        args = ["run", name, "--no-tui", *[a for o in item.overrides for a in ("--set", o)]]
        rc, err, elapsed = run_in_process(args)
        verdict = classify(rc, err, name)
        outcomes[verdict] = outcomes.get(verdict, 0) + 1
        if verdict != "placed":
            others.append(f"  {item.kind} ({name}): {verdict}: {err.strip()[:300]!r}")
        if elapsed > slowest[0]:
            slowest = (elapsed, f"{item.kind}, {name}")
        family = item.kind.split(":")[0]
        per_family[family] = max(per_family.get(family, 0.0), elapsed)
        if (repo / ".trainboard").exists():
            created += 1
        (repo / name).unlink()

    # A sample through the real command: interpreter start, imports, exit code as the shell sees it.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITHUB_ACTIONS", None)
    help_times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trainboard.tui.cli", "--help"], capture_output=True, env=env, check=True)
        help_times.append(time.perf_counter() - started)
    sample = random.Random(opts.seed).sample(range(len(inputs)), min(opts.subprocess, len(inputs)))
    sub_outcomes: dict[str, int] = {}
    sub_slowest = (0.0, "")
    for index in sample:
        item = inputs[index]
        name = f"cases/{index:04d}.yaml"
        (repo / name).write_bytes(item.content)
        args = ["run", name, "--no-tui", *[a for o in item.overrides for a in ("--set", o)]]
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "trainboard.tui.cli", *args], capture_output=True, env=env,
                                  timeout=30)
            rc, err = proc.returncode, proc.stderr.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            rc, err = -9, "timed out after 30 s"
        except (ValueError, OSError) as exc:  # an argument no shell can pass (a NUL, over 128 KiB)
            sub_outcomes["not passable as argv"] = sub_outcomes.get("not passable as argv", 0) + 1
            print(f"  subprocess skip {item.kind}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        verdict = classify(rc, err, name)
        sub_outcomes[verdict] = sub_outcomes.get(verdict, 0) + 1
        if elapsed > sub_slowest[0]:
            sub_slowest = (elapsed, item.kind)
        (repo / name).unlink()

    kinds: dict[str, int] = {}
    for item in inputs:
        family = item.kind.split(":")[0]
        kinds[family] = kinds.get(family, 0) + 1
    placed = outcomes.get("placed", 0)
    print(f"inputs: {len(inputs)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
    print(f"in process (trainboard.tui.cli.main): exit 2 with file:line or setting: {placed}; "
          f"anything else: {len(inputs) - placed} {({k: v for k, v in outcomes.items() if k != 'placed'})}")
    base = statistics.median(base_times)
    print(f"  slowest: {slowest[0] * 1000:.1f} ms ({slowest[1]}); baseline, loading the valid sample_params.yaml: "
          f"{base * 1000:.1f} ms median; ratio {slowest[0] / base:.0f}")
    print("  slowest per family: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(per_family.items())))
    print(f"  runs that created .trainboard/: {created}")
    for line in others[:20]:
        print(line)
    sub_placed = sub_outcomes.get("placed", 0)
    print(f"subprocess (python -m trainboard.tui.cli run F --no-tui): {sum(sub_outcomes.values())} inputs, "
          f"exit 2 with place: "
          f"{sub_placed}, anything else: {sum(sub_outcomes.values()) - sub_placed} {sub_outcomes}")
    print(f"  slowest: {sub_slowest[0]:.2f} s ({sub_slowest[1]}); baseline `trainboard --help`: "
          f"{statistics.median(help_times):.2f} s median; goal < 2 s: {'met' if sub_slowest[0] < 2 else 'MISSED'}")
    return 0 if placed == len(inputs) and sub_placed == sum(sub_outcomes.values()) and not created else 1


if __name__ == "__main__":
    sys.exit(main())

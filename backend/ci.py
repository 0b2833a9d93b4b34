"""CI mode: GitHub Actions workflow commands, the step summary, and `trainboard init`.

Under GitHub Actions (``GITHUB_ACTIONS=true``) the headless view folds each stage
into a ``::group::``, turns errors into ``::error::`` annotations, and appends the
report to ``$GITHUB_STEP_SUMMARY``. The exit code is the run's (1 on a failed gate).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def group(title: str) -> str:
    return f"::group::{_escape_data(title)}"


def endgroup() -> str:
    return "::endgroup::"


def error(message: str, title: str = "trainboard") -> str:
    """An error annotation: shown on the run's summary page and in the log."""
    return f"::error title={_escape_property(title)}::{_escape_data(message)}"


def append_step_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Add ``markdown`` to the job's summary page; False when there is none (not in Actions)."""
    path = (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown.rstrip("\n") + "\n\n")
    return True


def read_only_note(reason: str) -> str:
    """What a run that may not write to GitHub (a fork's pull request) says on its summary."""
    return (f"> **No pull request comment or commit status from this run**: {reason}. "
            "The run's folder is kept as the workflow's artifact; the exit code is the gate's verdict.")


def append_read_only_summary(reason: str, env: Mapping[str, str] | None = None) -> bool:
    """Say on the step summary why this run did not comment; False outside Actions."""
    return append_step_summary(read_only_note(reason), env)


# ------------------------------------------------------------------ `trainboard init`

WORKFLOW_PATH = Path(".github") / "workflows" / "trainboard.yml"
PUBLISH_WORKFLOW_PATH = Path(".github") / "workflows" / "trainboard-publish.yml"
ARTIFACT = "trainboard-results"  # the pull request run's folder, as the publish workflow downloads it

_PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
_LINE_PLACEHOLDER = re.compile(r"( *)@@([A-Z_]+)@@\n?")
# What a branch name may hold here: it lands in YAML, in an expression and in a comment.
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,-]+")


class InitError(ValueError):
    """Why `trainboard init` writes nothing: the setting or flag, what is wrong, and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}"


@dataclass(frozen=True)
class InstallPlan:
    """How CI gets the job's code and trainboard."""

    train: tuple[str, ...]  # the training jobs' install commands, shell-quoted
    publish: tuple[str, ...]  # the publish job's: trainboard only, from a fixed spec
    publish_checkout: bool  # that spec is in the repository: the publish job checks out the default branch
    cache_paths: tuple[str, ...]  # the files whose hash keys the pip cache
    note: str = ""  # something the user may want to change


@dataclass(frozen=True)
class WorkflowPlan:
    """What the workflows run: the config, and how CI installs what it needs."""

    config: str  # relative to the repository root
    base: str  # compare.base: pushes to it record the baseline
    install: InstallPlan
    aws: bool = False  # credential steps and `id-token: write` for the ec2 runner or an S3 remote
    python: str = "3.11"
    schedule: str = ""  # a cron line for a scheduled baseline run; "" = none


def _project_table(root: Path) -> dict[str, Any] | None:
    """pyproject.toml's tables when it makes the repository installable; None otherwise."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InitError(f"{path}: not valid TOML ({exc})", "fix pyproject.toml so that pip can read it") from None
    return data if ("project" in data or "build-system" in data) else None


def _unsafe(value: str) -> bool:
    """Text that would break out of its place: a new line, or an Actions expression."""
    return any(c in value for c in "\n\r\0") or "${{" in value


def _is_path_spec(spec: str) -> bool:
    if "://" in spec or spec.startswith("git+"):
        return False
    return spec.startswith((".", "/", "~")) or spec.endswith((".whl", ".tar.gz", ".zip"))


def plan_install(root: Path, extras: list[str], spec: str | None) -> InstallPlan:
    """The training and publish jobs' install commands, the pip cache's files and a note for the user.

    The repository is installed itself when it can be (``pip install -e '.[extras]'``), else
    from its requirements.txt; trainboard comes from ``spec``, or from the repository when the
    repository is trainboard. With neither, InitError: nothing would say where trainboard comes from.
    """
    project = _project_table(root)
    train, cache, note = _repository_install(root, project, extras)
    name = str((project or {}).get("project", {}).get("name", "")).lower().replace("_", "-")
    command, publish, checkout = _trainboard_install(root, spec, is_trainboard=name == "trainboard")
    if command:
        train.append(command)
    cache.append(str(WORKFLOW_PATH))  # holds the install commands: a new spec is a new cache
    return InstallPlan(tuple(train), publish, checkout, tuple(cache), note)


def _repository_install(root: Path, project: dict[str, Any] | None,
                        extras: list[str]) -> tuple[list[str], list[str], str]:
    """How the training job installs the repository itself: (commands, cache files, note)."""
    installable = project is not None or (root / "setup.py").is_file()
    declared = sorted((project or {}).get("project", {}).get("optional-dependencies") or {})
    note = ""
    train: list[str] = []
    cache: list[str] = []
    if extras and not installable:
        raise InitError(f"--extras {','.join(extras)}: {root} has no pyproject.toml (with [project] or "
                        "[build-system]) or setup.py to install with extras",
                        "drop --extras and list what the job needs in requirements.txt, or make the "
                        "repository installable")
    unknown = [e for e in extras if declared and e not in declared]
    if unknown:
        raise InitError(f"--extras {','.join(unknown)}: pyproject.toml declares no such extra "
                        f"(it has: {', '.join(declared) or 'none'})",
                        f"pass --extras with some of: {', '.join(declared)}")
    if installable:
        target = f".[{','.join(extras)}]" if extras else "."
        train.append(f"pip install -e {shlex.quote(target)}")
        cache += [f for f in ("pyproject.toml", "setup.py", "setup.cfg") if (root / f).is_file()]
        if declared and not extras:
            note = (f"the repository declares the extras {', '.join(declared)}: if the job needs one, run init "
                    "again with --extras NAME --force")
    elif (root / "requirements.txt").is_file():
        train.append("pip install -r requirements.txt")
        cache.append("requirements.txt")
    return train, cache, note


def _trainboard_install(root: Path, spec: str | None, *, is_trainboard: bool) -> tuple[str, tuple[str, ...], bool]:
    """Where CI gets trainboard: (the training job's extra command, "" for none; the publish
    job's commands; whether the publish job checks the repository out)."""
    if spec is not None:
        spec = spec.strip()
        if not spec or _unsafe(spec):
            raise InitError(f"--install {spec!r}: not something pip can install in CI",
                            "pass a git URL, a wheel or folder inside this repository, or a package name")
        if _is_path_spec(spec):
            target_path = (root / spec).expanduser() if not spec.startswith("~") else Path(spec).expanduser()
            inside = target_path.resolve().is_relative_to(root.resolve())
            if spec.startswith(("/", "~")) or not inside or not target_path.exists():
                raise InitError(f"--install {spec}: CI has only what is committed in this repository, and "
                                f"this is {'not inside it' if not inside else 'not there'}",
                                "commit the wheel (or folder) into the repository and pass its path relative to "
                                "the root, e.g. ./wheels/trainboard-0.1.0-py3-none-any.whl, or pass a git URL")
        command = f"pip install {shlex.quote(spec)}"
        return command, (command,), _is_path_spec(spec)
    if is_trainboard:
        return "", ("pip install .",), True
    raise InitError(
        "nothing says where CI gets trainboard: it is not on a package index, and this repository is "
        "not trainboard",
        "pass --install SPEC, e.g. --install 'git+https://github.com/OWNER/trainboard@v0.1.0', a wheel "
        "committed here (--install ./wheels/trainboard-0.1.0-py3-none-any.whl) or a package name your "
        "index serves")


def check_schedule(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise InitError(f"--schedule {cron!r}: not a cron line of five fields",
                        "pass e.g. --schedule '17 3 * * *' (daily at 03:17 UTC)")
    return " ".join(fields)


def _template(name: str) -> str:
    return (resources.files("trainboard.backend") / "templates" / name).read_text(encoding="utf-8")


def fill(template: str, values: Mapping[str, str]) -> str:
    """Fill ``@@NAME@@`` placeholders, each in one pass (a value is never scanned again).

    A placeholder alone on its line takes a block: each of its lines indented as the
    placeholder was, and an empty value drops the line. Anywhere else it takes one line.
    """
    out: list[str] = []
    for line in template.splitlines(keepends=True):
        whole = _LINE_PLACEHOLDER.fullmatch(line)
        if whole:
            indent, block = whole[1], values[whole[2]]
            out += [(indent + part if part else "") + "\n" for part in block.splitlines()]
            continue

        def inline(match: re.Match[str]) -> str:
            value = values[match[1]]
            if "\n" in value:
                raise ValueError(f"@@{match[1]}@@ takes one line")
            return value

        out.append(_PLACEHOLDER.sub(inline, line))
    return "".join(out)


def _run_block(commands: tuple[str, ...]) -> str:
    return "\n".join(commands)


def workflows(plan: WorkflowPlan) -> dict[Path, str]:
    """The two workflow files `trainboard init` writes, by path relative to the repository root."""
    if not _BRANCH.fullmatch(plan.base) or ".." in plan.base:
        raise InitError(f"compare.base {plan.base!r}: not a branch name init can write into a workflow",
                        "name the base branch with letters, digits and . _ / -")
    if _unsafe(plan.config) or _unsafe(plan.python):
        raise InitError(f"--config {plan.config!r}: not a path a workflow can hold", "rename the config file")
    aws_env = "env:\n  HAS_AWS_KEYS: ${{ secrets.AWS_ACCESS_KEY_ID != '' }}" if plan.aws else ""
    id_token = "id-token: write  # AWS through OIDC (vars.AWS_ROLE_ARN)" if plan.aws else ""
    steps_values = {
        "PYTHON": json.dumps(plan.python),
        "CACHE_PATHS": "\n".join(plan.install.cache_paths),
        "INSTALL": _run_block(plan.install.train),
        "AWS_STEPS": _template("aws-steps.yml") if plan.aws else "",
        "CONFIG": shlex.quote(plan.config),
    }
    token = "env:\n  GITHUB_TOKEN: ${{ github.token }}"
    read_only = ("# No token here: a pull request's run only reads. trainboard-publish.yml posts its\n"
                 "# comment and commit status.")
    steps = {job: fill(_template("train-steps.yml"), {**steps_values, "TRAIN_ENV": env})
             for job, env in (("pull-request", read_only), ("push", token))}
    schedule = (f"schedule:\n  - cron: {json.dumps(check_schedule(plan.schedule))}"
                "  # runs on the default branch: a baseline when that is the base") if plan.schedule else ""
    common = {"BASE": json.dumps(plan.base), "BASE_EXPR": f"'{plan.base}'", "BASE_COMMENT": plan.base,
              "SCHEDULE": schedule, "ID_TOKEN": id_token, "JOB_ENV": aws_env}
    # Each job fills its own steps: the first TRAIN_STEPS is the pull request job's.
    train = _template("trainboard.yml").replace("@@TRAIN_STEPS@@", "@@PR_STEPS@@", 1)
    main = fill(train, {**common, "PR_STEPS": steps["pull-request"], "TRAIN_STEPS": steps["push"]})
    checkout = plan.install.publish_checkout
    publish = fill(_template("trainboard-publish.yml"), {
        "PYTHON": json.dumps(plan.python), "INSTALL": _run_block(plan.install.publish),
        "CONTENTS_READ": "contents: read  # the default branch, for the install" if checkout else "",
        "CHECKOUT": _template("default-branch-checkout.yml") if checkout else "",
    })
    return {WORKFLOW_PATH: main, PUBLISH_WORKFLOW_PATH: publish}


def write_workflows(root: Path, plan: WorkflowPlan, force: bool = False) -> list[Path]:
    """Write both workflows under ``root``; FileExistsError naming those there (unless ``force``)."""
    files = workflows(plan)
    present = [str(rel) for rel in files if (root / rel).exists()]
    if present and not force:
        raise FileExistsError(", ".join(present))
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written

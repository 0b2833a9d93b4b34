"""Import boundaries: the backend runs without the UI, and start-up stays off heavy imports.

Every check imports in a fresh interpreter: within pytest, modules that other
tests loaded would hide an import that is made where it should not be.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BACKEND = ROOT / "backend"
UI = {"textual", "trainboard.tui"}
HEAVY = {"mlflow", "torch", "transformers", "textual", "matplotlib"}
# The remote runners' clients: loaded by the modules that use them, never by --help or the session.
REMOTE = {"asyncssh", "boto3", "botocore"}
REMOTE_USERS = {"trainboard.backend.runners.ssh", "trainboard.backend.runners.ec2", "trainboard.backend.reap"}


def backend_modules() -> list[str]:
    found = ["trainboard.backend"]
    for info in pkgutil.walk_packages([str(BACKEND)], prefix="trainboard.backend."):
        found.append(info.name)
    return sorted(found)


MODULES = backend_modules()


def loaded_after(code: str) -> set[str]:
    """Top-level package names in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.stderr)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = json.loads(result.stderr.strip().splitlines()[-1])
    return {package_of(name) for name in names}


def package_of(module: str) -> str:
    """The top-level package of ``module``; for trainboard's own, its subpackage (``trainboard.tui``)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "trainboard" else parts[0]


def test_discovery_finds_the_backend() -> None:
    # Guards the parametrized tests below against walking an empty or wrong folder.
    for name in ("session", "config", "tracking", "runners.local"):
        assert f"trainboard.backend.{name}" in MODULES
    assert len(MODULES) == len(list(BACKEND.rglob("*.py")))


@pytest.mark.parametrize("module", MODULES)
def test_backend_module_imports_without_ui_or_heavy_packages(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert "trainboard.backend" in loaded  # the probe did import something
    assert loaded & UI == set(), f"importing {module} loads the UI: {sorted(loaded & UI)}"
    assert loaded & HEAVY == set(), f"importing {module} loads {sorted(loaded & HEAVY)}"
    if module not in REMOTE_USERS and module.rpartition(".")[0] not in REMOTE_USERS:  # or a package's module
        assert loaded & REMOTE == set(), f"importing {module} loads {sorted(loaded & REMOTE)}"


def test_session_and_tracking_import_without_mlflow() -> None:
    loaded = loaded_after("import trainboard.backend.session, trainboard.backend.tracking")
    assert "mlflow" not in loaded
    assert {"pydantic", "yaml"} <= loaded  # the probe saw real imports


def _imported_by_help(args: list[str]) -> set[str]:
    """Every top-level package that `python -m trainboard.tui.cli ARGS` imports, from -X importtime."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainboard.tui.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: trainboard" in result.stdout
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(package_of(name))
    return names


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["reap", "--help"], []], ids=["help", "run-help", "reap-help", "bare"]
)
def test_cli_help_loads_no_heavy_package(args: list[str]) -> None:
    loaded = _imported_by_help(args)
    assert "argparse" in loaded  # -X importtime did report the imports
    heavy = sorted(loaded & (HEAVY | REMOTE))
    assert heavy == [], f"`trainboard {' '.join(args)}` imports {heavy}"


def test_cli_main_help_in_process_loads_no_heavy_package() -> None:
    code = (
        "from trainboard.tui.cli import main\n"
        "try:\n    main(['--help'])\n"
        "except SystemExit as stop:\n    assert stop.code == 0\n"
        "else:\n    raise AssertionError('--help did not exit')"
    )
    loaded = loaded_after(code)
    assert "trainboard.tui" in loaded
    assert loaded & (HEAVY | REMOTE) == set(), sorted(loaded & (HEAVY | REMOTE))


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import, and of every import_module("x") or __import__("x")."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_no_backend_source_imports_the_ui() -> None:
    files = sorted(BACKEND.rglob("*.py"))
    assert BACKEND / "session.py" in files
    offending = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in _imports(tree):
            if package_of(module) in UI:
                offending.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert offending == []


def test_the_ast_check_sees_imports_inside_functions() -> None:
    # The check above reads function bodies too, where a lazy UI import would hide.
    tree = ast.parse(
        "def f():\n    from trainboard.tui.app import make_app\n    import textual.app\n"
        "    importlib.import_module('textual')\n"
    )
    assert [m for _, m in _imports(tree)] == ["trainboard.tui.app", "textual.app", "textual"]

"""The import contracts in pyproject.toml's [tool.importlinter], checked by `lint-imports`.

The contracts must hold on the code as it is, and must be real: an empty or
mistyped configuration, or one that analyses nothing, would pass quietly, so
the names of the contracts are asserted, and a scratch copy of the code with
one forbidden import per contract must break all three.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = (
    "backend never imports the UI",
    "runners never import the session, the stages or the hooks",
    "stages never import each other",
)


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> str:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_the_code_keeps_every_import_contract() -> None:
    output = lint_imports(ROOT)
    assert output.startswith("exit 0\n"), output
    for name in CONTRACTS:
        assert re.search(rf"^{re.escape(name)} KEPT\b", output, re.MULTILINE), f"no {name!r} kept in:\n{output}"
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in output, output
    analysed = int(re.search(r"Analyzed (\d+) files", output).group(1))  # type: ignore[union-attr]
    ours = len([*(ROOT / "backend").rglob("*.py"), *(ROOT / "tui").rglob("*.py")])
    assert analysed >= ours, f"lint-imports analysed {analysed} files; backend/ and tui/ hold {ours}"


def test_a_forbidden_import_breaks_each_contract(tmp_path: Path) -> None:
    # A scratch copy of the code, importable as trainboard.* from PYTHONPATH, with one bad import per contract.
    package = tmp_path / "trainboard"
    for folder in ("backend", "tui"):
        shutil.copytree(ROOT / folder, package / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    stages = sorted(p.stem for p in (package / "backend" / "stages").glob("*.py") if p.stem not in ("__init__", "base"))
    assert len(stages) >= 2, f"the stages package holds {stages}"
    bad = {
        "backend/compare.py": "from trainboard.tui import app",
        "backend/runners/local.py": "import trainboard.backend.session",
        f"backend/stages/{stages[0]}.py": f"from trainboard.backend.stages import {stages[1]}",
    }
    for path, line in bad.items():
        with (package / path).open("a") as fh:
            fh.write(f"\n{line}  # forbidden, for the test\n")

    output = lint_imports(tmp_path, pythonpath=tmp_path)
    assert output.startswith("exit 1\n"), output
    for name in CONTRACTS:
        assert re.search(rf"^{re.escape(name)} BROKEN\b", output, re.MULTILINE), f"{name!r} not broken in:\n{output}"

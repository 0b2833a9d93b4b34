"""The installed package claims one import name, ``trainboard``, not ``backend`` or ``tui``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def declared_packages() -> list[str]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return sorted(setuptools["packages"])


def test_every_source_package_is_declared() -> None:
    found = []
    for top in ("backend", "tui"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            parts = init.parent.relative_to(ROOT).parts
            found.append(".".join(("trainboard", *parts)))
    assert "trainboard.backend.runners" in found
    assert sorted(found) == declared_packages()


def test_the_wheel_installs_only_under_trainboard(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("trainboard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"trainboard"}
    assert "trainboard/backend/runners/orphan_watchdog.sh" in names  # package data came along
    assert "trainboard/backend/runners/ec2/instance_watchdog.sh" in names
    assert "trainboard/backend/runners/ec2/cloud-config.yaml" in names
    assert "trainboard/backend/templates/trainboard.yml" in names
    assert "trainboard/tui/cli.py" in names


def test_backend_is_not_an_import_name_of_the_environment() -> None:
    probe = ("import importlib.util as u; "
             "print(u.find_spec('backend'), u.find_spec('tui'), u.find_spec('trainboard.tui.cli') is not None)")
    out = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "None", "True"]

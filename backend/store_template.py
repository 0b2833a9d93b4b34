"""A new repository's MLflow SQLite store, made by copying an empty one instead of migrating.

MLflow makes a new SQLite store by running every one of its schema migrations, which
takes seconds (two to five here) and used to fall on the first run of every new
repository. trainboard keeps one empty, fully migrated store per MLflow version in the
user's cache (``$XDG_CACHE_HOME/trainboard`` or ``~/.cache/trainboard``) and copies it
to where a ``sqlite:///`` tracking URI points when nothing is there yet: a copy of about
1 MB. The first store on a machine still pays the migrations, once, to make the template.

A template is only ever made by MLflow itself (``MlflowClient`` on an empty file), in a
temporary file renamed into place, so that concurrent trainboard processes never see half
of one. Anything that goes wrong leaves MLflow to make the store as it always did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

SCHEME = "sqlite:///"


def store_path(tracking_uri: str) -> Path | None:
    """The file of a plain ``sqlite:///`` URI (absolute or relative to here); None for anything else."""
    if not tracking_uri.startswith(SCHEME) or "?" in tracking_uri:
        return None
    rest = tracking_uri.removeprefix(SCHEME)
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainboard"


def template_path(mlflow_version: str) -> Path:
    return cache_dir() / f"mlflow-{mlflow_version}-empty.db"


def _make_template(target: Path) -> None:
    """An empty store made by MLflow's own migrations, renamed to ``target`` once whole."""
    from mlflow.tracking import MlflowClient

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".db", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # MLflow makes the file itself
    try:
        MlflowClient(tracking_uri=SCHEME + tmp).search_experiments(max_results=1)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def seed_store(tracking_uri: str) -> bool:
    """Put a copy of the empty template where ``tracking_uri`` points, when nothing is there.

    Returns whether it did (False: not a plain sqlite URI, a store is there already, or
    something failed, and MLflow will make the store itself). Needs MLflow imported or
    importable.
    """
    path = store_path(tracking_uri)
    if path is None or path.exists():
        return False
    try:
        import mlflow

        template = template_path(mlflow.__version__)
        if not template.exists():
            _make_template(template)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".db", dir=path.parent)
        os.close(fd)
        try:
            shutil.copyfile(template, tmp)
            # Hard link, not rename: another process may have made the store meanwhile; keep theirs.
            os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return True
    except Exception:  # whatever failed, MLflow makes the store as it always did
        return False

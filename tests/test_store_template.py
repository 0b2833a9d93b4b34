"""A new repository's MLflow store is a copy of an empty, migrated one (backend/store_template.py).

Real MLflow on real SQLite files: the template is made by MLflow's own migrations once per
cache folder, and every store seeded from it is one MLflow opens and uses as its own.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from trainboard.backend.store_template import seed_store, store_path, template_path


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def isolated_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def alembic_version(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("select version_num from alembic_version").fetchone()[0])


def test_store_path_takes_only_plain_sqlite_files() -> None:
    assert store_path("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert store_path("sqlite:///rel/mlflow.db") == Path("rel/mlflow.db")
    for uri in ("http://127.0.0.1:5000", "sqlite:///:memory:", "sqlite:///x.db?timeout=3", "file:///tmp/m",
                "postgresql://db/x", "sqlite:///"):
        assert store_path(uri) is None, uri


def test_a_seeded_store_is_a_migrated_store_mlflow_uses(isolated_cache: Path, tmp_path: Path) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    db = tmp_path / "repo" / ".trainboard" / "mlflow.db"
    assert seed_store(f"sqlite:///{db}")
    template = template_path(mlflow.__version__)
    assert template.parent == isolated_cache / "trainboard" and template.exists()
    assert db.read_bytes() == template.read_bytes()
    # The same schema revision as a store MLflow migrates itself.
    own = tmp_path / "own.db"
    MlflowClient(tracking_uri=f"sqlite:///{own}").search_experiments()
    assert alembic_version(db) == alembic_version(own)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("seeded"))
    client.log_metric(run.info.run_id, "f1", 0.75, step=1)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "f1")] == [0.75]
    # The template stays empty: the run went into the copy only.
    assert "seeded" not in {e.name for e in MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()}


def test_an_existing_store_is_left_alone(isolated_cache: Path, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not ours to touch")
    assert not seed_store(f"sqlite:///{db}")
    assert db.read_bytes() == b"not ours to touch"
    assert not seed_store("http://127.0.0.1:1")


def test_an_unusable_cache_leaves_mlflow_to_make_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # trainboard/ cannot be made under a file
    db = tmp_path / "mlflow.db"
    assert not seed_store(f"sqlite:///{db}")
    assert not db.exists()
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()  # MLflow makes it, as before
    assert db.exists()


def test_processes_seeding_at_once_all_get_a_whole_store(tmp_path: Path) -> None:
    """Four processes make the template (none exists yet) and seed four stores at once."""
    cache = tmp_path / "fresh-cache"
    code = ("import sys; from trainboard.backend.store_template import seed_store; "
            "print(seed_store('sqlite:///' + sys.argv[1]))")
    env = {"XDG_CACHE_HOME": str(cache), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"s{i}.db")], env=env,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["True"] * 4
    versions = {alembic_version(tmp_path / f"s{i}.db") for i in range(4)}
    assert len(versions) == 1 and "" not in versions
    import mlflow

    # One template, whole; no temporary file left behind.
    assert [p.name for p in (cache / "trainboard").iterdir()] == [template_path(mlflow.__version__).name]

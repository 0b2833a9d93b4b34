"""MLflow's private parts that trainboard relies on (backend/compat_mlflow.py) are still there.

Each test names the attribute, module global or variable it checks: when an MLflow upgrade
moves one, the failure says which, and the fix belongs in compat_mlflow alone. The checks
are real MLflow calls on a temporary SQLite store, not mocks.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

from trainboard.backend import compat_mlflow

UPGRADE = "MLflow moved it (an upgrade?): adapt trainboard/backend/compat_mlflow.py"


@pytest.fixture
def store(tmp_path: Path, empty_mlflow_db: Path) -> str:
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_run_data_keeps_the_latest_metric_objects(store: str) -> None:
    from mlflow.entities import RunData
    from mlflow.tracking import MlflowClient

    assert "_metric_objs" in inspect.getsource(RunData.__init__), f"RunData._metric_objs is gone. {UPGRADE}"
    client = MlflowClient(tracking_uri=store)
    run_id = client.create_run(client.create_experiment("compat")).info.run_id
    client.log_metric(run_id, "f1", 0.5, step=1, timestamp=1000)
    client.log_metric(run_id, "f1", 0.7, step=2, timestamp=2000)
    client.log_metric(run_id, "loss", 0.3, step=4, timestamp=3000)

    data = client.get_run(run_id).data
    assert hasattr(data, "_metric_objs"), f"get_run(...).data has no _metric_objs (RunData). {UPGRADE}"
    objs = compat_mlflow.metric_objects(data)
    assert objs is not None
    got = sorted((m.key, m.value, m.step, m.timestamp) for m in objs)
    assert got == [("f1", 0.7, 2, 2000), ("loss", 0.3, 4, 3000)], (
        f"RunData._metric_objs no longer holds each metric's latest Metric (key, value, step, timestamp): "
        f"{got}. {UPGRADE}")


def test_the_server_reads_its_store_from_the_variables_we_set() -> None:
    from mlflow.server import constants

    assert getattr(constants, "BACKEND_STORE_URI_ENV_VAR", None) == compat_mlflow.SERVER_STORE_ENV, (
        f"mlflow.server.constants.BACKEND_STORE_URI_ENV_VAR is not {compat_mlflow.SERVER_STORE_ENV!r}. {UPGRADE}")
    assert getattr(constants, "ARTIFACT_ROOT_ENV_VAR", None) == compat_mlflow.SERVER_ARTIFACT_ROOT_ENV, (
        f"mlflow.server.constants.ARTIFACT_ROOT_ENV_VAR is not {compat_mlflow.SERVER_ARTIFACT_ROOT_ENV!r}. "
        f"{UPGRADE}")


def test_the_server_caches_its_stores_in_module_globals() -> None:
    from mlflow.server import handlers

    for name in compat_mlflow.SERVER_STORE_CACHES:
        assert hasattr(handlers, name), f"mlflow.server.handlers.{name} is gone. {UPGRADE}"
    getter = getattr(handlers, "_get_tracking_store", None)
    assert callable(getter), f"mlflow.server.handlers._get_tracking_store is gone. {UPGRADE}"
    params = list(inspect.signature(getter).parameters)
    assert params[:2] == ["backend_store_uri", "default_artifact_root"], (
        f"mlflow.server.handlers._get_tracking_store takes {params}, not (backend_store_uri, "
        f"default_artifact_root). {UPGRADE}")


def test_a_second_tracking_app_in_one_process_serves_the_second_store(
        tmp_path: Path, empty_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import handlers
    from mlflow.tracking import MlflowClient

    # tracking_app sets these in os.environ: monkeypatch puts the process's values back after the test
    monkeypatch.setenv(compat_mlflow.SERVER_STORE_ENV, "")
    monkeypatch.setenv(compat_mlflow.SERVER_ARTIFACT_ROOT_ENV, "")
    uris = []
    for name in ("first", "second"):
        shutil.copy(empty_mlflow_db, tmp_path / f"{name}.db")
        uris.append(f"sqlite:///{tmp_path / f'{name}.db'}")
        MlflowClient(tracking_uri=uris[-1]).create_experiment(f"only-in-{name}")

    for index, uri in enumerate(uris):
        app = compat_mlflow.tracking_app(uri, str(tmp_path / "artifacts"))
        assert handlers._tracking_store is not None, f"mlflow.server.handlers._tracking_store stays None. {UPGRADE}"
        answers = {}
        for name in ("first", "second"):
            response = app.test_client().get("/api/2.0/mlflow/experiments/get-by-name",
                                              query_string={"experiment_name": f"only-in-{name}"})
            answers[name] = response.status_code
        mine, other = ("first", "second") if index == 0 else ("second", "first")
        assert answers[mine] == 200 and answers[other] == 404, (
            f"the tracking app for {uri} answers {answers}: resetting mlflow.server.handlers' cached stores "
            f"({', '.join(compat_mlflow.SERVER_STORE_CACHES)}) no longer makes it serve the new store. {UPGRADE}")
    compat_mlflow.reset_server_stores(handlers)  # later servers of this worker make their own

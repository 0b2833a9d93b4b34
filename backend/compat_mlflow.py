"""The one door to MLflow's private parts: every attribute, module global and variable that
trainboard uses and MLflow does not document lives behind a function here.

Written against MLflow 3.17 (pyproject pins ``mlflow>=3.17,<4``). An MLflow upgrade that
moves one of them fails ``tests/test_compat_mlflow.py``, which names what moved; the fix
then belongs here alone. Nothing imports mlflow at module level (it takes seconds): the
callers import it, or these functions do when called.
"""

from __future__ import annotations

import os
from typing import Any

# The variables `mlflow server` sets for its workers, naming the store and the default artifact
# root: mlflow.server.constants.BACKEND_STORE_URI_ENV_VAR and ARTIFACT_ROOT_ENV_VAR (MLflow 2 and 3).
SERVER_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
SERVER_ARTIFACT_ROOT_ENV = "_MLFLOW_SERVER_ARTIFACT_ROOT"
# The module globals of mlflow.server.handlers that cache the server's stores, made on first use
# (_job_store since MLflow 3.x; a missing one is skipped).
SERVER_STORE_CACHES = ("_tracking_store", "_model_registry_store", "_job_store")


def metric_objects(run_data: Any) -> list[Any] | None:
    """The latest ``Metric`` entities (key, value, step, timestamp) of a run as ``get_run``
    returned it: ``RunData._metric_objs`` (MLflow 2 and 3). The public ``RunData.metrics``
    holds the values only. None when this MLflow has no such attribute."""
    objs = getattr(run_data, "_metric_objs", None)
    return list(objs) if objs is not None else None


def point_server_at_store(backend_uri: str, artifact_root: str) -> None:
    """Set the variables MLflow's tracking server reads its store and artifact root from
    (as ``mlflow server`` sets them for its workers): :data:`SERVER_STORE_ENV` and
    :data:`SERVER_ARTIFACT_ROOT_ENV`. Call it before importing ``mlflow.server``."""
    os.environ[SERVER_STORE_ENV] = backend_uri
    os.environ[SERVER_ARTIFACT_ROOT_ENV] = artifact_root


def reset_server_stores(handlers: Any) -> None:
    """Forget the stores ``mlflow.server.handlers`` cached in its module globals
    (:data:`SERVER_STORE_CACHES`), so that the next request makes them anew: a second
    server in one process (tests, an attach after a run) must not get the first one's."""
    for name in SERVER_STORE_CACHES:
        if getattr(handlers, name, None) is not None:
            setattr(handlers, name, None)


def open_server_store(handlers: Any, backend_uri: str, artifact_root: str) -> Any:
    """Make the server's tracking store now, so that a bad store fails here and not on the
    first request: ``mlflow.server.handlers._get_tracking_store(uri, artifact_root)``
    (MLflow 2 and 3), which caches it in ``handlers._tracking_store``."""
    return handlers._get_tracking_store(backend_uri, artifact_root)


def tracking_app(backend_uri: str, artifact_root: str) -> Any:
    """MLflow's tracking server (its WSGI app, ``mlflow.server.app``) serving ``backend_uri``,
    with its store made. A second call in one process serves the second store."""
    point_server_at_store(backend_uri, artifact_root)
    from mlflow.server import app, handlers

    reset_server_stores(handlers)
    open_server_store(handlers, backend_uri, artifact_root)
    return app

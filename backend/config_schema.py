"""The config's schema: one pydantic model per section, strict about types and values."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trainboard.backend.config_base import _ENV_NAME, _Strict
from trainboard.backend.config_errors import _GateError, _SettingError
from trainboard.backend.config_runners import (  # noqa: F401  (re-exported: the config's runner models)
    _RUNNER_MODELS,
    DEFAULT_AMI,
    Ec2RunnerConfig,
    LocalRunnerConfig,
    RayRunnerConfig,
    RunnerConfig,
    SshRunnerConfig,
)
from trainboard.backend.config_yaml import _visible


class JobConfig(_Strict):
    workdir: str = "."
    setup: list[str] = Field(default_factory=list)
    command: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout_minutes: float | None = Field(default=None, gt=0)
    outputs: list[str] = Field(default_factory=list)
    params_schema: str = ""  # a YAML file of the params the job reads, with their defaults
    processes: int = Field(default=1, ge=1, le=1024)  # > 1: the command runs under torchrun, once per rank
    gpus: int = Field(default=0, ge=0, le=1024)  # GPUs the job uses on its machine (TRAINBOARD_GPUS)

    @field_validator("env", mode="before")
    @classmethod
    def _env_scalars(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                name = str(key)
                if not _ENV_NAME.fullmatch(name):
                    raise _SettingError(f"job.env.{name}",
                                        f"{_visible(name)!r} is not a name an environment variable can have",
                                        "use letters, digits and _, not starting with a digit (no '=', "
                                        "no spaces), e.g. HF_HOME")
                if isinstance(item, dict | list) or item is None:
                    raise ValueError(f"env value for {_visible(name)!r} must be a string or number")
                text = str(item).lower() if isinstance(item, bool) else str(item)
                if "\0" in text:
                    raise _SettingError(f"job.env.{name}", "the value holds a NUL character",
                                        "remove it: an environment variable cannot carry one")
                out[name] = text
            return out
        return value

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir_relative(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError("must be a path inside the repository, relative to its root")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs_relative(cls, value: list[str]) -> list[str]:
        for item in value:
            path = Path(item)
            if path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{_visible(item)!r} must be relative to the job's workdir")
        return value


class MlflowConfig(_Strict):
    tracking_uri: str = "sqlite:///.trainboard/mlflow.db"
    experiment: str = "trainboard"
    poll_interval: float = Field(default=2.0, gt=0, le=300)

    @field_validator("tracking_uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value.startswith("file:"):
            # MLflow 3 keeps its file store in maintenance mode and refuses to open one unless
            # MLFLOW_ALLOW_FILE_STORE=true: the run would create its MLflow run (or serve the store
            # to a remote runner) only after the runner is up, and fail there.
            raise _SettingError(
                "mlflow.tracking_uri",
                "MLflow's file store (file:) is in maintenance mode: MLflow refuses to open it, so the run "
                "would fail after it started",
                "use sqlite:///.trainboard/mlflow.db (`mlflow migrate-filestore` moves an existing mlruns "
                "folder into it) or an http(s):// tracking server")
        if not re.match(r"^(sqlite:///|https?://|databricks|(postgresql|mysql|mssql)(\+\w+)?://)", value):
            raise ValueError("must start with sqlite:///, http://, https://, postgresql:// or mysql://")
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class MetricSpec(_Strict):
    display: str | None = None
    goal: Literal["max", "min"] = "max"
    digits: int = Field(default=4, ge=0, le=10)


class Gate(_Strict):
    min: float | None = None
    max: float | None = None
    min_delta: float | None = None
    max_delta: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Gate:
        if all(v is None for v in (self.min, self.max, self.min_delta, self.max_delta)):
            raise ValueError("a gate needs at least one of min, max, min_delta, max_delta")
        return self

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.min_delta is not None:
            parts.append(f"Δ >= {self.min_delta:+g}")
        if self.max_delta is not None:
            parts.append(f"Δ <= {self.max_delta:+g}")
        return ", ".join(parts)


class CompareConfig(_Strict):
    base: str = "main"
    gates: dict[str, Gate] = Field(default_factory=dict)
    # A base-branch run records its result in git notes (refs/notes/trainboard, pushed to the
    # remote); a run without an MLflow baseline looks it up there. false: neither.
    git_notes: bool = True


class DvcConfig(_Strict):
    """Outputs tracked with DVC and pushed from the runner; a dvc.yaml's metrics read beside MLflow."""

    outputs: list[str] = Field(default_factory=list)  # relative to job.workdir, e.g. [model/]
    remote: str = ""  # a folder (absolute) or a URL such as s3://bucket/prefix; "" = <repo>/.trainboard/dvc-storage
    endpoint_url: str = ""  # an S3-compatible endpoint; "" = AWS_ENDPOINT_URL when set, else AWS

    @field_validator("outputs")
    @classmethod
    def _outputs_relative(cls, value: list[str]) -> list[str]:
        for item in value:
            path = Path(item)
            if not item.strip() or path.is_absolute() or ".." in path.parts:
                raise ValueError(f"{_visible(item)!r} must be a path relative to the job's workdir")
        return value

    @field_validator("remote")
    @classmethod
    def _remote_shape(cls, value: str) -> str:
        if value and not (value.startswith("/") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S", value)):
            raise ValueError("must be an absolute folder or a URL such as s3://bucket/prefix")
        return value


class GithubConfig(_Strict):
    """The pull request: where to publish, and when."""

    # ci: at the end of a run inside GitHub Actions (GITHUB_ACTIONS=true); always: every
    # run (a missing GITHUB_TOKEN stops it before anything starts); never: only
    # `trainboard pr RUN` or the dashboard's p.
    publish: Literal["ci", "always", "never"] = "ci"
    repo: str = ""  # owner/name; default: parsed from the git remote's URL
    remote: str = "origin"  # the git remote the outputs branch is pushed to (a fork: yours)
    # "" = https://api.github.com, or https://HOST/api/v3 when the remote is on another host
    # (GitHub Enterprise Server); set it when the API lives elsewhere.
    api_url: str = ""
    web_url: str = ""  # default: derived from api_url (github.com)
    statuses: bool = True  # a commit status per gated metric (trainboard/<metric>): a merge check

    @field_validator("repo")
    @classmethod
    def _owner_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value):
            raise ValueError("must be owner/name, e.g. acme/intent-models")
        return value

    @field_validator("api_url", "web_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://", value):
            raise ValueError("must start with https:// (or http://)")
        return value.rstrip("/")


class ReportConfig(_Strict):
    log_lines: int = Field(default=30, ge=0, le=1000)


class SweepConfig(_Strict):
    """Many runs of one change: each setting's values in Hydra's override grammar (see sweep_spec)."""

    params: dict[str, str] = Field(default_factory=dict)  # setting -> values, e.g. "1e-4,5e-5"; {} = one run
    mode: Literal["grid", "random"] = "grid"
    max_runs: int | None = Field(default=None, ge=1)  # grid: the first N; random: how many to draw
    max_parallel: int = Field(default=2, ge=1)
    seed: int = 0  # random mode's draws
    objective: str = ""  # the metric that picks the best member; "" = the first metric with a goal


class BudgetConfig(_Strict):
    """What a run (or a whole sweep) may cost: refused at check when its projection passes the cap,
    stopped and torn down when its spend reaches it (see trainboard.backend.budget)."""

    max_cost_usd: float | None = Field(default=None, gt=0)  # USD; None: no cap


class RunConfig(_Strict):
    name: str = "trainboard"
    runner: RunnerConfig = Field(default_factory=LocalRunnerConfig)
    job: JobConfig
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    metrics: dict[str, MetricSpec] = Field(min_length=1)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    params: dict[str, Any] = Field(default_factory=dict)
    report: ReportConfig = Field(default_factory=ReportConfig)
    dvc: DvcConfig = Field(default_factory=DvcConfig)
    github: GithubConfig = Field(default_factory=GithubConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @model_validator(mode="after")
    def _gates_name_metrics(self) -> RunConfig:
        for key in self.compare.gates:
            if key not in self.metrics:
                raise _GateError(key, sorted(self.metrics))
        return self

    def display_name(self, key: str) -> str:
        spec = self.metrics.get(key)
        return (spec.display if spec and spec.display else key)

    def params_hash(self) -> str:
        blob = json.dumps(self.params, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

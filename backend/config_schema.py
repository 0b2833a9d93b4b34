"""The config's schema: one pydantic model per section, strict about types and values."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainboard.backend.config_errors import _GateError, _SettingError
from trainboard.backend.config_yaml import _visible

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Strict(BaseModel):
    # strict: true is not 1 and 1 is not true, "5" is not a number; finite numbers only.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class LocalRunnerConfig(_Strict):
    kind: Literal["local"] = "local"


class _SshOptions(_Strict):
    """Connection settings shared by the ssh and ec2 runners."""

    remote_dir: str = "~/.trainboard/runs"  # where run folders go on the host (the run id is appended)
    keepalive_seconds: float = Field(default=15, gt=0, le=600)
    connect_timeout: float = Field(default=20, gt=0, le=600)
    reconnect_timeout: float = Field(default=300, gt=0)  # give up when the host stays away this long
    # no answer from the host this long (a blackhole, a half-open connection): reconnect, and say so
    stall_timeout: float = Field(default=10, gt=0, le=600)
    # the dead-man switch: a job whose trainboard has said nothing this long (killed, or the host
    # unreachable for good) is stopped by the host itself; a detached run is left alone; 0: never
    orphan_timeout: float = Field(default=900, ge=0, le=7 * 24 * 3600)

    @field_validator("remote_dir")
    @classmethod
    def _remote_dir_plain(cls, value: str) -> str:
        if not value.strip() or "\n" in value:
            raise ValueError("must be a folder path on the host, e.g. ~/.trainboard/runs")
        return value


class SshRunnerConfig(_SshOptions):
    kind: Literal["ssh"]
    host: str  # a host name, address or ~/.ssh/config alias
    port: int | None = Field(default=None, ge=1, le=65535)  # default: ~/.ssh/config, else 22
    user: str | None = None  # default: ~/.ssh/config, else the local user
    identity_file: str | None = None  # default: ~/.ssh/config, else the agent and ~/.ssh/id_*
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts; host keys are always verified
    ssh_config: str | None = None  # default: ~/.ssh/config when it exists
    hosts: list[str] = Field(default_factory=list)  # a sweep's pool (host or host:port): a member each at a time

    @field_validator("host")
    @classmethod
    def _host_named(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be a host name, address or ~/.ssh/config alias")
        return value


DEFAULT_AMI = "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


class Ec2RunnerConfig(_SshOptions):
    kind: Literal["ec2"]
    region: str | None = None  # default: the AWS config chain (AWS_REGION, profile)
    instance_type: str = "t3.large"
    ami: str = DEFAULT_AMI  # an image id, or ssm:<public parameter> resolved at run time
    user: str = "ec2-user"  # the image's login user (ubuntu for Ubuntu images)
    disk_gb: int = Field(default=30, ge=8, le=16384)
    subnet_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)  # use these instead of a per-run group
    ssh_cidr: str = "auto"  # who may reach port 22: auto = this machine's public address /32
    market: Literal["on-demand", "spot"] = "on-demand"
    max_price: float | None = Field(default=None, gt=0)  # spot: USD per hour at most
    fallback_to_on_demand: bool = False  # spot capacity missing: launch on-demand instead
    key_name: str | None = None  # the user's EC2 key pair instead of a per-run one ...
    identity_file: str | None = None  # ... and its private key file
    max_duration_minutes: float = Field(default=240, gt=0)  # the instance shuts itself down after this
    idle_timeout_minutes: float = Field(default=15, gt=0)  # ... and this long after the job ended
    hourly_price: float | None = Field(default=None, ge=0)  # USD; default: spot price or the built-in table
    owner: str | None = None  # default: the AWS caller's identity
    tags: dict[str, str] = Field(default_factory=dict)
    # An IAM instance profile (name or ARN) for the instance: the job (and the DVC push
    # to S3) then use its role, and no AWS keys are handed to the runner.
    instance_profile: str | None = None

    @field_validator("ami")
    @classmethod
    def _ami_shape(cls, value: str) -> str:
        if not (value.startswith("ami-") or value.startswith("ssm:/")):
            raise ValueError("must be an image id (ami-...) or ssm:/path/of/a/public/parameter")
        return value

    @field_validator("ssh_cidr")
    @classmethod
    def _cidr_shape(cls, value: str) -> str:
        import ipaddress

        if value != "auto":
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError("must be auto or a CIDR block such as 203.0.113.7/32") from None
        return value

    @model_validator(mode="after")
    def _key_pair_whole(self) -> Ec2RunnerConfig:
        if (self.key_name is None) != (self.identity_file is None):
            missing = "identity_file" if self.identity_file is None else "key_name"
            raise _SettingError(f"runner.{missing}", "key_name and identity_file go together",
                                "set both (your EC2 key pair and its private key file), or neither for a per-run key")
        if self.max_price is not None and self.market != "spot":
            raise _SettingError("runner.max_price", "max_price applies to spot instances only",
                                "set market: spot, or remove max_price")
        return self


class RayRunnerConfig(_Strict):
    """A Ray cluster's job server (``address``), or a head trainboard starts here (``local``)."""

    kind: Literal["ray"]
    address: str | None = None  # the job server (the dashboard), e.g. http://head:8265
    local: bool = False  # start a Ray head on 127.0.0.1 for the run, and stop it at its end
    num_cpus: float = Field(default=1, ge=0)  # the job's entrypoint resources on the cluster
    num_gpus: float = Field(default=0, ge=0)
    # stopping the job: SIGTERM, then SIGKILL this long after (Ray's RAY_JOB_STOP_WAIT_TIME_S)
    stop_wait_seconds: int = Field(default=30, ge=0, le=3600)
    token_env: str | None = None  # the name of a variable holding a bearer token for the job server
    connect_timeout: float = Field(default=20, gt=0, le=600)

    @field_validator("address")
    @classmethod
    def _address_url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                raise ValueError("must be the URL of a Ray job server, e.g. http://head-node:8265")
        return value

    @field_validator("token_env")
    @classmethod
    def _token_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError("must be the name of an environment variable (its value is the token), e.g. RAY_TOKEN")
        return value

    @model_validator(mode="after")
    def _one_cluster(self) -> RayRunnerConfig:
        if (self.address is None) == (not self.local):
            both = self.address is not None
            raise _SettingError("runner.address" if both else "runner.local",
                                "address and local: true both say where the cluster is" if both
                                else "the Ray runner needs a cluster",
                                "set address: http://HEAD:8265 (an existing cluster's job server), "
                                "or local: true (a head on this machine for the run), not both")
        return self


RunnerConfig = Annotated[LocalRunnerConfig | SshRunnerConfig | Ec2RunnerConfig | RayRunnerConfig,
                         Field(discriminator="kind")]


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


_RUNNER_MODELS: dict[str, type[BaseModel]] = {
    "local": LocalRunnerConfig,
    "ssh": SshRunnerConfig,
    "ec2": Ec2RunnerConfig,
    "ray": RayRunnerConfig,
}

"""The config's runner section: one model per ``runner.kind`` (local, ssh, ec2, ray)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from trainboard.backend.config_base import _ENV_NAME, _Strict
from trainboard.backend.config_errors import _SettingError


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
    # the cluster's nodes see this machine's files (a head of yours on this machine, or the same
    # shared mount): the job opens a SQLite MLflow store and leaves its outputs here directly
    shared_filesystem: bool = False
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


_RUNNER_MODELS: dict[str, type[BaseModel]] = {
    "local": LocalRunnerConfig,
    "ssh": SshRunnerConfig,
    "ec2": Ec2RunnerConfig,
    "ray": RayRunnerConfig,
}

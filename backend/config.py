"""The run's config: schema, loading with line numbers, and `--set` overrides.

A bad config raises :class:`ConfigError`, which names the file, the line, the
setting and the fix. Nothing is started before :func:`load_config` returns.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Path_ = tuple[str, ...]


class ConfigError(Exception):
    """A config problem a user can fix. ``str()`` is the whole message."""

    def __init__(
        self,
        message: str,
        *,
        file: str,
        line: int | None = None,
        setting: str = "",
        fix: str = "",
        source: str = "",
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.setting = setting
        self.fix = fix
        self.source = source  # "--set a.b=..." when the value came from the command line
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.source:
            where = f"{where} (overridden by {self.source})" if self.line else self.source
        head = f"{where}: {self.setting}: {self.message}" if self.setting else f"{where}: {self.message}"
        return f"{head}\n  fix: {self.fix}" if self.fix else head


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


RunnerConfig = Annotated[LocalRunnerConfig | SshRunnerConfig | Ec2RunnerConfig, Field(discriminator="kind")]


class JobConfig(_Strict):
    workdir: str = "."
    setup: list[str] = Field(default_factory=list)
    command: str
    env: dict[str, str] = Field(default_factory=dict)
    timeout_minutes: float | None = Field(default=None, gt=0)
    outputs: list[str] = Field(default_factory=list)

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


class _SettingError(ValueError):
    """A rule across settings, blamed on one of them."""

    def __init__(self, setting: str, message: str, fix: str) -> None:
        self.setting, self.message, self.fix = setting, message, fix
        super().__init__(message)


class _GateError(ValueError):
    def __init__(self, key: str, known: list[str]) -> None:
        self.key = key
        self.known = known
        super().__init__(f"gate for unknown metric {key!r}")


@dataclass(frozen=True)
class LoadedConfig:
    config: RunConfig
    path: Path
    overrides: tuple[str, ...]
    raw: dict[str, Any]
    lines: dict[Path_, int] = field(default_factory=dict)

    def error(self, setting: str, message: str, fix: str = "") -> ConfigError:
        """A ConfigError about ``setting`` pointing at the line that sets it."""
        keys = tuple(setting.split("."))
        line = None
        while keys and line is None:
            line, keys = self.lines.get(keys), keys[:-1]
        source = next((f"--set {o}" for o in self.overrides if o.partition("=")[0].strip() == setting), "")
        return ConfigError(message, file=str(self.path), line=line, setting=setting, fix=fix, source=source)


# --------------------------------------------------------------------------- loading
#
# The loader refuses, quickly and with a line, what it cannot handle: a file over
# MAX_FILE_BYTES (checked before it is read whole), NUL and other control
# characters, text that is not UTF-8, values nested deeper than MAX_DEPTH, more
# than MAX_VALUES values once aliases are expanded (so "billion laughs" stops at
# the alias that crosses the budget, in milliseconds), recursive aliases, numbers
# written with more than MAX_NUMBER_CHARS characters and mapping keys that are
# not names. The file is parsed once: libyaml scans it, and the document is
# composed here, where the limits are counted.

MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 20_000
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
MAX_OVERRIDE_CHARS = 64 * 1024

# C0 and C1 controls but tab, LF and CR; DEL; the line and paragraph separators
# (YAML counts them as line breaks, editors do not); bidirectional overrides (they
# make text read differently from what it is); BOM past the start; non-characters.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ufeff\ufffe\uffff\ud800-\udfff]")
_LINE_BREAK = re.compile(r"\r\n?|\n")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """Input the loader will not take, at a 1-based line (None where the text has no lines)."""

    def __init__(self, message: str, fix: str, line: int | None = None) -> None:
        self.message, self.fix, self.line = message, fix, line
        super().__init__(message)


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        self.key, self.line, self.first = key, line, first


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X}" + (" (NUL)" if char == "\0" else "")


def _visible(text: str, limit: int = 80) -> str:
    """``text`` fit for a message: control characters escaped, long text cut."""
    shown = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _unprintable_refusal(text: str, what: str, columns: bool = True) -> _Refused | None:
    """A refusal of the first control character in ``text``, at its line (and column)."""
    match = _UNPRINTABLE.search(text)
    if match is None:
        return None
    index = match.start()
    line = len(_LINE_BREAK.findall(text, 0, index)) + 1
    column = index - max(text.rfind("\n", 0, index), text.rfind("\r", 0, index))
    where = f" (column {column})" if columns else ""
    return _Refused(f"{what} holds the control character {_char_name(match.group())}{where}",
                    "delete it (most editors do not show it); a config is plain text", line)


try:  # libyaml scans and parses in C, about four times faster than PyYAML's Python parser
    from yaml._yaml import CParser as _Events
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Events(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _LineLoader(_Events, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader that composes in Python, counting values, depth and alias expansion,
    and refuses duplicate keys (YAML would silently keep the last) and keys that are not names."""

    def __init__(self, stream: str) -> None:
        _Events.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.values = 0  # values composed so far, each alias counted as the values it stands for
        self.depth = 0
        self.sizes: dict[str, int] = {}  # anchor -> the values its node holds (set once composed)

    get_single_node = yaml.composer.Composer.get_single_node  # not libyaml's: it composes in C, uncounted

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event: Any = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            anchor = str(event.anchor)
            if anchor in self.anchors:  # else Composer says "found undefined alias"
                size = self.sizes.get(anchor)
                if size is None:
                    raise _Refused(f"the alias *{_visible(anchor)} is inside the value it refers to "
                                   "(a recursive alias)",
                                   "write the value out, or anchor a value that does not contain its alias", line)
                self._count(size, line, anchor)
            return super().compose_node(parent, index)  # type: ignore[return-value]
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(f"values are nested more than {MAX_DEPTH} deep",
                           "flatten the structure; a config this deep is not one a person wrote", line)
        before = self.values
        self._count(1, line, "")
        node = super().compose_node(parent, index)
        self.depth -= 1
        if event.anchor is not None:
            self.sizes[str(event.anchor)] = self.values - before
        return node  # type: ignore[return-value]

    def _count(self, size: int, line: int, alias: str) -> None:
        self.values += size
        if self.values > MAX_VALUES:
            if alias:
                raise _Refused(f"the alias *{_visible(alias)} expands beyond {MAX_VALUES:,} values "
                               "(aliases that repeat aliases grow exponentially)",
                               "write the values out, or use fewer aliases", line)
            raise _Refused(f"more than {MAX_VALUES:,} values", "keep data out of the config: put it in a file "
                           "the job reads, and name that file in params", line)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise _Refused(f"a number written with {len(node.value):,} characters (at most {MAX_NUMBER_CHARS})",
                           "write a number of sensible size; quote it if it is meant as text", line)
        try:
            value = super().construct_object(node, deep=deep)
        except (_Refused, _DuplicateKey, yaml.YAMLError):
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:  # e.g. !!timestamp 2024-13-01, !!float abc
            raise _Refused(f"cannot read this value: {_visible(str(exc))}",
                           "write a plain value; quote it to make it text", line) from None
        if isinstance(value, str):  # escapes in double quotes ("\0", "\x07") make what the text did not show
            refusal = _unprintable_refusal(value, "this value (through an escape)", columns=False)
            if refusal is not None:
                refusal.line = line
                raise refusal
        return value


def _key_kind(key: Any) -> str:
    if isinstance(key, bool):
        return "true/false (YAML reads yes, no, on and off as booleans)"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return "a number"
    if isinstance(key, list | tuple):
        return "a list"
    if isinstance(key, dict):
        return "a mapping"
    return f"a {type(key).__name__}"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:  # `<<: *base`: SafeConstructor merges it below
            continue
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            fix = (f"quote it: '{_visible(str(key_node.value))}': ..." if isinstance(key_node, yaml.ScalarNode)
                   else "write a name before the colon; a list or a mapping cannot be a key")
            raise _Refused(f"a key must be a name, and this one is {_key_kind(key)}", fix, line)
        if key in seen:
            raise _DuplicateKey(key, line, seen[key])
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[type-var]


def _parse(text: str) -> tuple[Any, dict[Path_, int]]:
    """YAML ``text`` -> (data, line map), within the limits above. Raises _Refused,
    _DuplicateKey, yaml.YAMLError."""
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        lines = _line_map(node)
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    _check_keys(data, lines)
    return data, lines


def _check_keys(data: Any, lines: dict[Path_, int], path: Path_ = ()) -> None:
    """Every mapping key a name, wherever it came from (merges included)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise _Refused(f"{'.'.join(path) or 'the top level'}: a key must be a name, and one is "
                               f"{_key_kind(key)}", "quote the key", _line_of(lines, path))
            _check_keys(value, lines, (*path, key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            _check_keys(item, lines, (*path, str(index)))


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path``, or of the nearest written setting above it."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _line_map(node: yaml.Node | None, path: Path_ = (), out: dict[Path_, int] | None = None) -> dict[Path_, int]:
    """Every setting's dotted path -> the 1-based line where it is written."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # not a name: construction refuses it, with its line
            key_path = (*path, str(key_node.value))
            if key_path in out:  # name the whole path: `command` alone could be anywhere
                raise _DuplicateKey(".".join(key_path), key_node.start_mark.line + 1, out[key_path])
            out[key_path] = key_node.start_mark.line + 1
            _line_map(value_node, key_path, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, str(index))
            out[item_path] = item.start_mark.line + 1
            _line_map(item, item_path, out)
    return out


def _read(path: Path, shown: str) -> str:
    """The file's text: at most MAX_FILE_BYTES, UTF-8, no control characters."""
    try:
        with path.open("rb") as handle:  # read no more than the cap: /dev/zero is a "file" too
            blob = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            "no such file", file=shown, fix="pass the path of your params file, e.g. sample_params.yaml"
        ) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a file", file=shown,
                          fix="pass the path of your params file, e.g. sample_params.yaml") from None
    except (OSError, ValueError) as exc:  # permissions, a name too long, a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read it: {reason}", file=shown, fix="pass a readable file") from None
    if len(blob) > MAX_FILE_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; the limit is passed on this line",
            file=shown, line=len(_LINE_BREAK.findall(blob[:MAX_FILE_BYTES].decode("latin-1"))) + 1,
            fix="keep data out of the config: put it in a file the job reads, and name that file in params")
    nul = blob.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"a NUL byte at offset {nul}: this is not a text file",
                          file=shown, line=len(_LINE_BREAK.findall(blob[:nul].decode("latin-1"))) + 1,
                          fix="pass the YAML config, saved as UTF-8 text")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: byte 0x{blob[exc.start]:02x} at offset {exc.start}", file=shown,
                          line=len(_LINE_BREAK.findall(blob[: exc.start].decode("latin-1"))) + 1,
                          fix="save the file as UTF-8") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark at the start is allowed
    refusal = _unprintable_refusal(text, "this line")
    if refusal is not None:
        raise ConfigError(refusal.message, file=shown, line=refusal.line, fix=refusal.fix)
    return text


_FIXES: dict[str, str] = {
    "missing": "add it; sample_params.yaml documents every setting",
    "extra_forbidden": "remove it or check its spelling; sample_params.yaml lists the settings",
    "literal_error": "use one of the values named above",
    "float_parsing": "write a number",
    "float_type": "write a number, unquoted (true and false are not numbers)",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number, unquoted (true and false are not numbers)",
    "int_from_float": "write a whole number",
    "bool_type": "write true or false (a number is not a boolean)",
    "finite_number": "write a finite number (.inf and .nan are not allowed here)",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "too_short": "add at least one entry",
    "dict_type": "write a mapping (key: value lines indented below it)",
    "model_type": "write a mapping (key: value lines indented below it)",
    "list_type": "write a list (lines starting with '- ')",
    "string_type": "write a string; quote it if YAML reads it as something else",
}

_SETTING_FIXES: dict[str, str] = {
    "runner.kind": "use kind: local (this machine), ssh (a host you can SSH into) or ec2 (a fresh instance)",
    "job.command": 'set job.command to the command that trains, e.g. "python train.py"',
    "metrics": "list the metrics to follow, e.g. metrics: {f1: {goal: max}}",
    "mlflow.tracking_uri": "e.g. sqlite:///.trainboard/mlflow.db or http://mlflow.internal:5000",
}


def _apply_override(data: dict[str, Any], item: str) -> Path_:
    shown = f"--set {_visible(item)}"
    if len(item) > MAX_OVERRIDE_CHARS:
        raise ConfigError(f"the override is {len(item):,} characters long (at most {MAX_OVERRIDE_CHARS:,})",
                          file="--set", source=shown, fix="put large values in a file the job reads")
    refusal = _unprintable_refusal(item, "the override")
    if refusal is not None:
        raise ConfigError(refusal.message, file="--set", source=shown, fix=refusal.fix)
    if "=" not in item:
        raise ConfigError(
            f"override {_visible(item)!r} is not of the form a.b=value",
            file="--set",
            source=shown,
            fix="write --set job.command='python train.py' or --set params.epochs=2",
        )
    dotted, _, text = item.partition("=")
    dotted = dotted.strip()
    keys = tuple(k for k in dotted.split(".") if k)
    if not keys:
        raise ConfigError(f"override {_visible(item)!r} names no setting", file="--set", source=shown,
                          fix="write --set a.b=value")
    if len(keys) > MAX_DEPTH:
        raise ConfigError(f"the setting is nested more than {MAX_DEPTH} deep", file="--set",
                          setting=_visible(dotted), source=shown, fix="name a setting of the config")
    try:
        value, _ = _parse(text) if text.strip() else ("", {})
    except _Refused as exc:
        raise ConfigError(f"its value: {exc.message}", file="--set", setting=_visible(dotted), source=shown,
                          fix=exc.fix) from None
    except (yaml.YAMLError, _DuplicateKey):
        value = text  # not YAML: the text as it is
    if isinstance(value, str) and value.strip() == text.strip():
        try:  # YAML 1.1 reads 1e-4 as a string; on the command line it means a number
            value = float(value) if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()) else value
        except ValueError:
            pass
    node: Any = data
    for key in keys[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[key] = child
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set {_visible(dotted)}: {_visible(key)} is not a mapping",
                file="--set",
                setting=_visible(dotted),
                source=shown,
                fix=f"override {key} itself, or a key of a mapping",
            )
        node = child
    node[keys[-1]] = value
    return keys


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError, and nothing else."""
    path = Path(path)
    shown = _visible(str(path), 200)
    text = _read(path, shown)
    try:
        data, lines = _parse(text)
    except _Refused as exc:
        raise ConfigError(exc.message, file=shown, line=exc.line, fix=exc.fix) from None
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{_visible(dup.key)!r} is set twice (first on line {dup.first})",
            file=shown,
            line=dup.line,
            setting=_visible(dup.key),
            fix="keep one of them",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"not valid YAML: {_visible(str(exc.problem or exc), 200)}",
            file=shown,
            line=mark.line + 1 if mark else None,
            fix="check the indentation and quoting on that line",
        ) from None
    except yaml.YAMLError as exc:  # no position known (libyaml's own failures)
        raise ConfigError(f"not valid YAML: {_visible(str(exc), 200)}", file=shown, line=1,
                          fix="check the file is the YAML config") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", file=shown, line=1,
                          fix="start from sample_params.yaml")
    overridden: dict[Path_, str] = {}
    for item in overrides:
        keys = _apply_override(data, item)
        overridden[keys] = f"--set {_visible(item)}"

    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, shown, lines, overridden) from None
    return LoadedConfig(config=config, path=path, overrides=tuple(overrides), raw=data, lines=lines)


def _explain(exc: ValidationError, file: str, lines: dict[Path_, int], overridden: dict[Path_, str]) -> ConfigError:
    """Turn pydantic's first error into a ConfigError with file, line, setting and fix."""
    errors = exc.errors()
    # An unknown key is usually a misspelt one: name it rather than the "missing"
    # setting its typo causes (`jobb:` would otherwise report `job: Field required`).
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(str(part) for part in error["loc"])
    runner_kind = ""
    if len(loc) > 1 and loc[0] == "runner" and loc[1] in _RUNNER_MODELS:
        runner_kind, loc = loc[1], (loc[0], *loc[2:])  # drop pydantic's union tag
    kind = error["type"]
    message = error["msg"]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _GateError):
        loc = ("compare", "gates", ctx_error.key)
        message = f"no metric named {_visible(ctx_error.key)!r} is followed"
        fix = f"gate one of the metrics: {_visible(', '.join(ctx_error.known), 200)}, or add it under metrics"
    elif isinstance(ctx_error, _SettingError):
        loc, message, fix = tuple(ctx_error.setting.split(".")), ctx_error.message, ctx_error.fix
    elif kind == "union_tag_invalid":
        loc = (*loc, "kind")
        message = f"unknown runner kind {_visible(str((error.get('ctx') or {}).get('tag')))!r}"
        fix = _SETTING_FIXES["runner.kind"]
    else:
        message = message.removeprefix("Value error, ")
        setting = ".".join(loc)
        fix = _SETTING_FIXES.get(setting, "") if kind != "extra_forbidden" else ""
        fix = fix or _FIXES.get(kind, "see the comments in sample_params.yaml")
        if kind == "extra_forbidden":
            message = "unknown setting"
            known = list(_RUNNER_MODELS[runner_kind].model_fields) if runner_kind else _settings_at(loc[:-1])
            near = difflib.get_close_matches(loc[-1], known, n=1)
            if near:
                fix = f"did you mean {near[0]!r}? Otherwise remove it"
                fix += " (sample_params.yaml lists the settings)"
    # The deepest written path names the line; a missing key points at its parent.
    probe = loc
    line = None
    while probe:
        if probe in lines:
            line = lines[probe]
            break
        probe = probe[:-1]
    source = ""
    for keys, text in overridden.items():
        if loc[: len(keys)] == keys or keys[: len(loc)] == loc:
            source = text
            break
    return ConfigError(message, file=file, line=line, setting=_visible(".".join(loc), 120), fix=fix, source=source)


_RUNNER_MODELS: dict[str, type[BaseModel]] = {
    "local": LocalRunnerConfig,
    "ssh": SshRunnerConfig,
    "ec2": Ec2RunnerConfig,
}


def _settings_at(loc: Path_) -> list[str]:
    """The setting names the schema allows in the mapping at ``loc`` (for "did you mean")."""
    kind: Any = RunConfig
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(part)
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) is dict:
            kind = get_args(kind)[1]  # a key of metrics or gates: its value's schema
        else:
            return []
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []

"""The `ec2` runner: a fresh EC2 instance for the run, then the SSH runner on it.

``provision()`` keeps the number of *sequential* AWS round trips small by issuing
independent calls together (boto3 is blocking: each call runs in a worker thread):

1. preflight (:mod:`.preflight`), all at once: the reads, and DryRun calls of what is
   created; a missing IAM permission is a :class:`PreflightError` naming the actions,
   raised before anything exists;
2. ``ImportKeyPair`` (a per-run ed25519 key made here) and ``CreateSecurityGroup``;
3. ``AuthorizeSecurityGroupIngress`` (tcp/22 from ``ssh_cidr`` only) and ``RunInstances``;
4. ``DescribeInstances`` with backoff until the instance runs with an address (:mod:`.launch`);
   then SSH, verified with a host key made here and injected through the user data.

Every resource carries the tags ``trainboard:run-id``, ``trainboard:owner`` and
``trainboard:expires-at`` (which ``trainboard reap`` reads) and is written to
``<run_dir>/resources.json`` as soon as it exists, so even a crash leaves a trail.
The user data (:mod:`.userdata`) also installs a watchdog (``instance_watchdog.sh``)
that shuts the instance down (which terminates it) after ``max_duration_minutes``,
``idle_timeout_minutes`` after the job ended, and that turns a spot interruption
notice into an ``interruption`` file in the run folder plus SIGTERM to the job.
Teardown (:mod:`.teardown`) is shared with ``trainboard reap``.

The modules: :mod:`.client` (session, clients, worker threads), :mod:`.errors`,
:mod:`.context` (the run's settings, trail and tags), :mod:`.preflight`, :mod:`.launch`,
:mod:`.teardown`, :mod:`.pricing`, :mod:`.userdata`, and :mod:`.runner` (:class:`Ec2Runner`).

Test-only: ``TRAINBOARD_EC2_SSH_ADDRESS=host:port`` makes the SSH stage connect
there instead of the instance's address (tests point it at a local sshd standing
in for the instance). Never set it otherwise.
"""

from trainboard.backend.runners.ec2.client import aws_config, aws_session
from trainboard.backend.runners.ec2.context import (
    EXPIRY_MARGIN,
    KEY_FILE,
    RESOURCES_FILE,
    TAG_EXPIRES,
    TAG_OWNER,
    TAG_RUN,
    home_of,
    remote_runs_dir,
    tag_list,
)
from trainboard.backend.runners.ec2.errors import SPOT_FALLBACK_CODES, error_code, error_message
from trainboard.backend.runners.ec2.preflight import detect_public_cidr
from trainboard.backend.runners.ec2.pricing import ON_DEMAND_PRICES
from trainboard.backend.runners.ec2.runner import (
    INSTANCE_READY_TIMEOUT,
    SSH_ADDRESS_ENV,
    SSH_READY_TIMEOUT,
    Ec2Runner,
)
from trainboard.backend.runners.ec2.teardown import GROUP_DELETE_TIMEOUT, INFLIGHT_TIMEOUT, TERMINATE_TIMEOUT
from trainboard.backend.runners.ec2.userdata import cloud_config, watchdog_script

__all__ = [
    "EXPIRY_MARGIN",
    "GROUP_DELETE_TIMEOUT",
    "INFLIGHT_TIMEOUT",
    "INSTANCE_READY_TIMEOUT",
    "KEY_FILE",
    "ON_DEMAND_PRICES",
    "RESOURCES_FILE",
    "SPOT_FALLBACK_CODES",
    "SSH_ADDRESS_ENV",
    "SSH_READY_TIMEOUT",
    "TAG_EXPIRES",
    "TAG_OWNER",
    "TAG_RUN",
    "TERMINATE_TIMEOUT",
    "Ec2Runner",
    "aws_config",
    "aws_session",
    "cloud_config",
    "detect_public_cidr",
    "error_code",
    "error_message",
    "home_of",
    "remote_runs_dir",
    "tag_list",
    "watchdog_script",
]

"""AWS error codes the ec2 runner and `trainboard reap` act on, and how an error reads for people."""

from __future__ import annotations

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

# Launch errors that another market (on-demand) may not meet.
SPOT_FALLBACK_CODES = frozenset({
    "InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
})
# Not transient: botocore retries 5xx answers, but capacity does not come back in seconds.
NO_RETRY_CODES = SPOT_FALLBACK_CODES | {"InsufficientCapacity", "Unsupported"}
DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
                          "UnauthorizedAccess"})
# The thing to delete is gone already: teardown's goal is met.
GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "InvalidKeyPair.NotFound",
                        "InvalidSpotInstanceRequestID.NotFound"})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    """``Code: Message`` of a ClientError; the text (or the type's name) of anything else."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '')}: {err.get('Message', '')}".strip(": ")
    return str(exc) or type(exc).__name__

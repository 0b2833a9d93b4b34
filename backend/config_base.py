"""What every config section shares: strict models, and the shape of an environment variable's name."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Strict(BaseModel):
    # strict: true is not 1 and 1 is not true, "5" is not a number; finite numbers only.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

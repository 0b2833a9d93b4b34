"""CI mode: GitHub Actions workflow commands, the step summary, and `trainboard init`.

Under GitHub Actions (``GITHUB_ACTIONS=true``) the headless view folds each stage
into a ``::group::``, turns errors into ``::error::`` annotations, and appends the
report to ``$GITHUB_STEP_SUMMARY``. The exit code is the run's (1 on a failed gate).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

WORKFLOW_PATH = Path(".github") / "workflows" / "trainboard.yml"


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def group(title: str) -> str:
    return f"::group::{_escape_data(title)}"


def endgroup() -> str:
    return "::endgroup::"


def error(message: str, title: str = "trainboard") -> str:
    """An error annotation: shown on the run's summary page and in the log."""
    return f"::error title={_escape_property(title)}::{_escape_data(message)}"


def append_step_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    """Add ``markdown`` to the job's summary page; False when there is none (not in Actions)."""
    path = (env if env is not None else os.environ).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown.rstrip("\n") + "\n\n")
    return True


def workflow(config: str, install: str, python: str = "3.11", base: str = "main") -> str:
    """The GitHub Actions workflow `trainboard init` writes."""
    return f"""\
# Written by `trainboard init`. Pushes to {base} make its baseline; a pull request
# trains its change, compares it with {base} and keeps one report comment on it;
# a daily run and a manual one (any branch) do the same.
name: trainboard

on:
  push:
    branches: ["{base}"]
  pull_request:
  schedule:
    - cron: "17 3 * * *"  # daily, 03:17 UTC
  workflow_dispatch:

# The least the run needs: read the code, push the outputs branch, comment on
# pull requests, and (for AWS through OIDC) ask for an identity token.
permissions:
  contents: write
  pull-requests: write
  id-token: write

concurrency:
  group: trainboard-${{{{ github.ref }}}}
  cancel-in-progress: false  # a cancelled run still tears its instance down, but let it finish

jobs:
  train:
    runs-on: ubuntu-latest
    timeout-minutes: 360
    env:
      HAS_AWS_KEYS: ${{{{ secrets.AWS_ACCESS_KEY_ID != '' }}}}
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0  # the base branch, for its committed metrics

      - uses: actions/setup-python@v5
        with:
          python-version: "{python}"

      - name: Install trainboard
        run: pip install {install}

      # AWS, for the ec2 runner or an S3 DVC remote (neither step runs when unset).
      # Prefer OIDC: set the repository variable AWS_ROLE_ARN to a role that trusts
      # this repository. Otherwise set the secrets AWS_ACCESS_KEY_ID and
      # AWS_SECRET_ACCESS_KEY.
      - name: AWS credentials (OIDC role)
        if: ${{{{ vars.AWS_ROLE_ARN != '' }}}}
        uses: aws-actions/configure-aws-credentials@v4
        with:
          role-to-assume: ${{{{ vars.AWS_ROLE_ARN }}}}
          aws-region: ${{{{ vars.AWS_REGION || 'us-east-1' }}}}

      - name: AWS credentials (access keys)
        if: ${{{{ vars.AWS_ROLE_ARN == '' && env.HAS_AWS_KEYS == 'true' }}}}
        uses: aws-actions/configure-aws-credentials@v4
        with:
          aws-access-key-id: ${{{{ secrets.AWS_ACCESS_KEY_ID }}}}
          aws-secret-access-key: ${{{{ secrets.AWS_SECRET_ACCESS_KEY }}}}
          aws-region: ${{{{ vars.AWS_REGION || 'us-east-1' }}}}

      - name: Train, compare, report
        run: trainboard run {config} --no-tui
        env:
          GITHUB_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}

      - name: Keep the run's files
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: trainboard-run
          path: .trainboard/runs/
          if-no-files-found: ignore
"""


def write_workflow(root: Path, config: str, install: str, force: bool = False, base: str = "main") -> Path:
    """Write the workflow under ``root``; FileExistsError when one is there (unless ``force``)."""
    path = root / WORKFLOW_PATH
    if path.exists() and not force:
        raise FileExistsError(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(workflow(config, install, base=base))
    return path

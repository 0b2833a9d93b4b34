"""The `trainboard` command line: its parser, one small function a command. No heavy
import here: `--help` is instant. The exit-code help is generated from ``ExitCode``."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainboard.backend.exitcodes import exit_codes_help

_RAW = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    epilog = exit_codes_help()
    parser = argparse.ArgumentParser(
        prog="trainboard",
        description="Train on a runner, watch it live, compare with the base branch, report.",
        epilog=epilog,
        formatter_class=_RAW,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub, epilog)
    _add_attach(sub, epilog)
    runs = sub.add_parser("runs", help="list the runs recorded under .trainboard/runs (a browser on a terminal)")
    runs.add_argument("sweep", nargs="?", metavar="SWEEP",
                      help="a sweep id or prefix: list that sweep, its members under it")
    runs.add_argument("--json", action="store_true",
                      help="print the run records as JSON (a sweep member's `sweep` key: the sweep's id, the "
                      "member's index and values, the sweep's status, verdict and best index, is_best); with "
                      "SWEEP, the sweep's record with its members' run records under `runs`")
    runs.add_argument("--no-tui", action="store_true", help="print the table even on a terminal")
    runs.add_argument("--expand", action="store_true",
                      help="list each sweep's members under its row (a sweep is one row otherwise)")
    comp = sub.add_parser("compare", help="compare a run (or a sweep's best member) with its baseline; exit 1 "
                          "when a gate fails")
    comp.add_argument("run", nargs="?", help="run id or prefix (default: the latest run); or a sweep id or prefix "
                      "(sweep-...): its member table, the best member compared, the verdict naming it")
    _add_pr(sub)
    _add_init(sub)
    _add_reap(sub)
    _add_prune(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    run = sub.add_parser("run", help="run the job described by a config file", epilog=epilog, formatter_class=_RAW)
    run.add_argument("config", help="the run's config, e.g. sample_params.yaml")
    run.add_argument("--no-tui", action="store_true", help="plain Rich output instead of the dashboard (CI)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting, e.g. --set params.epochs=2 (repeatable)")
    run.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="KEY=VALUES",
                     help="run a sweep: one member per value, e.g. --sweep params.lr=1e-4,5e-5 (repeatable: "
                     "a grid); Hydra's grammar: a,b,c  range(1,4)  choice(a,b)  interval(0,1) (random mode); "
                     "adds to the config's sweep.params")


def _add_attach(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    att = sub.add_parser("attach", help="come back to a run: follow a job left running, or show a finished run",
                         epilog=epilog, formatter_class=_RAW)
    att.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    att.add_argument("--no-tui", action="store_true", help="plain Rich output instead of the dashboard")


def _add_pr(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pr = sub.add_parser("pr", help="open or update a finished run's pull request (needs GITHUB_TOKEN)",
                        description="Push the run's outputs and report to trainboard/<branch>, open a pull request "
                        "against the base branch (or update the one open), and keep one report comment on it. "
                        "Inside a pull request's CI, comment on that pull request instead. Either way, a commit "
                        "status per gated metric (trainboard/<metric>) goes on the pull request's head.")
    pr.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    pr.add_argument("--results", metavar="DIR", type=Path,
                    help="the workflow_run half of fork-safe CI: post the comment and the commit statuses of the "
                    "pull request run whose artifact (its .trainboard/runs/<id>/ folder) was downloaded into DIR; "
                    "the pull request and commit come from the workflow_run event, nothing in DIR is run, "
                    "nothing is pushed")


def _add_init(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser("init", help="write the GitHub Actions workflows that run trainboard in CI",
                          description="Write .github/workflows/trainboard.yml (pull requests train with a read-only "
                          "token and upload their results; pushes to the base branch record the baseline; manual "
                          "runs) and .github/workflows/trainboard-publish.yml (posts a pull request's comment and "
                          "commit status, never running its code). CI installs this repository (pip install -e "
                          "'.[EXTRAS]') or its requirements.txt, and trainboard from --install.")
    init.add_argument("--config", default="sample_params.yaml",
                      help="the run's config, relative to the repository root (default: %(default)s)")
    init.add_argument("--install", metavar="SPEC",
                      help="where CI gets trainboard: a git URL ('git+https://github.com/OWNER/trainboard@TAG'), "
                      "a wheel or folder committed here, or a package name; needed unless this repository is "
                      "trainboard")
    init.add_argument("--extras", action="append", default=[], metavar="NAME[,NAME]",
                      help="extras of this repository the job needs, e.g. --extras train (repeatable)")
    init.add_argument("--python", default="3.11", help="the Python version CI uses (default: %(default)s)")
    init.add_argument("--schedule", metavar="CRON", default="",
                      help="also train the default branch on a schedule, e.g. '17 3 * * *' (default: no schedule)")
    init.add_argument("--aws", action="store_true",
                      help="add the AWS credential steps even when the config uses neither ec2 nor S3")
    init.add_argument("--force", action="store_true", help="replace existing workflow files")


def _add_reap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reap = sub.add_parser("reap", help="delete cloud resources left by runs that ended or expired",
                          description="Find every EC2 instance, key pair and security group tagged by trainboard "
                          "whose run is no longer active here, or whose expiry time has passed, and delete it. "
                          "Resources of runs unknown here are left until they expire.")
    reap.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    reap.add_argument("--region", help="AWS region (default: the AWS config chain)")


def _add_prune(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prune = sub.add_parser("prune", help="delete old run folders under .trainboard/runs to free disk",
                           description="Delete the folders of old runs (.trainboard/runs/<id>/: record, logs, "
                           "workspace copy, outputs). Live runs (running, detached) are never deleted, nor the "
                           "MLflow store. Give --keep and/or --older-than; with both, a run must match both.")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the N newest runs, prune the older ones")
    prune.add_argument("--older-than", metavar="WHEN",
                       help="prune runs created before WHEN: a duration (7d, 12h, 30m, 2w) or a date (2026-01-31)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")

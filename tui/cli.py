"""The `trainboard` command. Imports stay inside each command: `--help` is instant."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trainboard.tui.cli_parser import build_parser

if TYPE_CHECKING:
    from trainboard.backend.config import LoadedConfig
    from trainboard.backend.session import Session
    from trainboard.backend.store import RunRecord, RunStore

def entry() -> None:
    """The console script: `main`, then a quick exit.

    Once MLflow (with pandas and SQLAlchemy) is loaded, finalising the
    interpreter takes ~0.7 s after the work is done. A last atexit handler,
    registered first so that every other one has run before it, flushes the
    output and leaves without that.
    """
    code = [0]

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code[0])

    atexit.register(leave)
    code[0] = 3  # until main() says otherwise: a crash is never exit 0
    try:
        code[0] = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        code[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code[0] = 130
    except BrokenPipeError:  # the reader left (`trainboard runs | head`): no crash, the shell's SIGPIPE code
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code[0] = 141
    except BaseException as exc:  # the last line of defence: one line here, the traceback in a file
        from trainboard.backend.crash import report_crash

        code[0] = report_crash(exc, _current_session)
    sys.exit(code[0])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "attach":
        return _attach(args)
    if args.command == "runs":
        return _runs(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "reap":
        return _reap(args)
    if args.command == "prune":
        return _prune(args)
    if args.command == "init":
        return _init(args)
    if args.command == "pr":
        return _pr(args)
    parser.print_help()
    return 0


def _run(args: argparse.Namespace) -> int:
    from trainboard.backend.config import ConfigError, load_config
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.tracking import prefetch

    if args.no_tui:
        # mlflow takes ~2 s to import: start now, in a thread, while the config is read.
        # (The dashboard starts it after its first frame.)
        prefetch()
    try:
        loaded = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    if args.no_tui:
        prefetch(loaded.config.mlflow.tracking_uri)  # a SQLite store's modules too
    if args.sweeps or loaded.config.sweep.params:
        return _run_sweep(loaded, args)
    from trainboard.backend.session import Session

    return _show(Session(loaded), args.no_tui)


def _run_sweep(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    """A sweep: every member's config validated before anything starts (exit 2 names the member)."""
    from trainboard.backend.config import ConfigError
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.gitinfo import repo_root
    from trainboard.backend.sweep import Sweep
    from trainboard.backend.sweep_outputs import check_publishing
    from trainboard.backend.sweep_spec import plan

    root = repo_root(loaded.path.resolve().parent)
    try:
        members, configs = plan(loaded, args.sweeps, root)
        sweep = Sweep(loaded, members, configs, root=root)
        note = check_publishing(sweep.data, root, loaded)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    if note:
        print(f"note: {note}", file=sys.stderr)
    if args.no_tui:
        import asyncio

        from trainboard.tui.sweep_headless import run_sweep_headless

        return int(asyncio.run(run_sweep_headless(sweep)))
    from trainboard.tui.sweep_app import make_sweep_app

    app = make_sweep_app(sweep)
    app.run()
    code = int(app.return_code if app.return_code is not None else ExitCode.INTERRUPTED)
    if app.return_code is not None and app.return_code != app.exited_with:
        # Textual's own exit after an exception in the app (1, which would read as "gate failed").
        print("error: the sweep dashboard failed unexpectedly; every member was torn down", file=sys.stderr)
        code = int(ExitCode.INFRA_ERROR)
    from trainboard.tui.console import output_console
    from trainboard.tui.sweep_headless import print_ending

    # Textual has given the terminal back: the members and the verdict, in plain lines.
    if sweep.data.exit_code is None:
        sweep.data.exit_code = code
    print_ending(output_console(), sweep.data, (sweep.data.finished_at or time.time()) - sweep.data.created_at)
    return code


def _attach(args: argparse.Namespace) -> int:
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.recompare import NO_RUNS
    from trainboard.backend.session import Session
    from trainboard.backend.tracking import prefetch

    store = _store()
    if not store.all():
        print(f"error: {NO_RUNS}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    record = _resolve(store, args.run)
    if record is None:
        return ExitCode.CONFIG_ERROR
    if args.no_tui and record.status is not None and record.status.is_live:
        prefetch()
    return _show(Session.attach(record, store.root.parent), args.no_tui)


_current_session: Session | None = None  # the run a crash report belongs to


def _show(session: Session, no_tui: bool) -> int:
    """Run ``session`` in the dashboard, or headless; its exit code."""
    from trainboard.backend.exitcodes import ExitCode

    global _current_session
    _current_session = session
    if no_tui:
        import asyncio

        from trainboard.tui.headless import run_headless

        return int(asyncio.run(run_headless(session)))
    from trainboard.tui.app import make_app

    app = make_app(session)
    app.run()
    if app.return_code is None:
        code = int(ExitCode.INTERRUPTED)
    elif app.return_code != app.exited_with:
        # Textual's own exit after an exception in the app (return code 1, which would read as
        # "gate failed"): the session's teardown has run (see on_unmount); the run crashed.
        print(f"error: the dashboard failed unexpectedly; the run was torn down and its traceback is in "
              f"{session.run_dir / 'traceback.txt'}", file=sys.stderr)
        code = int(ExitCode.INFRA_ERROR)
    else:
        code = int(app.return_code)
    from trainboard.tui.leaving import leaving_lines

    # Textual has given the terminal back: what the dashboard showed last, in plain lines.
    print("\n".join(leaving_lines(session.record, code)), flush=True)
    return code


def _resolve(store: RunStore, run: str | None) -> RunRecord | None:
    """The run named by an id or prefix (the latest when None); None, said on stderr, when there is none."""
    try:
        return store.resolve(run)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _store() -> RunStore:
    from trainboard.backend.gitinfo import repo_root
    from trainboard.backend.store import RunStore

    return RunStore(repo_root(Path.cwd()) / ".trainboard")


def _runs(args: argparse.Namespace) -> int:
    from trainboard.tui.runs_list import runs_command

    return runs_command(_store(), as_json=args.json, no_tui=args.no_tui, expand=args.expand, sweep=args.sweep)


def _compare(args: argparse.Namespace) -> int:
    from trainboard.tui.sweep_compare import compare_sweep, names_sweep

    if names_sweep(_store(), args.run):
        return compare_sweep(_store(), args.run)
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.recompare import NothingToCompare, RecompareError, pick, recompare
    from trainboard.tui.render import comparison_table, verdict_text

    try:
        record = pick(_store(), args.run)
        if args.run is None:
            print(f"comparing run {record.run_id}, the latest with a result ({record.status})", file=sys.stderr)
        comparison = recompare(record)
    except NothingToCompare as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    except RecompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INFRA_ERROR
    from trainboard.tui.console import output_console

    console = output_console()  # as wide as `run --no-tui` on a pipe
    console.print(f"run {record.run_id} · {record.branch} @ {record.commit[:7]}", markup=False)
    console.print(comparison_table(comparison))
    console.print(verdict_text(comparison))
    return ExitCode.OK if comparison.passed else ExitCode.GATE_FAILED


def _pr_results(results: Path) -> int:
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.github import PublishError
    from trainboard.backend.github_results import publish_results
    from trainboard.backend.redact import Redactor

    try:
        result = publish_results(results, env=os.environ, redact=Redactor.from_env(os.environ, {}))
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INFRA_ERROR
    print(f"pull request #{result.pr_number}: report comment {result.comment_url}")
    for line in result.statuses:
        print(f"commit status {line}")
    return ExitCode.OK


def _pr(args: argparse.Namespace) -> int:
    """The finished run's pull request, through the same hook the end of a run calls."""
    from trainboard.backend.compare import Comparison
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.github import PublishError, ReadOnlyToken
    from trainboard.backend.hooks.pull_request import publish_run, run_info
    from trainboard.backend.redact import Redactor
    from trainboard.tui.run_files import config_of

    if args.results is not None:
        return _pr_results(args.results)
    store = _store()
    record = _resolve(store, args.run)
    if record is None:
        return ExitCode.CONFIG_ERROR
    config = config_of(record)
    if config is None:
        print(f"error: run {record.run_id}: its recorded config no longer validates", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    if record.status is None or not record.status.has_result:
        print(f"error: run {record.run_id} {record.status}: only a run with a result gets a pull request",
              file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    compared = record.comparison
    run = run_info(record, config, Comparison.from_dict(compared) if compared is not None else None)
    root = store.root.parent
    try:
        result = publish_run(record, store.runs / record.run_id, root, config, run,
                             {rel: root / rel for rel in record.dvc_files},  # as the run brought them back
                             Redactor.from_env(os.environ, config.job.env))
    except ReadOnlyToken as exc:
        print(f"nothing posted: {exc}")
        return ExitCode.OK
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.INFRA_ERROR
    for line in result.notes:
        print(f"note: {line}")
    print(f"pull request #{result.pr_number} {'opened' if result.created_pr else 'updated'}: {result.pr_url}")
    if result.comment_url:
        print(f"report comment: {result.comment_url}")
    for line in result.statuses:
        print(f"commit status {line}")
    return ExitCode.OK


def _init(args: argparse.Namespace) -> int:
    import shlex

    from trainboard.backend.ci import InitError, WorkflowPlan, check_schedule, plan_install, write_workflows
    from trainboard.backend.exitcodes import ExitCode
    from trainboard.backend.gitinfo import repo_root

    root = repo_root(Path.cwd())
    if not (root / args.config).is_file():
        print(f"error: --config {args.config}: no such file in {root}\n"
              "  fix: name the config CI should run, relative to the repository root", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    from trainboard.backend.config import ConfigError, load_config

    try:
        loaded = load_config(root / args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    config = loaded.config
    aws = args.aws or config.runner.kind == "ec2" or config.dvc.remote.startswith("s3://")
    extras = [e.strip() for item in args.extras for e in item.split(",") if e.strip()]
    try:
        install = plan_install(root, extras, args.install)
        schedule = check_schedule(args.schedule) if args.schedule else ""
        plan = WorkflowPlan(config=Path(args.config).as_posix(), base=config.compare.base, install=install,
                            aws=aws, python=args.python, schedule=schedule)
        paths = write_workflows(root, plan, force=args.force)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    except FileExistsError as exc:
        print(f"error: {exc}: already there, nothing written\n  fix: pass --force to replace them", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    workflow, publisher = (p.relative_to(root) for p in paths)
    print(f"wrote {workflow}: trains `trainboard run {shlex.quote(plan.config)} --no-tui` on pull requests against "
          f"{plan.base} (read-only token; uploads the results), on pushes to {plan.base} (records the "
          f"baseline) and by hand{' and on a schedule' if plan.schedule else ''}")
    print(f"wrote {publisher}: posts each pull request's report comment and commit status, never running its code")
    print("CI installs: " + "; ".join(install.train))
    if install.note:
        print(f"note: {install.note}")
    steps = [f"commit both files and push them to {plan.base} (GitHub runs {publisher.name} only from the "
             "default branch)"]
    if aws:
        steps.append("AWS: set the repository variable AWS_ROLE_ARN (a role trusting this repository through "
                     "OIDC; AWS_REGION optional) or the secrets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    steps.append("manual runs on a branch open a pull request: in Settings > Actions > General, allow "
                 "\"Allow GitHub Actions to create and approve pull requests\"")
    steps.append("to block merges on the gate, make its commit status a required check in branch protection")
    print("next:")
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step}")
    return ExitCode.OK


def _reap(args: argparse.Namespace) -> int:
    from trainboard.backend.reap import reap

    return reap(_store().root, args.region, args.dry_run, print)


def _prune(args: argparse.Namespace) -> int:
    from trainboard.backend.prune import prune

    return prune(_store().root, args.keep, args.older_than, args.dry_run, print)


if __name__ == "__main__":  # pragma: no cover
    entry()

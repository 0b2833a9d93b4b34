"""The sweep report (backend/sweep_report.py, backend/sweep_plot.py): real sweeps of the tiny
job through the CLI write one report with the member table, the objective plot and the best
member's report; the GitHub Actions step summary carries the table and that report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.store import RunStore
from trainboard.backend.sweep_plot import SweepPoint, objective_figure
from trainboard.backend.sweep_record import MemberInfo, SweepData, SweepStore
from trainboard.backend.sweep_report import (
    append_sweep_step_summary,
    demote_headings,
    sweep_step_summary,
    write_sweep_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
SECRET = "s3cr3t-value-9f8e7d6c"


def the_sweep(repo: Path) -> SweepData:
    return SweepStore(repo / ".trainboard").resolve(None)


def rows_of(report: str) -> list[str]:
    """The member table's rows (after its header and rule)."""
    part = report.split("## Members", 1)[1].split("\n\n", 2)[1]
    return part.splitlines()[2:]


def test_a_real_sweep_writes_one_report_with_its_table_plot_and_best_members_report(repo: Path,
                                                                                     tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_TOKEN": ""}
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7", "--sweep",
                    "params.exit_code=0,3", "--set", "sweep.max_parallel=4"], cwd=repo, env=env)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
    data = the_sweep(repo)
    folder = repo / ".trainboard" / "sweeps" / data.sweep_id
    report = (folder / "report.md").read_text()
    assert data.report == str(folder / "report.md")
    # The heading carries the verdict line; the table a row per member, the varied values as columns.
    assert report.startswith("# trainboard sweep: tiny\n\n**best: params.base_f1=0.7 params.exit_code=0 · f1 ")
    assert "| # | `params.base_f1` | `params.exit_code` | Status | F1 | Δ vs main | Cost | Run |" in report
    rows = rows_of(report)
    assert len(rows) == 4
    best = data.best_member
    assert best is not None and best.values == {"params.base_f1": "0.7", "params.exit_code": "0"}
    assert [r for r in rows if r.startswith("| ★ ")] == [r for r in rows if best.run_id in r]
    failed = [r for r in rows if "`3`" in r]
    assert len(failed) == 2 and all("| job-failed (exit 3)" in r for r in failed)
    for member in data.members:
        assert f"`{member.run_id}`" in report
    # The plot, drawn from the members with a result.
    assert (folder / "objective.png").read_bytes().startswith(PNG)
    assert "![F1 against each setting](objective.png)" in report
    assert "2 members without a result are not drawn." in report
    # The best member's own report: headings one level down, its plot copied beside the sweep's.
    assert f"## Best member: params.base_f1=0.7 params.exit_code=0\n\nMember {best.index}, run `{best.run_id}`." \
        in report
    assert "### Metrics" in report and "# trainboard report:" not in report
    assert "![metrics per step](best/metrics.png)" in report
    assert (folder / "best" / "metrics.png").read_bytes().startswith(PNG)
    # In GitHub Actions, the step summary: the table and the best member's report, no images.
    text = summary.read_text()
    assert text.startswith(f"**trainboard sweep: {data.status}** (exit {data.exit_code}")
    assert "| # | `params.base_f1` | `params.exit_code` |" in text and "### Metrics" in text
    assert "![" not in text


def test_members_that_did_not_finish_show_why_and_secrets_are_masked(repo: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep record as the controller leaves it after the cost cap: one member stopped by
    it, one skipped, one that never got a run; its report says so and masks the secret."""
    monkeypatch.setenv("SWEEP_API_TOKEN", SECRET)
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7"], cwd=repo)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
    data = the_sweep(repo)
    data.members += [
        MemberInfo(index=2, values={"params.base_f1": "0.9"}, status="cancelled",
                   reason=f"cost cap reached (token {SECRET})"),
        MemberInfo(index=3, values={"params.base_f1": "1.1"}, status="skipped", reason="cost cap reached"),
    ]
    data.max_cost_usd, data.cost, data.reason = 1.5, 0.25, "cost cap reached"
    report = write_sweep_report(data, repo).read_text()
    rows = rows_of(report)
    assert len(rows) == 4
    assert "| cancelled: cost cap reached (token ***) | — | — | — | — |" in rows[2]
    assert "| skipped: cost cap reached | — | — | — | — |" in rows[3]
    assert "| Cost | $0.25 of the $1.50 cap |" in report and "| Stopped | cost cap reached |" in report
    assert SECRET not in report
    assert "2 members without a result are not drawn." in report


def test_a_sweep_without_a_result_has_no_best_member_and_no_plot(repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.exit_code=3,4"], cwd=repo)
    assert proc.returncode == ExitCode.JOB_FAILED, proc.stdout[-3000:] + proc.stderr
    data = the_sweep(repo)
    folder = repo / ".trainboard" / "sweeps" / data.sweep_id
    report = (folder / "report.md").read_text()
    assert "**no best member: none of 2 finished with a result (2 did not)**" in report
    assert "## No best member" in report and not (folder / "objective.png").exists()
    rows = rows_of(report)
    assert "job-failed (exit 3)" in rows[0] and "job-failed (exit 4)" in rows[1]
    summary = sweep_step_summary(data, repo)
    assert summary.startswith("**trainboard sweep: job-failed** (exit 4, JOB_FAILED)")


def test_the_best_members_report_is_read_from_its_run_folder(repo: Path, tmp_path: Path) -> None:
    """Its images are copied under best/ again on each write (a new best replaces the old);
    the step summary is appended only where GitHub Actions names a file for it."""
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--sweep", "params.base_f1=0.5,0.7"], cwd=repo)
    assert proc.returncode in (ExitCode.OK, ExitCode.GATE_FAILED), proc.stdout[-3000:] + proc.stderr
    data = the_sweep(repo)
    assert append_sweep_step_summary(data, repo, env={}) is False
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert append_sweep_step_summary(data, repo, env={"GITHUB_STEP_SUMMARY": str(summary)}) is True
    text = summary.read_text()
    assert text.startswith("earlier step\n**trainboard sweep: ")
    assert text.count("| # | `params.base_f1` | Status |") == 1
    folder = repo / ".trainboard" / "sweeps" / data.sweep_id
    (folder / "best" / "stale.png").write_bytes(PNG)
    other = next(m for m in data.members if m.index != data.best)
    data.best = other.index
    record = RunStore(repo / ".trainboard").load(other.run_id)
    (record.path / "curve.png").write_bytes(PNG + b"the other member's curve")
    (record.path / "report.md").write_text("# trainboard report: tiny\n\n**a marker line**\n\n## Training curves\n\n"
                                           "![its curve](curve.png)\n![gone](gone.png)\n")
    report = write_sweep_report(data, repo).read_text()
    assert "**a marker line**\n\n### Training curves" in report
    assert "![its curve](best/curve.png)" in report
    assert "*(gone: `gone.png` was not found in the run's folder)*" in report
    assert sorted(p.name for p in (folder / "best").iterdir()) == ["curve.png"]
    assert (folder / "best" / "curve.png").read_bytes() == PNG + b"the other member's curve"


def test_headings_move_down_a_level_outside_code_fences() -> None:
    lines = ["# trainboard report: x", "", "**PASS**", "## Metrics", "```text", "# a log line", "```", "### Deep"]
    assert demote_headings(lines) == ["**PASS**", "### Metrics", "```text", "# a log line", "```", "#### Deep"]


def _points(values: list[dict[str, str]], objectives: list[float]) -> list[SweepPoint]:
    return [SweepPoint(i, v, o, True) for i, (v, o) in enumerate(zip(values, objectives, strict=True))]


def test_the_plot_has_a_panel_a_setting_numeric_log_or_categorical() -> None:
    values = [{"params.lr": lr, "params.optimizer": opt, "params.epochs": ep}
              for lr, opt, ep in (("1e-4", "adam", "1"), ("5e-5", "sgd", "2"), ("2e-6", "adam", "3"))]
    fig = objective_figure(_points(values, [0.7, 0.8, 0.75]), ["params.lr", "params.optimizer", "params.epochs"],
                           "F1", "max", best=1, title="tiny")
    assert fig is not None
    lr, optimizer, epochs = fig.axes[:3]
    assert [a.get_title() for a in (lr, optimizer, epochs)] == ["params.lr", "params.optimizer", "params.epochs"]
    assert lr.get_xscale() == "log" and epochs.get_xscale() == "linear"  # 1..3 spans less than 20×
    assert [t.get_text() for t in optimizer.get_xticklabels()] == ["adam", "sgd"]
    # Few values: a tick at each, labelled as it was set.
    assert [t.get_text() for t in lr.get_xticklabels()] == ["2e-6", "5e-5", "1e-4"]
    assert list(epochs.get_xticks()) == [1.0, 2.0, 3.0]
    # The best member is the gold star in each panel, at its own value.
    stars = [c for c in lr.collections if c.get_label() == "best"]
    assert len(stars) == 1 and tuple(stars[0].get_offsets()[0]) == (5e-5, 0.8)
    assert "higher is better" in fig.get_suptitle()


def test_nothing_to_plot_gives_no_figure() -> None:
    assert objective_figure([], ["params.lr"], "F1", "max", None) is None
    assert objective_figure(_points([{}], [0.5]), [], "F1", "max", 0) is None


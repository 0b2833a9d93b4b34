"""The cost cap of a run, ``budget.max_cost_usd`` (issue 13, item 8).

What a run would cost is projected from the runner's hourly price and the longest it may
keep it; a projection over the cap is refused at check (exit 2, nothing provisioned). While
a run goes, its spend is watched: at the cap the run is stopped and torn down as a cancel
(exit 130), the reason in the record's ``stopped_by`` and on the output. The ec2 runs are
real runs through the CLI against moto, the "instance" a local sshd (tests/test_ec2_session.py).
"""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from textual.content import Content

from tests import aws_support
from tests.aws_support import Aws
from tests.conftest import run_cli
from tests.test_ec2_session import Ec2Setup, assert_nothing_left, ec2  # noqa: F401 (a fixture)
from trainboard.backend import budget
from trainboard.backend import events as ev
from trainboard.backend.config import ConfigError, load_config
from trainboard.backend.exitcodes import ExitCode
from trainboard.backend.runners.ec2.pricing import ON_DEMAND_PRICES
from trainboard.backend.store import RunStore
from trainboard.tui.headless import HeadlessView
from trainboard.tui.leaving import leaving_lines
from trainboard.tui.widgets.runner import RunnerPanel, cost_text

moto_server = aws_support.moto_server  # fixtures
aws = aws_support.aws

CONFIG = """\
name: budget
runner:
  kind: local
job:
  command: python job.py
metrics:
  f1: {goal: max}
"""
EC2 = ["runner={kind: ec2, instance_type: t3.large, max_duration_minutes: 60}"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tb.yaml"
    path.write_text(CONFIG)
    return path


# --------------------------------------------------------------------------- the setting


def test_set_reaches_the_cap_and_bad_values_are_refused(config: Path) -> None:
    assert load_config(config).config.budget.max_cost_usd is None  # no cap by default
    assert load_config(config, ["budget.max_cost_usd=5"]).config.budget.max_cost_usd == 5
    assert load_config(config, ["budget.max_cost_usd=0.25"]).config.budget.max_cost_usd == 0.25
    for value in ("0", "-1", "lots"):
        with pytest.raises(ConfigError) as info:
            load_config(config, [f"budget.max_cost_usd={value}"])
        assert "budget.max_cost_usd" in str(info.value), str(info.value)


# --------------------------------------------------------------------------- the projection


def test_hourly_price_before_the_runner_exists(config: Path) -> None:
    def price(*overrides: str) -> float | None:
        return budget.hourly_price(load_config(config, list(overrides)).config)

    assert price() == 0.0  # local
    assert price("runner={kind: ssh, host: gpu-box}") == 0.0
    assert price(*EC2) == ON_DEMAND_PRICES["t3.large"]
    assert price(*EC2, "runner.hourly_price=2.5") == 2.5  # the configured price first
    assert price(*EC2, "runner.market=spot", "runner.max_price=0.05") == 0.05  # the most a spot one pays
    assert price(*EC2, "runner.market=spot") == ON_DEMAND_PRICES["t3.large"]
    assert price(*EC2, "runner.instance_type=x9.huge") is None  # not in the table


def test_expected_seconds_is_the_worst_case_known(config: Path) -> None:
    def seconds(*overrides: str, observed: float | None = None) -> float | None:
        return budget.expected_seconds(load_config(config, list(overrides)).config, observed)

    assert seconds() is None  # local, no timeout: unbounded
    assert seconds("job.timeout_minutes=10") == 600
    assert seconds(*EC2) == 3600  # the instance's own limit
    assert seconds(*EC2, "job.timeout_minutes=10") == 600  # the job's, when set
    assert seconds(*EC2, "job.timeout_minutes=10", observed=42.0) == 42.0  # what a sweep has seen


def test_projected_cost(config: Path) -> None:
    def projected(*overrides: str, observed: float | None = None) -> float | None:
        return budget.projected_cost(load_config(config, list(overrides)).config, observed)

    assert projected() == 0.0  # free, though unbounded
    assert projected("runner={kind: ssh, host: gpu-box}", "job.timeout_minutes=5") == 0.0
    assert projected(*EC2, "runner.hourly_price=2") == pytest.approx(2.0)  # 60 min at $2/h
    assert projected(*EC2, "runner.hourly_price=2", "job.timeout_minutes=15") == pytest.approx(0.5)
    assert projected(*EC2, "runner.hourly_price=2", observed=90) == pytest.approx(0.05)
    assert projected(*EC2, "runner.instance_type=x9.huge") is None


def test_check_refuses_a_projection_over_the_cap_with_a_fix(config: Path) -> None:
    loaded = load_config(config, [*EC2, "runner.hourly_price=2", "budget.max_cost_usd=1.5"])
    with pytest.raises(ConfigError) as info:
        budget.check_budget(loaded)
    err = info.value
    assert err.setting == "budget.max_cost_usd" and err.source == "--set budget.max_cost_usd=1.5"
    assert "$2.00" in err.message and "$1.50" in err.message and "max_duration_minutes (60)" in err.message
    assert "job.timeout_minutes" in err.fix and "raise budget.max_cost_usd" in err.fix
    # Within the cap: said, not refused; a shorter job fits a cap the instance's limit did not.
    assert budget.check_budget(load_config(config, [*EC2, "runner.hourly_price=2", "budget.max_cost_usd=2"])) \
        == "budget: projected $2.00 (runner.max_duration_minutes (60) at $2/h) within the $2.00 cap"
    fits = load_config(config, [*EC2, "runner.hourly_price=2", "budget.max_cost_usd=1.5", "job.timeout_minutes=30"])
    assert "job.timeout_minutes (30)" in budget.check_budget(fits)
    # What a sweep has seen decides too.
    with pytest.raises(ConfigError):
        budget.check_budget(fits, observed=3600)


def test_check_names_the_line_of_the_cap_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tb.yaml"
    path.write_text(CONFIG + textwrap.dedent("""\
        budget:
          max_cost_usd: 0.5
        """))
    with pytest.raises(ConfigError) as info:
        budget.check_budget(load_config(path, [*EC2, "runner.hourly_price=1"]))
    assert info.value.line == CONFIG.count("\n") + 2, str(info.value)
    assert str(info.value).startswith(f"{path}:{info.value.line}: budget.max_cost_usd:")


def test_check_refuses_a_cap_it_cannot_hold_and_lets_free_runs_be(config: Path) -> None:
    with pytest.raises(ConfigError) as info:
        budget.check_budget(load_config(config, [*EC2, "runner.instance_type=x9.huge", "budget.max_cost_usd=5"]))
    assert "x9.huge" in info.value.message and "runner.hourly_price" in info.value.fix
    assert budget.check_budget(load_config(config, ["budget.max_cost_usd=0.01"])) == ""  # local: free
    assert budget.check_budget(load_config(config, EC2)) == ""  # no cap


def test_the_next_cost_figure_comes_no_later_than_the_cap() -> None:
    update = ev.CostUpdated(hourly_price=360.0, uptime=1.0, cost=0.1)  # $0.10 a second
    assert budget.next_tick(update, None, 15.0) == 15.0
    assert budget.next_tick(update, 100.0, 15.0) == 15.0
    assert budget.next_tick(update, 0.5, 15.0) == pytest.approx(4.0)
    assert budget.next_tick(update, 0.1, 15.0) == budget.MIN_TICK  # at the cap already: at once
    assert budget.stop_reason(0.6012, 0.6) == "cost cap: $0.60 reached the cap $0.60"


# --------------------------------------------------------------------------- the views


def test_headless_prints_the_spend_against_the_cap() -> None:
    out = io.StringIO()
    view = HeadlessView(out=out, err=io.StringIO())
    for cost in (0.0, 0.1, 0.2, 0.26, 0.55, 1.0):
        view(ev.CostUpdated(hourly_price=360.0, uptime=cost * 10, cost=cost, cap=1.0))
    view(ev.CostUpdated(hourly_price=360.0, uptime=11.0, cost=1.1, final=True, cap=1.0))
    lines = out.getvalue().splitlines()
    assert lines == ["  runner cost $0.26 of $1.00 cap so far (2.6s at $360.000/h)",  # each quarter crossed, once
                     "  runner cost $0.55 of $1.00 cap so far (5.5s at $360.000/h)",
                     "  runner cost $1.00 of $1.00 cap so far (10.0s at $360.000/h)",
                     "  runner cost $1.10 of $1.00 cap (11.0s at $360.000/h)"], lines
    # Without a cap: the final cost only, as before.
    out = io.StringIO()
    view = HeadlessView(out=out, err=io.StringIO())
    view(ev.CostUpdated(hourly_price=0.0104, uptime=30.0, cost=0.0001))
    view(ev.CostUpdated(hourly_price=0.0104, uptime=60.0, cost=0.0002, final=True))
    assert out.getvalue().splitlines() == ["  runner cost $0.00 (1m00s at $0.010/h)"]


def test_the_runner_panel_shows_the_spend_against_the_cap() -> None:
    details = {"hourly_price": "360"}
    assert cost_text("ec2", details, 1.0) == "$0.10 ($360/h)"
    assert cost_text("ec2", details, 1.0, cap=0.25) == "$0.10 of $0.25 cap ($360/h)"
    assert cost_text("local", {}, 1.0, cap=0.25) == "$0.00 (local)"  # free: nothing to hold against the cap
    panel = RunnerPanel("ec2")
    panel.apply(ev.RunnerChanged(state="ready", kind="ec2", address="10.0.0.1", details=details, at=100.0))
    assert dict(panel.fields(101.0))["cost"] == Content("$0.10 ($360/h)")
    panel.apply(ev.CostUpdated(hourly_price=360.0, uptime=0.0, cost=0.0, cap=0.25))  # the run's cap, told
    assert dict(panel.fields(101.0))["cost"] == Content("$0.10 of $0.25 cap ($360/h)")


# --------------------------------------------------------------------------- whole runs


def instances_keys_groups(aws: Aws) -> dict[str, list[str]]:
    """Everything moto holds (not only one run's): instances in any state, key pairs, non-default groups."""
    client = aws.client("ec2")
    return {
        "instances": [i["InstanceId"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]],
        "key_pairs": [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]],
        "security_groups": [g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]
                            if g["GroupName"] != "default"],
    }


def test_an_ec2_run_is_stopped_and_torn_down_at_the_cap(ec2: Ec2Setup, aws: Aws) -> None:  # noqa: F811
    ec2.emulate()
    # $360 an hour is $0.10 a second. The job may take 6 s (job.timeout_minutes), so the
    # projection, $0.60, fits the cap; but the instance also runs the sync and the setup (3 s
    # at least), which the projection leaves out: the spend reaches the cap 6 s after the
    # instance is ready, before the job's own limit could end it.
    cli = ec2.run("runner.hourly_price=360", "job.timeout_minutes=0.1", "budget.max_cost_usd=0.6",
                  "job.setup=['sleep 3']", "params.sleep=60")
    code = cli.finish(180)
    out = cli.output
    assert code == ExitCode.INTERRUPTED, out[-4000:]
    record = ec2.record()
    reason = "cost cap: $0.60 reached the cap $0.60"
    assert record["status"] == "cancelled" and record["exit_code"] == 130
    assert record["stopped_by"] == reason, record.get("stopped_by")
    assert record["cost"] >= 0.6  # the instance runs on while it is torn down: billed, and said
    assert "  budget: projected $0.60 (job.timeout_minutes (0.1) at $360/h) within the $0.60 cap" in cli.lines, out
    assert f"  {reason}: tearing down" in cli.lines, out
    assert any(line.startswith("  runner cost $0.60 of $0.60 cap so far") for line in cli.lines), out
    assert any(line.startswith("  runner cost $") and "of $0.60 cap (" in line for line in cli.lines), out
    assert f"verdict: no comparison, the run was cancelled ({reason})" in cli.lines, out
    assert not any("job.timeout_minutes (0.1) reached" in line for line in cli.lines + cli.err), out
    assert record["stages"]["teardown"]["state"] == "done", record["stages"]
    assert_nothing_left(aws, record["run_id"])
    # Leaving the dashboard says it too.
    stored = RunStore(ec2.repo / ".trainboard").load(record["run_id"])
    assert f"verdict: no comparison, the run was cancelled ({reason})" in leaving_lines(stored, code)


def test_an_ec2_run_projected_over_the_cap_is_refused_before_anything_is_provisioned(
        ec2: Ec2Setup, aws: Aws) -> None:  # noqa: F811
    cli = ec2.run("runner.hourly_price=360", "budget.max_cost_usd=5")  # 30 min (max_duration_minutes): $180
    code = cli.finish(120)
    out = cli.output
    assert code == ExitCode.CONFIG_ERROR, out[-4000:]
    err = "\n".join(cli.err)
    assert "budget.max_cost_usd: the run may cost $180.00 (runner.max_duration_minutes (30) at $360/h), " \
           "more than the cap $5.00" in err, out
    assert "fix: raise budget.max_cost_usd, or set job.timeout_minutes" in err, out
    assert instances_keys_groups(aws) == {"instances": [], "key_pairs": [], "security_groups": []}
    assert not [c for c in aws.proxy.calls if c.action == "RunInstances"]
    runs = ec2.repo / ".trainboard" / "runs"
    assert not runs.exists() or not list(runs.glob("*/record.json"))  # refused before the run began


def test_a_local_run_with_a_cap_runs_as_before(repo: Path) -> None:
    proc = run_cli(["run", "tb.yaml", "--no-tui", "--set", "budget.max_cost_usd=0.01"], cwd=repo)
    assert proc.returncode == ExitCode.OK, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = (repo / ".trainboard" / "runs").glob("*/record.json")
    record: dict[str, Any] = json.loads(path.read_text())
    assert record["status"] == "succeeded" and not record.get("stopped_by") and record.get("cost") is None
    assert "budget" not in proc.stdout and "cost cap" not in proc.stdout, proc.stdout

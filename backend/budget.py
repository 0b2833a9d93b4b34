"""The cost cap, ``budget.max_cost_usd``: what a run is projected to cost before its runner
exists, the check that refuses a run whose projection passes the cap, and the watch that
stops a run whose spend reaches it.

The projection is the runner's hourly price (:func:`hourly_price`) times the longest the
run is expected to keep it (:func:`expected_seconds`). It is a worst case for the job's
own time; provisioning, syncing and collecting come on top, which is why the spend is
also watched while the run goes (:func:`cap_reached`, called on every CostUpdated that
``trainboard.backend.runnerlink`` emits). A sweep projects each member with the same
functions, passing the duration it has observed of the members that ran.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainboard.backend.config_schema import Ec2RunnerConfig

if TYPE_CHECKING:
    from trainboard.backend import events as ev
    from trainboard.backend.config import ConfigError, LoadedConfig, RunConfig
    from trainboard.backend.stages.base import RunContext

SETTING = "budget.max_cost_usd"
MIN_TICK = 0.01  # seconds: the shortest wait for the next cost figure near the cap


def hourly_price(config: RunConfig) -> float | None:
    """USD an hour the configured runner costs, known before it exists; None when unknown.

    ec2: runner.hourly_price, else (spot) runner.max_price, the most a spot instance pays,
    else the built-in on-demand table. The local and ssh runners cost nothing here."""
    runner = config.runner
    if not isinstance(runner, Ec2RunnerConfig):
        return 0.0
    if runner.hourly_price is not None:
        return runner.hourly_price
    if runner.market == "spot" and runner.max_price is not None:
        return runner.max_price
    from trainboard.backend.runners.ec2.pricing import ON_DEMAND_PRICES  # the ec2 package loads boto3

    return ON_DEMAND_PRICES.get(runner.instance_type)


def expected_seconds(config: RunConfig, observed: float | None = None) -> float | None:
    """The longest a run keeps its runner, in seconds: ``observed`` when given (a sweep's members
    so far), else job.timeout_minutes, else the ec2 runner's max_duration_minutes; None: no bound."""
    if observed is not None:
        return max(0.0, observed)
    if config.job.timeout_minutes is not None:
        return config.job.timeout_minutes * 60
    if isinstance(config.runner, Ec2RunnerConfig):
        return config.runner.max_duration_minutes * 60
    return None


def projected_cost(config: RunConfig, observed: float | None = None) -> float | None:
    """USD: the hourly price times the expected seconds; 0.0 for a free runner; None when unknown."""
    price = hourly_price(config)
    if price == 0.0:
        return 0.0
    seconds = expected_seconds(config, observed)
    if price is None or seconds is None:
        return None
    return price * seconds / 3600


def cap_text(spent: float, cap: float) -> str:
    """``$0.04 of $0.10 cap``: the spend against the cap, as the views show it."""
    return f"${spent:.2f} of ${cap:.2f} cap"


def stop_reason(spent: float, cap: float) -> str:
    """Why a run was stopped: kept in the record's ``stopped_by`` and said on the views."""
    return f"cost cap: ${spent:.2f} reached the cap ${cap:.2f}"


def _projection_basis(config: RunConfig, observed: float | None) -> str:
    if observed is not None:
        return "the duration observed"
    if config.job.timeout_minutes is not None:
        return f"job.timeout_minutes ({config.job.timeout_minutes:g})"
    assert isinstance(config.runner, Ec2RunnerConfig)  # the only other bound (see expected_seconds)
    return f"runner.max_duration_minutes ({config.runner.max_duration_minutes:g})"


def check_budget(loaded: LoadedConfig, observed: float | None = None) -> str:
    """Refuse a run whose projected cost passes the cap (a ConfigError naming budget.max_cost_usd,
    before anything is provisioned). Returns what to say about the projection ("" when there is
    no cap, or the runner costs nothing)."""
    config = loaded.config
    cap = config.budget.max_cost_usd
    if cap is None:
        return ""
    projected = projected_cost(config, observed)
    if projected is None:
        raise _unknown_price(loaded)
    if projected == 0.0:
        return ""
    price = hourly_price(config)
    basis = f"{_projection_basis(config, observed)} at ${price:g}/h"
    if projected > cap:
        raise loaded.error(
            SETTING, f"the run may cost ${projected:.2f} ({basis}), more than the cap ${cap:.2f}",
            fix=f"raise {SETTING}, or set job.timeout_minutes (or runner.max_duration_minutes) lower; "
                "nothing was started")
    return f"budget: projected ${projected:.2f} ({basis}) within the ${cap:.2f} cap"


def _unknown_price(loaded: LoadedConfig) -> ConfigError:
    runner = loaded.config.runner
    what = f"a {runner.instance_type} instance" if isinstance(runner, Ec2RunnerConfig) else "the runner"
    return loaded.error(SETTING, f"the hourly price of {what} is not known, so the cap cannot be held",
                        fix="set runner.hourly_price (USD an hour), or remove the cap; nothing was started")


def next_tick(update: ev.CostUpdated, cap: float | None, interval: float) -> float:
    """Seconds until the next cost figure: ``interval``, or sooner when the cap comes first."""
    if cap is None or update.hourly_price <= 0:
        return interval
    to_cap = (cap - update.cost) * 3600 / update.hourly_price
    return min(interval, max(MIN_TICK, to_cap))


def cap_reached(ctx: RunContext, update: ev.CostUpdated) -> bool:
    """At the cap, stop the run (torn down as a cancel) with the reason in the record; True then."""
    cap = ctx.config.budget.max_cost_usd
    if cap is None or update.cost < cap:
        return False
    reason = stop_reason(update.cost, cap)
    if ctx.stop is not None and ctx.stop(reason):
        ctx.save_record(stopped_by=reason)
    return True

"""The run's link to its runner: what the runner reports, when it became ready and what it
costs, and how the job reaches MLflow from there (the forwarded local server, or this
machine's MLflow credentials)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

from trainboard.backend import events as ev
from trainboard.backend.budget import cap_reached, next_tick
from trainboard.backend.metricfeed import mark_stale
from trainboard.backend.mlflow_server import LocalTrackingServer, needs_forwarding
from trainboard.backend.runners import Host, RunnerError
from trainboard.backend.stages.base import RunContext

COST_INTERVAL = 15.0  # seconds between CostUpdated events while a paid runner is up


def listen(ctx: RunContext) -> None:
    """Let the runner (made, not yet provisioned) report to the views."""
    runner = ctx.state.runner.made
    assert runner is not None

    def heard(event: ev.Event) -> None:
        """Once ready, its "ready" after a reconnect means back to what it was doing
        (training, setting up), which the views keep showing."""
        if isinstance(event, ev.RunnerChanged) and event.state == "ready" and ctx.state.runner.ready_at is not None:
            event = dataclasses.replace(event, state=ctx.state.runner.shown_state, at=time.time())
        ctx.emit(event)

    runner.notify = heard


def runner_ready(ctx: RunContext, host: Host, at: float | None = None) -> None:
    state = ctx.state.runner
    state.ready_at = at or time.time()
    details = dict(host.details)
    try:
        state.hourly_price = float(details["hourly_price"]) if details.get("hourly_price") else None
    except ValueError:
        state.hourly_price = None
    ctx.update_record(runner={"kind": host.kind, "address": host.address, "workspace": host.workspace,
                              "details": details, "ready_at": state.ready_at, "state": ctx.runner.state(),
                              **({"hourly_price": state.hourly_price} if state.hourly_price is not None else {})})
    ctx.emit(ev.RunnerChanged(state="ready", kind=host.kind, address=host.address, details=host.details,
                              at=state.ready_at))
    if state.hourly_price is not None and state.cost_task is None:
        state.cost_task = asyncio.create_task(_tick_cost(ctx))


def cost(ctx: RunContext, final: bool = False) -> ev.CostUpdated | None:
    state = ctx.state.runner
    if state.hourly_price is None or state.ready_at is None:
        return None
    uptime = max(0.0, time.time() - state.ready_at)
    return ev.CostUpdated(state.hourly_price, uptime, state.hourly_price * uptime / 3600, final,
                          cap=ctx.config.budget.max_cost_usd)


async def _tick_cost(ctx: RunContext) -> None:
    """The cost every COST_INTERVAL (and the moment it reaches the cap, which stops the run)."""
    while (update := cost(ctx)) is not None:
        ctx.emit(update)
        if cap_reached(ctx, update):
            return
        await asyncio.sleep(next_tick(update, ctx.config.budget.max_cost_usd, COST_INTERVAL))


def serve_tracking(ctx: RunContext, uri: str) -> bool:
    """A job that cannot open the local store: serve it here (forwarded at train). False: not needed."""
    if not needs_forwarding(uri, ctx.capabilities.shares_filesystem):
        return False
    tracking = ctx.state.tracking
    tracking.server = LocalTrackingServer(uri, ctx.root / ".trainboard" / "mlartifacts")
    tracking.server_task = asyncio.create_task(tracking.server.start())
    return True


async def job_tracking_env(ctx: RunContext) -> dict[str, str]:
    """How the job reaches MLflow from the runner: the forwarded local server, or the
    configured server's URI with this machine's MLflow credentials (never printed)."""
    tracking = ctx.state.tracking
    if tracking.server is not None and tracking.server_task is not None:
        await tracking.server_task
        port = await ctx.runner.forward(tracking.server.port)
        uri = f"http://127.0.0.1:{port}"
        ctx.save_record(job_tracking_uri=uri)  # attach checks the forward it restores against it
        return {"MLFLOW_TRACKING_URI": uri}
    if ctx.capabilities.shares_filesystem:
        return {}
    return {name: value for name, value in os.environ.items()
            if name.startswith("MLFLOW_TRACKING_") and name != "MLFLOW_TRACKING_URI"}


async def check_deliveries(ctx: RunContext) -> None:
    """A runner that relays the job's MLflow calls to this machine (the ssh runner's forward)
    tells whether some never got through; then the metrics are stale, as when MLflow is away."""
    if (not ctx.capabilities.relays_tracking or ctx.state.tracking.server is None
            or ctx.state.metrics.stale is not None):
        return
    try:
        since = await ctx.runner.undelivered_metrics()
    except RunnerError as exc:
        ctx.notice(f"could not ask the runner whether the job's metrics all arrived: {exc}")
        return
    if since is not None:
        mark_stale(ctx, since, "some of the job's MLflow calls never reached this machine "
                               "(the SSH forward was away longer than the relay waits)")

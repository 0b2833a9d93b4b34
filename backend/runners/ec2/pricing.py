"""The hourly price behind the live cost figure: runner.hourly_price, the spot price seen,
or an approximate on-demand list price."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainboard.backend.config import Ec2RunnerConfig

# Approximate us-east-1 Linux on-demand list prices, USD an hour, for the live cost
# figure only. runner.hourly_price overrides them; spot runs use the spot price seen.
ON_DEMAND_PRICES: dict[str, float] = {
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "c5.xlarge": 0.17,
    "g4dn.xlarge": 0.526,
    "g5.xlarge": 1.006,
    "g6.xlarge": 0.805,
    "p3.2xlarge": 3.06,
}


def hourly_price(config: Ec2RunnerConfig, market: str | None, zone: str | None,
                 spot_prices: dict[str, float]) -> float | None:
    """USD an hour: the configured price, else the spot price in ``zone`` (the highest seen when
    the zone's is unknown) for a spot instance, else the on-demand table's; None when unknown."""
    price: float | None = config.hourly_price
    if price is None and market == "spot" and spot_prices:
        price = spot_prices.get(zone) if zone else None
        if price is None:
            price = max(spot_prices.values())
    if price is None:
        price = ON_DEMAND_PRICES.get(config.instance_type)
    return price

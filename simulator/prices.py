"""What a GPU-hour costs: the price quotes in the GPU profiles, picked by the scenario's ``cost``
settings and a pool's own ``fleet.pools[].pricing``.

What this models: a cloud price list. Each GPU profile carries quotes (``prices:``: kind —
on-demand, spot or reserved —, provider, $ per GPU-hour, date); :func:`gpu_price` picks the first
quote of the scenario's ``cost.pricing`` kind (of ``cost.provider`` when set) unless
``cost.usd_per_gpu_hour`` overrides it; :func:`pool_price` applies a pool's own pricing (another
kind, a fixed price, a reserved commitment of N GPUs with on-demand above). The bill built from
these prices is :mod:`simulator.cost`; the autoscaler's $/h series and the planner read the prices
from here, below the run and the cluster, so nothing that prices a GPU imports the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from simulator.errors import ConfigError
from simulator.plan_spec import CostConfig
from simulator.profiles import GpuProfile, load_gpu

if TYPE_CHECKING:
    from simulator.cluster.spec import PoolPricing


def gpu_price(gpu: GpuProfile | str, cost: CostConfig) -> tuple[float, str]:
    """($ per GPU-hour, where the figure comes from) for ``gpu`` under ``cost``."""
    g = load_gpu(gpu) if isinstance(gpu, str) else gpu
    for name, usd in cost.usd_per_gpu_hour.items():
        if name.lower() == g.name.lower():
            return float(usd), "scenario override (cost.usd_per_gpu_hour)"
    quotes = [p for p in g.prices if p.kind == cost.pricing]
    if cost.provider:
        quotes = [p for p in quotes if cost.provider.lower() in p.provider.lower()]
    if not quotes:
        who = f" from a provider matching '{cost.provider}'" if cost.provider else ""
        raise ConfigError(f"cost.pricing: GPU {g.name} has no {cost.pricing} price{who}; set "
                          f"cost.usd_per_gpu_hour.{g.name}, pick another pricing/provider, or add "
                          f"a quote under prices: in its profile")
    q = quotes[0]
    return float(q.usd_per_gpu_hour), f"{q.kind} {q.provider} ({q.date})"


@dataclass(frozen=True)
class PoolPrice:
    """What a pool's GPUs cost: a price per GPU-hour, or a commitment and a price above it."""

    usd_per_gpu_hour: float
    source: str
    committed_gpus: int = 0
    """GPUs paid for whether held or not (0: none, every held GPU at ``usd_per_gpu_hour``)."""
    overflow_usd_per_gpu_hour: float = 0.0
    """Price of GPUs held above the commitment."""

    def usd_per_hour(self, gpus: float) -> float:
        """Spend rate while ``gpus`` GPUs are held."""
        if self.committed_gpus:
            return (self.committed_gpus * self.usd_per_gpu_hour
                    + max(gpus - self.committed_gpus, 0.0) * self.overflow_usd_per_gpu_hour)
        return gpus * self.usd_per_gpu_hour


def pool_price(gpu: str, cost: CostConfig, pricing: PoolPricing | None) -> PoolPrice:
    """The price of a pool of ``gpu`` with its own ``pricing`` (None: the scenario's ``cost``)."""
    if pricing is None:
        usd, src = gpu_price(gpu, cost)
        return PoolPrice(usd, src)
    if pricing.usd_per_gpu_hour is not None:
        usd, src = float(pricing.usd_per_gpu_hour), "pool override (pricing.usd_per_gpu_hour)"
    else:
        kind = pricing.kind or cost.pricing
        # NOTE: cost.usd_per_gpu_hour prices the scenario's pricing kind; a pool asking for
        # another kind reads the profile's quote of that kind.
        sub = cost.model_copy(update={
            "pricing": kind, "provider": pricing.provider or cost.provider,
            "usd_per_gpu_hour": cost.usd_per_gpu_hour if kind == cost.pricing else {}})
        usd, src = gpu_price(gpu, sub)
    if pricing.committed_gpus is None:
        return PoolPrice(usd, src)
    if pricing.overflow_usd_per_gpu_hour is not None:
        over = float(pricing.overflow_usd_per_gpu_hour)
    else:
        over = gpu_price(gpu, cost.model_copy(update={"pricing": "on_demand",
                                                      "usd_per_gpu_hour": {}}))[0]
    return PoolPrice(usd, f"{src}; {pricing.committed_gpus} GPUs committed, on-demand above",
                     int(pricing.committed_gpus), over)


def pool_prices(replicas: pd.DataFrame, cost: CostConfig,
                pools: Sequence[Any] = ()) -> dict[str, PoolPrice]:
    """Pool name → its price, for every pool in the lifetime table (``pools``: the scenario's
    ``fleet.pools``; a pool not among them is priced by ``cost``)."""
    cfg = {p.name: p.pricing for p in pools}
    out: dict[str, PoolPrice] = {}
    for pool, g in replicas.groupby("pool", sort=True):
        gpus = sorted(g["gpu"].astype(str).unique())
        out[str(pool)] = pool_price(gpus[0], cost, cfg.get(str(pool)))
    return out

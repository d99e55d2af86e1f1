"""What a fleet costs: GPU-hours × price, and the unit costs a budget meeting asks for.

What this models: a cloud bill for GPUs. Every replica is billed from the moment it is acquired
(provisioning, image pull, weight loading, warm-up and idle time included — a GPU you hold is a GPU
you pay for) until it is released, for ``tp`` GPUs, at the price per GPU-hour of its GPU profile:
the first quote of the scenario's ``cost.pricing`` kind (on-demand, spot or reserved), or of
``cost.provider``, unless ``cost.usd_per_gpu_hour`` overrides it. Billing is per second or per
started hour (``cost.granularity``).

Replica lifetimes come from ``Results.extra["replicas"]`` (one row per replica lifetime:
``replica``, ``pool``, ``gpu``, ``tp``, ``start_s``, ``end_s``, ``end_reason``) when the fleet records
them; the time between a crash and the same replica's recovery is billed too (the machine is still
held), the time after a spot preemption or a zone loss is not. A static fleet without that table is
``fleet.replicas`` replicas of ``tp`` GPUs held for the whole simulated time.

From the bill it derives: the spend rate ($/h) over the measurement window and per month, the total
for the simulated time, $ per 1M input and per 1M output tokens, $ per request meeting the SLO, and
next to them the utilisation (busy fraction, KV-cache usage) and the dollars spent while replicas
were idle, so waste is visible.

NOTE: input and output tokens share the same GPUs, so splitting the bill between them is a choice:
each engine step's time is split between its prefill and decode tokens in proportion to their
counts (a step is one forward pass over all its tokens), the idle time in the same proportion as the
busy time. Without step records the split follows the token counts. ``usd_per_1m_tokens`` (input and
output together) needs no such choice.

Leaves out: CPU hosts, storage, network egress, and reserved capacity paid for but unused.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simulator.errors import ConfigError
from simulator.plan_spec import CostConfig
from simulator.profiles import GpuProfile, load_gpu

if TYPE_CHECKING:
    from simulator.run import Results

REPLICA_COLUMNS = ["replica", "pool", "gpu", "tp", "start_s", "end_s"]


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Replica lifetimes
# --------------------------------------------------------------------------------------------


def static_replicas(num_replicas: int, gpu: str, tp: int, end_s: float,
                    pool: str = "default") -> pd.DataFrame:
    """The lifetime table of a static fleet: every replica held from 0 to ``end_s``."""
    return pd.DataFrame({"replica": np.arange(num_replicas, dtype=np.int64), "pool": pool,
                         "gpu": gpu, "tp": np.full(num_replicas, tp, dtype=np.int64),
                         "start_s": 0.0, "end_s": float(end_s)}, columns=REPLICA_COLUMNS)


def replicas_of(res: Results) -> pd.DataFrame:
    """Replica lifetimes of a run: the fleet's own table if it recorded one, else a static fleet."""
    table = res.extra.get("replicas") if res.extra else None
    end = float(res.summary["sim"]["sim_time_s"])
    if isinstance(table, pd.DataFrame) and len(table):
        df = table.copy()
        if "gpu" not in df.columns:
            df["gpu"] = res.deployment.gpu.name
        if "tp" not in df.columns:
            df["tp"] = res.deployment.tp
        if "pool" not in df.columns:
            df["pool"] = "default"
        if "replica" not in df.columns:
            df["replica"] = np.arange(len(df))
        # A replica still held when the run stops is billed until then.
        df["end_s"] = df["end_s"].astype(float).fillna(end).clip(upper=end)
        df["start_s"] = df["start_s"].astype(float)
        return _with_crash_gaps(df)[REPLICA_COLUMNS].reset_index(drop=True)
    n = int(getattr(res.scenario.fleet, "replicas", 1))
    return static_replicas(n, res.deployment.gpu.name, res.deployment.tp, end)


def _with_crash_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Add the time between a crash and the same replica coming back as billed time.

    NOTE: a crashed process or GPU fault leaves the machine in your account while it restarts, so
    that gap is paid for; a spot preemption or a zone loss takes the machine away (the replacement is
    a new lifetime), so those gaps are not."""
    if "end_reason" not in df.columns or not len(df):
        return df
    gaps = []
    for _, g in df.sort_values("start_s").groupby(["pool", "replica"], sort=False):
        rows = g.to_dict("records")
        for a, b in itertools.pairwise(rows):
            if a["end_reason"] == "crash" and b["start_s"] > a["end_s"]:
                gaps.append({**a, "start_s": a["end_s"], "end_s": b["start_s"],
                             "end_reason": "crash_gap"})
    return pd.concat([df, pd.DataFrame(gaps)], ignore_index=True) if gaps else df


def billed_seconds(start_s: np.ndarray, end_s: np.ndarray, granularity: str) -> np.ndarray:
    """Billed seconds per replica: the held time, rounded up to whole hours for hourly billing."""
    held = np.maximum(np.asarray(end_s, float) - np.asarray(start_s, float), 0.0)
    if granularity == "hour":
        return np.ceil(held / 3600.0 - 1e-9).clip(min=0) * 3600.0
    return held


def gpu_seconds_between(replicas: pd.DataFrame, t0: float, t1: float) -> pd.Series:
    """GPU-seconds each replica was held within [t0, t1]."""
    lo = replicas["start_s"].clip(lower=t0)
    hi = replicas["end_s"].clip(upper=t1)
    return (hi - lo).clip(lower=0.0) * replicas["tp"]


def cost_timeseries(replicas: pd.DataFrame, cost: CostConfig, end_s: float,
                    step_s: float | None = None) -> pd.DataFrame:
    """Spend over time: ``time_s``, ``gpus`` held, ``usd_per_hour`` and ``cumulative_usd``
    (per-second proration) sampled every ``step_s`` (default: 200 points over the run)."""
    end = max(float(end_s), 1e-9)
    step = step_s or end / 200.0
    t = np.arange(0.0, end + step / 2, step)
    price = replicas["gpu"].map(lambda g: gpu_price(str(g), cost)[0]).to_numpy(float)
    tp = replicas["tp"].to_numpy(float)
    st = replicas["start_s"].to_numpy(float)
    en = replicas["end_s"].to_numpy(float)
    held = (st[None, :] <= t[:, None]) & (t[:, None] < en[None, :])
    held[-1] = (st <= t[-1]) & (t[-1] <= en)
    gpus = (held * tp).sum(axis=1)
    rate = (held * tp * price).sum(axis=1)
    cum = ((np.minimum(en[None, :], t[:, None]) - st[None, :]).clip(min=0) * tp * price).sum(axis=1)
    return pd.DataFrame({"time_s": t, "gpus": gpus, "usd_per_hour": rate,
                         "cumulative_usd": cum / 3600.0})


# --------------------------------------------------------------------------------------------
# The cost block of the summary
# --------------------------------------------------------------------------------------------


def prefill_share(steps: pd.DataFrame, input_tokens: float, output_tokens: float) -> float:
    """Fraction of GPU time attributed to input (prefill) tokens: each step's duration split by its
    prefill vs decode token counts; without step records, by token counts."""
    if len(steps) and {"duration_s", "num_tokens", "num_prefill_tokens"} <= set(steps.columns):
        tok = steps["num_tokens"].to_numpy(float)
        dur = steps["duration_s"].to_numpy(float)
        pre = steps["num_prefill_tokens"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(tok > 0, pre / tok, 0.0)
        busy = float(dur.sum())
        if busy > 0:
            return float((dur * frac).sum() / busy)
    total = input_tokens + output_tokens
    return input_tokens / total if total > 0 else 0.5


def cost_summary(res: Results, goodput_rps: float | None = None) -> dict[str, Any]:
    """The ``cost`` block of a run's summary (see the module docstring for each figure)."""
    cfg: CostConfig = res.scenario.cost
    summ = res.summary
    reps = replicas_of(res)
    prices = {str(g): gpu_price(str(g), cfg) for g in sorted(reps["gpu"].astype(str).unique())}
    price = reps["gpu"].astype(str).map(lambda g: prices[g][0]).to_numpy(float)
    tp = reps["tp"].to_numpy(float)
    held = np.maximum(reps["end_s"].to_numpy(float) - reps["start_s"].to_numpy(float), 0.0)
    billed = billed_seconds(reps["start_s"].to_numpy(float), reps["end_s"].to_numpy(float),
                            cfg.granularity)
    total_usd = float((billed * tp * price).sum() / 3600.0)
    held_usd = float((held * tp * price).sum() / 3600.0)
    bill_factor = total_usd / held_usd if held_usd > 0 else 1.0

    # Spend rate over the measurement window, and the unit costs it implies.
    w0, w1 = float(summ["window_s"]["start"]), float(summ["window_s"]["end"])
    win = max(w1 - w0, 1e-9)
    gs = gpu_seconds_between(reps, w0, w1).to_numpy(float)
    usd_per_hour = float((gs * price).sum() / win) * bill_factor
    th = summ["throughput"]
    per_s = usd_per_hour / 3600.0
    in_tps, out_tps = float(th["input_tokens_per_s"]), float(th["output_tokens_per_s"])
    share = prefill_share(res.steps, in_tps, out_tps)

    def per(rate: float, scale: float, usd_s: float) -> float | None:
        return usd_s / rate * scale if rate > 0 else None

    busy = float(summ["sim"].get("replica_busy_frac", 0.0))
    by_pool: dict[str, Any] = {}
    for pool, g in reps.groupby("pool", sort=True):
        idx = g.index.to_numpy()
        by_pool[str(pool)] = {
            "gpu": ",".join(sorted(g["gpu"].astype(str).unique())),
            "replicas": len(g),
            "gpu_hours": float((billed[idx] * tp[idx]).sum() / 3600.0),
            "usd": float((billed[idx] * tp[idx] * price[idx]).sum() / 3600.0),
        }
    return {
        "pricing": cfg.pricing,
        "granularity": cfg.granularity,
        "usd_per_gpu_hour": {g: p for g, (p, _) in prices.items()},
        "price_source": {g: s for g, (_, s) in prices.items()},
        "basis": "replica lifetimes" if isinstance(res.extra.get("replicas"), pd.DataFrame)
        else "static fleet (replicas × tp × simulated time)",
        "gpus": float((tp * (held > 0)).sum()),
        "gpu_hours": float((billed * tp).sum() / 3600.0),
        "total_usd": total_usd,
        "usd_per_hour": usd_per_hour,
        "usd_per_month": usd_per_hour * cfg.hours_per_month,
        "usd_per_1m_tokens": per(in_tps + out_tps, 1e6, per_s),
        "usd_per_1m_input_tokens": per(in_tps, 1e6, per_s * share),
        "usd_per_1m_output_tokens": per(out_tps, 1e6, per_s * (1.0 - share)),
        "usd_per_1k_requests": per(float(th["requests_per_s"]), 1e3, per_s),
        "usd_per_good_request": per(goodput_rps, 1.0, per_s) if goodput_rps is not None else None,
        "input_share": share,
        "by_pool": by_pool,
        "utilisation": {
            "replica_busy_frac": busy,
            "kv_cache_usage_mean": float(summ["kv_cache_usage"]["mean"]),
            "kv_cache_usage_max": float(summ["kv_cache_usage"]["max"]),
            "idle_usd": total_usd * (1.0 - busy),
        },
    }


def fleet_usd_per_hour(gpu: str, tp: int, replicas: int, cost: CostConfig) -> float:
    """Steady spend rate of a static fleet (what the planner ranks candidates by)."""
    return replicas * tp * gpu_price(gpu, cost)[0]


def monthly(usd_per_hour: float, cost: CostConfig) -> float:
    return usd_per_hour * cost.hours_per_month

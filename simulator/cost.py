"""What a fleet costs: GPU-hours × price, and the unit costs a budget meeting asks for.

What this models: a cloud bill for GPUs. Every replica is billed from the moment it is acquired
(provisioning, image pull, weight loading, warm-up and idle time included — a GPU you hold is a GPU
you pay for) until it is released, for ``tp`` GPUs, at the price per GPU-hour of its pool: the
pool's own ``fleet.pools[].pricing`` (a spot pool beside an on-demand one, a fixed price), else the
first quote of the scenario's ``cost.pricing`` kind (on-demand, spot or reserved) in its GPU
profile, or of ``cost.provider``, unless ``cost.usd_per_gpu_hour`` overrides it. A pool on
``pricing: {kind: reserved, committed_gpus: N}`` pays N GPUs at the reserved price for the whole
run whether it holds them or not, and the GPUs it holds above N at the on-demand price (how most
large buyers pay: a commitment, with on-demand bursts above it).

Two kinds of figure, kept apart:
- **the run's bill** (``total_usd``, ``bill``): what the simulated time cost, billed per second or
  per started hour (``cost.granularity``; ``bill.rounding_usd`` is what hour rounding added);
- **the steady-state rate** (``usd_per_hour``, ``usd_per_month`` and the unit costs): the GPUs
  held over the measurement window, as if the fleet ran on. NOTE: hourly rounding enters the rate
  only for lifetimes that ended in the run (a burst replica released after 20 minutes pays an hour
  each time it recurs); a replica still held when the run stops would go on, so the partial hour
  its lifetime was cut at is not charged as if it recurred.

Replica lifetimes come from ``Results.extra["replicas"]`` (one row per replica lifetime:
``replica``, ``pool``, ``gpu``, ``tp``, ``start_s``, ``end_s``, ``end_reason``) when the fleet records
them; the time between a crash and the same replica's recovery is billed too (the machine is still
held), the time after a spot preemption or a zone loss is not. A static fleet without that table is
``fleet.replicas`` replicas of ``tp`` GPUs held for the whole simulated time.

From the bill it derives $ per 1M input and per 1M output tokens, $ per request meeting the SLO,
and next to them the utilisation a planner can act on (``utilisation`` and per pool):
- ``step_time_frac``: GPU-seconds spent in engine steps over GPU-seconds held. A replica steps
  whenever at least one request runs, so this is near 1 for a replica serving a trickle — it says
  the GPU was never idle, not that it was full (``replica_busy_frac`` is the same per replica);
- ``capacity_frac``: the tokens (input + output) the pool processed for measured requests, over
  what its held replicas could have processed in the window at the same mean lengths — the
  capacity of one replica from its calibrated step-time model, saturated
  (:func:`replica_capacity`). 0.1 means it could take about ten times the traffic at those
  lengths (latency aside); near 1 it is full;
- ``idle_usd``: the bill × (1 − step_time_frac), per pool.

NOTE: input and output tokens share the same GPUs, so splitting the bill between them is a choice:
each engine step's time is split between its prefill and decode tokens in proportion to their
counts (a step is one forward pass over all its tokens), the idle time in the same proportion as the
busy time. Every replica accumulates that split as it runs (``Replica.prefill_time``), so the split
is the same whether step rows are recorded or not. ``usd_per_1m_tokens`` (input and output
together) needs no such choice.

Leaves out: CPU hosts, storage, network egress; hour rounding of GPUs above a commitment (they are
prorated per second); the term of a commitment beyond the run (it is paid per second of the run).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simulator.plan_spec import CostConfig
from simulator.prices import gpu_price, pool_prices

if TYPE_CHECKING:
    from simulator.results import Results

REPLICA_COLUMNS = ["replica", "pool", "gpu", "tp", "start_s", "end_s"]


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
                    step_s: float | None = None, pools: Sequence[Any] = ()) -> pd.DataFrame:
    """Spend over time: ``time_s``, ``gpus`` held, ``usd_per_hour`` and ``cumulative_usd``
    (per-second proration; a pool's commitment is paid all along) sampled every ``step_s``
    (default: 200 points over the run). ``pools``: the scenario's ``fleet.pools`` (their
    ``pricing``)."""
    end = max(float(end_s), 1e-9)
    step = step_s or end / 200.0
    t = np.arange(0.0, end + step / 2, step)
    gpus = np.zeros(len(t))
    rate = np.zeros(len(t))
    cum = np.zeros(len(t))
    for pool, pp in pool_prices(replicas, cost, pools).items():
        r = replicas[replicas["pool"].astype(str) == pool]
        tp = r["tp"].to_numpy(float)
        st = r["start_s"].to_numpy(float)
        en = r["end_s"].to_numpy(float)
        held = (st[None, :] <= t[:, None]) & (t[:, None] < en[None, :])
        held[-1] = (st <= t[-1]) & (t[-1] <= en)
        g = (held * tp).sum(axis=1)
        gpus += g
        rate += np.array([pp.usd_per_hour(x) for x in g])
        if pp.committed_gpus:
            cum += np.array([pp.committed_gpus * x * pp.usd_per_gpu_hour
                             + held_gpus_integral(r, 0.0, x, pp.committed_gpus)
                             * pp.overflow_usd_per_gpu_hour for x in t])
        else:
            cum += ((np.minimum(en[None, :], t[:, None]) - st[None, :]).clip(min=0)
                    * tp).sum(axis=1) * pp.usd_per_gpu_hour
    return pd.DataFrame({"time_s": t, "gpus": gpus, "usd_per_hour": rate,
                         "cumulative_usd": cum / 3600.0})


def held_gpus_integral(replicas: pd.DataFrame, t0: float, t1: float, above: float = 0.0) -> float:
    """∫ max(GPUs held − ``above``, 0) dt over [t0, t1] (GPU-seconds), from the lifetime table."""
    if t1 <= t0 or not len(replicas):
        return 0.0
    st = replicas["start_s"].to_numpy(float).clip(t0, t1)
    en = replicas["end_s"].to_numpy(float).clip(t0, t1)
    tp = replicas["tp"].to_numpy(float)
    t = np.concatenate([st, en])
    d = np.concatenate([tp, -tp])
    order = np.argsort(t, kind="stable")
    t, d = t[order], d[order]
    held = np.cumsum(d)[:-1]
    dt = np.diff(t)
    return float((np.maximum(held - above, 0.0) * dt).sum())


# --------------------------------------------------------------------------------------------
# Capacity at the run's lengths
# --------------------------------------------------------------------------------------------


def replica_capacity(step_time: Any, role: str, num_blocks: int, block_size: int,
                     max_num_seqs: int, max_num_batched_tokens: int, input_len: float,
                     output_len: float) -> float | None:
    """Tokens per second (input + output) one replica processes when saturated with requests of
    these mean lengths, from its calibrated step-time model (None: the model cannot price a step
    from its totals, or no lengths).

    How: in a steady state with ``B`` requests running, each step decodes ``B`` tokens and, to
    keep ``B`` running, prefills ``B × input / output`` prompt tokens (chunked prefill folds them
    into the same step). ``B`` is the smallest of ``max_num_seqs``, the requests whose average
    context (input + output / 2) fits the KV blocks, and what the token budget allows
    (``max_num_batched_tokens × output / (input + output)``). One such step is priced; capacity
    = its tokens / its seconds. A prefill replica (disaggregated) runs budget-full prefill steps,
    a decode replica decode-only steps."""
    predict = getattr(step_time, "predict_totals", None)
    if predict is None or not (input_len > 0 and output_len > 0):
        return None
    inp = max(1, round(input_len))
    out = float(output_len)
    kv_seqs = int(num_blocks * block_size // max(inp + out / 2.0, 1.0))
    if role == "prefill":
        n = max(1, min(max_num_seqs, max_num_batched_tokens // inp))
        chunks = [(inp, 0)] * n
        dt = float(predict(n * inp, n, 0, chunks))
        return n * inp / dt if dt > 0 else None
    if role == "decode":
        b = max(1, min(max_num_seqs, kv_seqs))
        dt = float(predict(b, b, int(b * (inp + out / 2.0)), []))
        return b / dt if dt > 0 else None
    b = max(1, min(max_num_seqs, kv_seqs,
                   int(max_num_batched_tokens * out / (inp + out))))
    pre = round(b * inp / out)
    chunks = [(inp, 0)] * (pre // inp) + ([(pre % inp, 0)] if pre % inp else [])
    dt = float(predict(b + pre, b + len(chunks), int(b * (inp + out / 2.0)), chunks))
    return (b + pre) / dt if dt > 0 else None


def capacity_fns(pools: Sequence[Any]) -> dict[str, Any]:
    """Pool name → (mean input, mean output) → :func:`replica_capacity` of one of its replicas,
    for the run-time pools of a fleet (:class:`simulator.cluster.fleet.Pool`)."""
    out: dict[str, Any] = {}
    for p in pools:
        if p.step_time is None:
            continue
        sched = p.replicas[0].scheduler if p.replicas else p.make_scheduler()
        c, kv = sched.config, sched.kv

        def fn(i: float, o: float, st: Any = p.step_time, role: str = p.role, c: Any = c,
               nb: int = kv.num_blocks, bs: int = kv.block_size) -> float | None:
            return replica_capacity(st, role, nb, bs, c.max_num_seqs, c.max_num_batched_tokens,
                                    i, o)

        out[p.name] = fn
    return out


# --------------------------------------------------------------------------------------------
# The cost block of the summary
# --------------------------------------------------------------------------------------------


def prefill_share(steps: pd.DataFrame) -> float | None:
    """Fraction of step time on input (prefill) tokens from step rows: each step's duration split
    by its prefill vs decode token counts (None: no step rows). A simulated run uses the same
    split accumulated per replica as it ran (``Results.extra["gpu_time"]``) instead."""
    if len(steps) and {"duration_s", "num_tokens", "num_prefill_tokens"} <= set(steps.columns):
        tok = steps["num_tokens"].to_numpy(float)
        dur = steps["duration_s"].to_numpy(float)
        pre = steps["num_prefill_tokens"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(tok > 0, pre / tok, 0.0)
        busy = float(dur.sum())
        if busy > 0:
            return float((dur * frac).sum() / busy)
    return None


def _open_lifetimes(reps: pd.DataFrame, end: float) -> np.ndarray:
    """Lifetimes still held when the run stopped (their end is the run's, not a release)."""
    if "end_reason" in reps.columns:
        return ((reps["end_reason"].astype(str) == "run_end")
                | (reps["end_s"].to_numpy(float) >= end)).to_numpy(bool)
    return reps["end_s"].to_numpy(float) >= end


def cost_summary(res: Results, goodput_rps: float | None = None) -> dict[str, Any]:
    """The ``cost`` block of a run's summary (see the module docstring for each figure)."""
    cfg: CostConfig = res.scenario.cost
    summ = res.summary
    end = float(summ["sim"]["sim_time_s"])
    reps = replicas_of(res)
    table = res.extra.get("replicas") if res.extra else None
    raw_end = table["end_s"] if isinstance(table, pd.DataFrame) and len(table) else None
    pools_cfg = list(getattr(res.scenario.fleet, "pools", []) or [])
    prices = pool_prices(reps, cfg, pools_cfg)
    pool_col = reps["pool"].astype(str)
    price = pool_col.map(lambda p: prices[p].usd_per_gpu_hour).to_numpy(float)
    tp = reps["tp"].to_numpy(float)
    st, en = reps["start_s"].to_numpy(float), reps["end_s"].to_numpy(float)
    held = np.maximum(en - st, 0.0)
    billed = billed_seconds(st, en, cfg.granularity)
    # NOTE: the rate extrapolated from the run rounds only lifetimes that ended (a replica
    # released after 20 minutes on hourly billing pays an hour each time it recurs); a lifetime
    # cut by the end of the run would go on, so its partial hour is not charged in the rate.
    is_open = _open_lifetimes(reps, end) if raw_end is not None else np.ones(len(reps), bool)
    recurring = np.where(is_open, held, billed)
    w0, w1 = float(summ["window_s"]["start"]), float(summ["window_s"]["end"])
    win = max(w1 - w0, 1e-9)
    gs = gpu_seconds_between(reps, w0, w1).to_numpy(float)

    gpu_time = res.extra.get("gpu_time") if res.extra else None
    have_gt = isinstance(gpu_time, pd.DataFrame) and len(gpu_time) > 0
    capacity = (res.extra.get("capacity") or {}) if res.extra else {}
    measured = _measured(res) if capacity else {}

    by_pool: dict[str, Any] = {}
    total_usd = 0.0
    usd_per_hour = 0.0
    busy_usd = 0.0
    prefill_usd = 0.0
    idle_usd = 0.0
    obs_tokens = 0.0
    cap_tokens = 0.0
    for pool in sorted(prices):
        pp = prices[pool]
        m = (pool_col == pool).to_numpy(bool)
        held_gs = float((held[m] * tp[m]).sum())
        if pp.committed_gpus:
            over_run = held_gpus_integral(reps[m], 0.0, end, pp.committed_gpus)
            bill = (pp.committed_gpus * end * pp.usd_per_gpu_hour
                    + over_run * pp.overflow_usd_per_gpu_hour) / 3600.0
            over_win = held_gpus_integral(reps[m], w0, w1, pp.committed_gpus)
            rate = (pp.committed_gpus * pp.usd_per_gpu_hour
                    + over_win / win * pp.overflow_usd_per_gpu_hour)
            gpu_hours = (pp.committed_gpus * end + over_run) / 3600.0
            unused = max(pp.committed_gpus * end - (held_gs - over_run), 0.0) / 3600.0
        else:
            bill = float((billed[m] * tp[m]).sum()) * pp.usd_per_gpu_hour / 3600.0
            factor = (float((recurring[m] * tp[m]).sum()) / held_gs) if held_gs > 0 else 1.0
            rate = float(gs[m].sum()) / win * pp.usd_per_gpu_hour * factor
            gpu_hours = float((billed[m] * tp[m]).sum()) / 3600.0
            unused = None
        total_usd += bill
        usd_per_hour += rate
        row: dict[str, Any] = {
            "gpu": ",".join(sorted(reps.loc[m, "gpu"].astype(str).unique())),
            "replicas": int(m.sum()),
            "gpu_hours": gpu_hours,
            "usd": bill,
            "usd_per_hour": rate,
            "usd_per_gpu_hour": pp.usd_per_gpu_hour,
            "price_source": pp.source,
        }
        if pp.committed_gpus:
            row["committed_gpus"] = pp.committed_gpus
            row["overflow_usd_per_gpu_hour"] = pp.overflow_usd_per_gpu_hour
            row["committed_unused_gpu_hours"] = unused
        if have_gt:
            assert isinstance(gpu_time, pd.DataFrame)
            g = gpu_time[gpu_time["pool"].astype(str) == pool]
            ptp = float(tp[m][0]) if m.any() else 1.0
            busy_s = float(g["busy_s"].sum())
            step_frac = float(busy_s * ptp / held_gs) if held_gs > 0 else 0.0
            row["step_time_frac"] = step_frac
            busy_usd += busy_s * ptp * pp.usd_per_gpu_hour
            prefill_usd += float(g["prefill_s"].sum()) * ptp * pp.usd_per_gpu_hour
            idle_usd += bill * max(1.0 - step_frac, 0.0)
        fn = capacity.get(pool)
        obs = measured.get(pool)
        if fn is not None and obs is not None:
            cap = fn(obs[2], obs[3])
            if cap is not None:
                rep_s = float(gs[m].sum()) / (float(tp[m][0]) if m.any() else 1.0)
                row["capacity_tokens_per_s"] = cap
                row["capacity_frac"] = float(obs[0] / (rep_s * cap)) if rep_s > 0 else None
                obs_tokens += obs[0]
                cap_tokens += rep_s * cap
        by_pool[pool] = row

    th = summ["throughput"]
    per_s = usd_per_hour / 3600.0
    in_tps, out_tps = float(th["input_tokens_per_s"]), float(th["output_tokens_per_s"])
    share = (prefill_usd / busy_usd if busy_usd > 0 else None) if have_gt \
        else prefill_share(res.steps)
    busy = float(summ["sim"].get("replica_busy_frac", 0.0))
    if not have_gt:
        idle_usd = total_usd * (1.0 - busy)

    def per(rate: float, scale: float, usd_s: float | None) -> float | None:
        return usd_s / rate * scale if rate > 0 and usd_s is not None else None

    held_all = float((held * tp).sum())
    first: dict[str, str] = {}
    for pool, gpu in _pool_gpus(reps).items():
        first.setdefault(gpu, pool)
    return {
        "pricing": cfg.pricing,
        "granularity": cfg.granularity,
        "usd_per_gpu_hour": {g: prices[p].usd_per_gpu_hour for g, p in first.items()},
        "price_source": {g: prices[p].source for g, p in first.items()},
        "basis": "replica lifetimes" if raw_end is not None
        else "static fleet (replicas × tp × simulated time)",
        "gpus": float((tp * (held > 0)).sum()),
        "gpu_hours": float(sum(b["gpu_hours"] for b in by_pool.values())),
        "total_usd": total_usd,
        "bill": {
            "usd": total_usd,
            "granularity": cfg.granularity,
            "rounding_usd": total_usd - float((held * tp * price).sum()) / 3600.0
            if not any(pp.committed_gpus for pp in prices.values()) else None,
            "sim_time_s": end,
        },
        "usd_per_hour": usd_per_hour,
        "usd_per_month": usd_per_hour * cfg.hours_per_month,
        "usd_per_1m_tokens": per(in_tps + out_tps, 1e6, per_s),
        "usd_per_1m_input_tokens": per(in_tps, 1e6, per_s * share if share is not None else None),
        "usd_per_1m_output_tokens": per(out_tps, 1e6,
                                        per_s * (1.0 - share) if share is not None else None),
        "usd_per_1k_requests": per(float(th["requests_per_s"]), 1e3, per_s),
        "usd_per_good_request": per(goodput_rps, 1.0, per_s) if goodput_rps is not None else None,
        "input_share": share,
        "by_pool": by_pool,
        "utilisation": {
            "replica_busy_frac": busy,
            "step_time_frac": _step_frac(gpu_time, reps, held_all) if have_gt else busy,
            "capacity_frac": obs_tokens / cap_tokens if cap_tokens > 0 else None,
            "kv_cache_usage_mean": float(summ["kv_cache_usage"]["mean"]),
            "kv_cache_usage_max": _kv_max(res),
            "idle_usd": idle_usd,
        },
    }


def _kv_max(res: Results) -> float:
    """Peak sampled ``kv_cache_usage_perc`` (the gauge, as a dashboard shows it: the same whether
    step rows are recorded or not; the summary's ``kv_cache_usage.max`` takes the exact per-step
    peak when they are)."""
    ts = getattr(res, "timeseries", None)
    col = "kv_cache_usage_perc"  # simulator.metrics.names.KV_CACHE_USAGE_PERC (a layer above)
    if isinstance(ts, pd.DataFrame) and col in ts.columns and len(ts):
        return float(ts[col].max())
    return float(res.summary["kv_cache_usage"]["max"])


def _pool_gpus(reps: pd.DataFrame) -> dict[str, str]:
    """Pool → its GPU (sorted by pool)."""
    return {str(p): str(g["gpu"].iloc[0]) for p, g in reps.groupby("pool", sort=True)}


def _step_frac(gpu_time: Any, reps: pd.DataFrame, held_gpu_s: float) -> float:
    """GPU-seconds in engine steps over GPU-seconds held (every replica, weighted by its tp)."""
    tp_of = dict(zip(reps["replica"].to_numpy(), reps["tp"].to_numpy(float), strict=True))
    busy = sum(float(b) * tp_of.get(r, 1.0)
               for r, b in zip(gpu_time["replica"], gpu_time["busy_s"], strict=True))
    return float(busy / held_gpu_s) if held_gpu_s > 0 else 0.0


def _measured(res: Results) -> dict[str, tuple[float, int, float, float]]:
    """Pool → (tokens it processed for measured completed requests, their number, mean input,
    mean output length). Disaggregated: a prefill pool is credited the input tokens of the
    requests its decode pool completed, the decode pool their output tokens."""
    df = res.requests
    if not len(df) or "pool" not in df.columns:
        return {}
    warm = float(res.summary["window_s"]["start"])
    done = df[(df["outcome"].astype(str) == "completed") & (df["arrival_s"] >= warm)]
    if not len(done):
        return {}
    inp = done["input_tokens"].to_numpy(float)
    out = done["output_tokens"].to_numpy(float)
    pool = done["pool"].astype(str).to_numpy()
    fleet_means = (float(inp.mean()), float(out.mean()))
    roles = {p.name: (p.role, p.decode_pool) for p in
             (getattr(res.scenario.fleet, "pools", []) or [])
             if not getattr(res.scenario.fleet, "aggregate", False)}
    res_out: dict[str, tuple[float, int, float, float]] = {}
    names = set(pool) | set(roles)
    for name in sorted(names):
        role, dec = roles.get(name, ("mixed", None))
        m = pool == (dec if role == "prefill" else name)
        n = int(m.sum())
        mi, mo = (float(inp[m].mean()), float(out[m].mean())) if n else fleet_means
        tok = float(inp[m].sum()) if role == "prefill" else float(out[m].sum()) \
            if role == "decode" else float(inp[m].sum() + out[m].sum())
        res_out[name] = (tok, n, mi, mo)
    return res_out


def fleet_usd_per_hour(gpu: str, tp: int, replicas: int, cost: CostConfig) -> float:
    """Steady spend rate of a static fleet (what the planner ranks candidates by)."""
    return replicas * tp * gpu_price(gpu, cost)[0]


def monthly(usd_per_hour: float, cost: CostConfig) -> float:
    return usd_per_hour * cost.hours_per_month

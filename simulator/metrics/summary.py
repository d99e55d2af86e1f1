"""Frames → the numbers a planner reads: latency percentiles, throughput, cache and preemption stats.

What this models: vLLM's ``benchmark_serving`` report, computed the same way — TTFT from arrival to
the first streamed token, TPOT = (e2e − TTFT) / (output tokens − 1) per request, ITL over every gap
between streamed tokens, throughput over the measurement window — plus the engine gauges.
Only requests that arrived after the warm-up count; the window ends at the last completion (or at
the end of the run when it was cut by a duration).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simulator.metrics import names

PCTS = (50, 90, 99)
_DONE_COLUMNS = ["request_id", "finish_s", "ttft_s", "tpot_s", "e2e_s", "queue_s",
                 "input_tokens", "output_tokens"]
"""Columns of the requests frame :func:`summarize` reads."""
_MEASURED_COLUMNS = ["arrival_s", "tenant", "outcome", "ttft_s", "tpot_s", "e2e_s",
                     "input_tokens", "output_tokens"]
"""Columns of the requests frame the tenant and SLO figures read."""


def dist(values: pd.Series | np.ndarray, scale: float = 1000.0) -> dict[str, float | None]:
    """mean / p50 / p90 / p99 of ``values`` × ``scale`` (seconds → ms by default)."""
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    q = np.percentile(a, PCTS)
    out: dict[str, float | None] = {"mean": float(a.mean()) * scale}
    for p, v in zip(PCTS, q, strict=True):
        out[f"p{p}"] = float(v) * scale
    return out


def _window_end(finish_s: np.ndarray, end_s: float, counts: dict[str, int]) -> float:
    """End of the measured window: the last measured completion (``finish_s``), or the end of the
    run when none completed or requests are still in flight."""
    if counts.get(names.IN_FLIGHT, 0) > 0 or not len(finish_s):
        return end_s
    return float(finish_s.max())


def counts_summary(requests: pd.DataFrame, *, counts: dict[str, int], warmup_s: float,
                   end_s: float, sim: dict[str, Any]) -> dict[str, Any]:
    """What :func:`summarize` says without deriving a figure from the frames (a run with
    ``summaries=False``): the request counts, the measured window and ``sim``."""
    measured = ((requests["arrival_s"] >= warmup_s)
                & (requests["outcome"] == names.COMPLETED)).to_numpy()
    window_end = _window_end(requests["finish_s"].to_numpy()[measured], end_s, counts)
    return {"requests": {"arrived": counts["arrived"], "completed": counts[names.COMPLETED],
                         "rejected": counts[names.REJECTED], "timed_out": counts[names.TIMED_OUT],
                         "in_flight": counts[names.IN_FLIGHT]},
            "window_s": {"start": warmup_s, "end": window_end}, "sim": sim}


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, samples: pd.DataFrame,
              itl: pd.DataFrame, *, counts: dict[str, int], warmup_s: float, end_s: float,
              preemptions: int, prefix_queries: int, prefix_hits: int,
              sim: dict[str, Any]) -> dict[str, Any]:
    # NOTE: only the columns read here are copied (a long run's frame is large).
    done = requests.loc[(requests["arrival_s"] >= warmup_s)
                        & (requests["outcome"] == names.COMPLETED), _DONE_COLUMNS]
    window_end = _window_end(done["finish_s"].to_numpy(), end_s, counts)
    duration = max(window_end - warmup_s, 1e-9)
    itl_m = itl.loc[itl["request_id"].isin(done["request_id"]), "itl_s"]
    kv = samples[names.KV_CACHE_USAGE_PERC] if len(samples) else pd.Series(dtype=float)
    kv_max = float(steps["kv_cache_usage_perc"].max()) if len(steps) else (
        float(kv.max()) if len(kv) else 0.0)
    return {
        "requests": {
            "arrived": counts["arrived"],
            "completed": counts[names.COMPLETED],
            "rejected": counts[names.REJECTED],
            "timed_out": counts[names.TIMED_OUT],
            "in_flight": counts[names.IN_FLIGHT],
            "measured": len(done),
        },
        "ttft_ms": dist(done["ttft_s"]),
        "tpot_ms": dist(done["tpot_s"]),
        "itl_ms": dist(itl_m),
        "e2e_ms": dist(done["e2e_s"]),
        "queue_ms": dist(done["queue_s"]),
        "throughput": {
            "requests_per_s": len(done) / duration,
            "input_tokens_per_s": float(done["input_tokens"].sum()) / duration,
            "output_tokens_per_s": float(done["output_tokens"].sum()) / duration,
        },
        "kv_cache_usage": {
            "mean": float(kv.mean()) if len(kv) else 0.0,
            "max": kv_max,
        },
        "preemptions": int(preemptions),
        "prefix_cache_hit_rate": prefix_hits / prefix_queries if prefix_queries else 0.0,
        "window_s": {"start": warmup_s, "end": window_end},
        "sim": sim,
    }


# --------------------------------------------------------------------------------------------
# Planner figures (issue 7): per-tenant breakdown, SLO attainment and goodput, cost
# --------------------------------------------------------------------------------------------

DEFAULT_TENANT = "default"


def measured_requests(requests: pd.DataFrame, warmup_s: float) -> pd.DataFrame:
    """Requests that arrived after the warm-up, with a ``tenant`` column (``default`` when the run
    has no tenants)."""
    keep = requests["arrival_s"] >= warmup_s
    # NOTE: no copy when the warm-up leaves every request in (a long run's frame is large).
    m = requests if bool(keep.all()) else requests[keep]
    if "tenant" not in m.columns:
        m = m.assign(tenant=DEFAULT_TENANT)
    else:
        m = m.assign(tenant=m["tenant"].astype(str))
    return m


def _window_s(summary: dict[str, Any]) -> float:
    w = summary["window_s"]
    return max(float(w["end"]) - float(w["start"]), 1e-9)


def tenant_summary(measured: pd.DataFrame, window_s: float) -> dict[str, Any]:
    """Per tenant: request counts, latency percentiles and throughput (same definitions as the
    fleet-wide figures)."""
    out: dict[str, Any] = {}
    for tenant, g in measured.groupby("tenant", sort=True, observed=True):
        outcome = g["outcome"]
        done = g[outcome == names.COMPLETED]
        kinds = [o for o in names.OUTCOMES if o != names.COMPLETED]
        out[str(tenant)] = {
            "requests": {"arrived": len(g), "completed": len(done),
                         **{o: int((outcome == o).sum()) for o in kinds}},
            "ttft_ms": dist(done["ttft_s"]),
            "tpot_ms": dist(done["tpot_s"]),
            "e2e_ms": dist(done["e2e_s"]),
            "throughput": {
                "requests_per_s": len(done) / window_s,
                "input_tokens_per_s": float(done["input_tokens"].sum()) / window_s,
                "output_tokens_per_s": float(done["output_tokens"].sum()) / window_s,
            },
        }
    return out


def _latency_s(df: pd.DataFrame, column: str, end_s: float | None, bound_ms: float) -> np.ndarray:
    """Per-request latency in seconds as far as the run decided it against ``bound_ms``: the value
    for completed requests (0 for a TPOT of a one-token answer: no gap to miss); +inf for requests
    that failed (rejected, timed out, failed) and for requests still in flight that have already
    waited longer than the bound; NaN (undecided, left out) for requests still in flight that could
    still make it. A TTFT already streamed by an in-flight request counts as known."""
    v = df[column].to_numpy(dtype=float, copy=True)
    outcome = df["outcome"].astype(str).to_numpy()
    done = outcome == names.COMPLETED
    flying = outcome == names.IN_FLIGHT
    out = np.full(len(v), np.inf)
    out[done] = np.where(np.isnan(v[done]), 0.0, v[done])
    if flying.any():
        waited = (end_s - df["arrival_s"].to_numpy(dtype=float)) if end_s is not None \
            else np.zeros(len(v))
        known = flying & ~np.isnan(v) & (column == "ttft_s")
        out[known] = v[known]
        rest = flying & ~known
        missed = rest & (waited * 1000.0 > bound_ms) & (column != "tpot_s")
        out[rest] = np.nan
        out[missed] = np.inf
    return out


def target_check(df: pd.DataFrame, name: str, target_ms: float,
                 end_s: float | None = None) -> dict[str, Any]:
    """One percentile target over ``df``'s requests: attainment (fraction of the decided requests
    within the target), the percentile itself (inverted-CDF, failed requests as +inf; None when it
    falls on one), whether it is met (attainment ≥ percentile) and how many in-flight requests were
    left out as undecided (``end_s``: when the run stopped)."""
    from simulator.plan_spec import TARGETS

    column, pct = next((c, p) for n, c, p in TARGETS if n == name)
    v = _latency_s(df, column, end_s, target_ms)
    decided = v[~np.isnan(v)]
    undecided = int(np.isnan(v).sum())
    if decided.size == 0:
        return {"target_ms": target_ms, "value_ms": None, "attainment": None, "met": True,
                "undecided": undecided}
    att = float(np.mean(decided * 1000.0 <= target_ms))
    q = float(np.percentile(decided, pct, method="inverted_cdf"))
    return {"target_ms": target_ms, "value_ms": q * 1000.0 if np.isfinite(q) else None,
            "attainment": att, "met": bool(att >= pct / 100.0 - 1e-12), "undecided": undecided}


def _good(df: pd.DataFrame, targets: dict[str, float],
          end_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(meets the SLO, decided) per request: a request meets it when it completed with each latency
    within the loosest target set for its metric; an in-flight request is decided only once it has
    already missed one."""
    from simulator.plan_spec import TARGETS

    bound: dict[str, float] = {}
    for name, column, _ in TARGETS:
        if name in targets:
            bound[column] = max(bound.get(column, 0.0), targets[name])
    good = (df["outcome"].astype(str) == names.COMPLETED).to_numpy().copy()
    decided = good | (df["outcome"].astype(str) != names.IN_FLIGHT).to_numpy()
    for column, ms in bound.items():
        v = _latency_s(df, column, end_s, ms)
        good &= v * 1000.0 <= ms
        decided |= np.isinf(v) | (~np.isnan(v) & (v * 1000.0 > ms))
    return good, decided


def slo_summary(measured: pd.DataFrame, slo: Any, window_s: float,
                end_s: float | None = None) -> dict[str, Any]:
    """SLO attainment and goodput, fleet-wide and per tenant (``slo``: a SloConfig; ``end_s``: when
    the run stopped, to decide requests still in flight)."""
    tenants = sorted(set(measured["tenant"].unique().tolist()) | set(slo.tenants))
    good = np.zeros(len(measured), dtype=bool)
    decided = np.zeros(len(measured), dtype=bool)
    per: dict[str, Any] = {}
    met = True
    tenant_col = measured["tenant"].to_numpy()
    for t in tenants:
        mask = tenant_col == t
        g = measured[mask]
        targets = slo.targets_for(t)
        checks = {n: target_check(g, n, v, end_s) for n, v in targets.items()}
        ok, dec = _good(g, targets, end_s)
        good[mask], decided[mask] = ok, dec
        t_met = all(c["met"] for c in checks.values())
        met &= t_met
        per[t] = {"requests": len(g), "targets": checks,
                  "attainment": float(ok.sum() / dec.sum()) if dec.any() else None,
                  "goodput_rps": float(ok.sum()) / window_s, "met": t_met}
    glob = {n: target_check(measured, n, v, end_s) for n, v in slo.set_targets().items()}
    met &= all(c["met"] for c in glob.values())
    return {"targets": glob,
            "attainment": float(good.sum() / decided.sum()) if decided.any() else None,
            "goodput_rps": float(good.sum()) / window_s,
            "good_requests": int(good.sum()),
            "undecided_requests": int((~decided).sum()),
            "met": bool(met), "tenants": per}


def post_summary(res: Any) -> dict[str, Any]:
    """The planner's additions to a run's summary: ``tenants`` (per-tenant breakdown), ``slo``
    (attainment and goodput; None without SLO) and ``cost`` (see :mod:`simulator.cost`).
    ``res`` is a :class:`simulator.run.Results` whose summary already holds the core figures."""
    from simulator.cost import cost_summary

    sc = res.scenario
    summary = res.summary
    window = _window_s(summary)
    req = res.requests
    measured = measured_requests(req[[c for c in _MEASURED_COLUMNS if c in req.columns]],
                                 float(summary["window_s"]["start"]))
    out: dict[str, Any] = {"tenants": tenant_summary(measured, window)}
    end = float(summary["sim"]["sim_time_s"])
    out["slo"] = slo_summary(measured, sc.slo, window, end) if sc.slo is not None else None
    out["cost"] = cost_summary(res, goodput_rps=out["slo"]["goodput_rps"] if out["slo"] else None)
    return out


# --------------------------------------------------------------------------------------------
# Prediction intervals over replications (K seeds)
# --------------------------------------------------------------------------------------------

#: Two-sided 95% Student-t quantiles t(0.975, df) for df = 1 … 30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """t(0.975, df): the table up to 30, then interpolation in 1/df towards the normal 1.960
    (exact to 3 decimals at df = 40, 60, 120)."""
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[df - 1]
    return 1.960 + (2.042 - 1.960) * 30.0 / df


def interval(values: list[float]) -> dict[str, float | int | None]:
    """Mean and 95% t-interval of the mean of ``values`` (replications with different seeds).
    With one value the interval is the point; None values (a figure undefined in some run) make the
    figure None."""
    if any(v is None for v in values) or not values:
        return {"mean": None, "lo": None, "hi": None, "n": len(values)}
    a = np.asarray(values, dtype=float)
    m = float(a.mean())
    if a.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    half = t975(a.size - 1) * float(a.std(ddof=1)) / np.sqrt(a.size)
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(a.size)}


def interval_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Same tree as one summary, every numeric leaf replaced by {mean, lo, hi, n} over the
    replications; booleans become the fraction of runs where they held (``met`` → share met);
    other leaves (names, versions) are taken from the first run."""

    def walk(nodes: list[Any]) -> Any:
        first = nodes[0]
        if isinstance(first, dict):
            keys = [k for k in first if all(isinstance(n, dict) and k in n for n in nodes)]
            return {k: walk([n[k] for n in nodes]) for k in keys}
        if isinstance(first, bool):
            return float(np.mean([bool(n) for n in nodes]))
        numeric = all(n is None or (isinstance(n, int | float) and not isinstance(n, bool))
                      for n in nodes)
        if numeric and (isinstance(first, int | float) or first is None):
            return None if all(n is None for n in nodes) else interval(nodes)
        return first

    return walk(summaries)


# --------------------------------------------------------------------------------------------
# Fleet summary (merged into summary["fleet"] by simulator.run)
# --------------------------------------------------------------------------------------------


def fleet_summary(requests: pd.DataFrame, attempts: pd.DataFrame, replicas: pd.DataFrame,
                  warmup_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the serving path did: attempts and retries, why requests were refused or lost, per pool
    and per model, replica lifetimes and GPU-hours. Only requests arriving after the warm-up count
    (replica figures cover the whole run)."""
    # NOTE: only the columns read here are copied (a long run's frames are large).
    m = requests.loc[requests["arrival_s"] >= warmup_s,
                     ["request_id", "outcome", "reason", "pool", "output_tokens", "capped",
                      "region"]]
    a = attempts.loc[attempts["request_id"].isin(m["request_id"]), ["attempt", "reason"]] \
        if len(attempts) else attempts
    reasons = m.loc[m["reason"] != "", "reason"].value_counts().sort_index()
    att_reasons: dict[Any, Any] = (
        a.loc[a["reason"] != "", "reason"].value_counts().sort_index().to_dict() if len(a) else {})
    done = m[m["outcome"] == names.COMPLETED]
    by_pool: dict[str, Any] = {}
    for pool, g in done.groupby("pool", sort=True):
        by_pool[str(pool)] = {"completed": len(g),
                              "output_tokens": int(g["output_tokens"].sum())}
    gpu_h = 0.0
    down: dict[str, int] = {}
    if len(replicas):
        gpu_h = float(((replicas["end_s"] - replicas["start_s"]) * replicas["tp"]).sum() / 3600)
        for reason, n in replicas["end_reason"].value_counts().items():
            # NOTE: an autoscaler's scale-down ends a lifetime on purpose: not an outage.
            if reason != names.END_RUN and not str(reason).startswith("scale_down"):
                down[str(reason)] = int(n)
    n_req = max(len(m), 1)
    out: dict[str, Any] = {
        "attempts": len(a),
        "retries": int((a["attempt"] > 0).sum()) if len(a) else 0,
        "attempts_per_request": len(a) / n_req,
        "failed": int((m["outcome"] == names.FAILED).sum()),
        "reasons": {str(k): int(v) for k, v in reasons.items()},
        "attempt_reasons": {str(k): int(v) for k, v in att_reasons.items()},
        "capped": int(m["capped"].sum()),
        "by_pool": by_pool,
        "by_region": {str(k): int(v) for k, v in done["region"].value_counts().sort_index().items()},
        "replicas": {"lifetimes": len(replicas), "outages": down, "gpu_hours": gpu_h},
    }
    if extra:
        out.update(extra)
    return out

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


def summarize(requests: pd.DataFrame, steps: pd.DataFrame, samples: pd.DataFrame,
              itl: pd.DataFrame, *, counts: dict[str, int], warmup_s: float, end_s: float,
              preemptions: int, prefix_queries: int, prefix_hits: int,
              sim: dict[str, Any]) -> dict[str, Any]:
    measured = requests[requests["arrival_s"] >= warmup_s]
    done = measured[measured["outcome"] == names.COMPLETED]
    window_end = float(done["finish_s"].max()) if len(done) else end_s
    if counts.get(names.IN_FLIGHT, 0) > 0:
        window_end = end_s
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

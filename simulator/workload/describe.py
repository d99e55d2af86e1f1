"""Statistics of a workload without simulating a fleet: what ``servesim workload describe`` prints.

What this models: the traffic as a load generator would send it — arrival times, lengths, tenants,
prefix sharing — sampled straight from :func:`simulator.workload.generator.build_traffic`, so the
numbers are those of the exact stream a run would send with the same seed. Session turns are
placed as if every response were instant (start + think times); closed-loop traffic has no
arrival times of its own (they depend on the server), so only its lengths are described.

The ideal prefix-cache hit rate is the share of prompt tokens in full blocks already sent by an
earlier request (one replica with an infinite cache, capped at prompt − 1 tokens as vLLM does):
an upper bound on what prefix caching and prefix-affinity routing can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simulator.workload.arrivals import expected_rate_cv
from simulator.workload.generator import RequestSpec, build_traffic
from simulator.workload.spec import ClosedLoopArrivals, WorkloadConfig


@dataclass
class WorkloadSample:
    """Requests of a workload, one row each: time_s (NaN for closed loop), prompt_len, output_len,
    tenant, priority, slo_class, session_id, turn, cached_ideal (tokens an infinite prefix cache
    would serve)."""

    frame: pd.DataFrame
    closed_loop: bool
    sessions: bool


def sample_workload(cfg: WorkloadConfig, seed: int = 0, max_requests: int = 20_000,
                    block_size: int = 16, max_model_len: int | None = None,
                    base_dir: str | None = None) -> WorkloadSample:
    """Draw up to ``max_requests`` requests of ``cfg`` (with its own caps and duration)."""
    traffic = build_traffic(cfg, np.random.SeedSequence(seed), block_size, base_dir, max_model_len)
    rows: list[tuple[float, RequestSpec]] = []
    for stream in traffic.open_loop:
        for t, spec in zip(stream.times, stream.specs, strict=False):
            rows.append((t, spec))
            if len(rows) >= max_requests:
                break
    for sessions in traffic.sessions:
        for s in sessions:
            t = s.start_s
            for k in range(s.num_turns):
                t += s.think_time_s[k] if k else 0.0
                if traffic.until is not None and t > traffic.until:
                    break
                rows.append((t, s.make_turn(k)))
            if len(rows) >= max_requests:
                break
    for group in traffic.closed_loop:
        n = max_requests if group.limit is None else min(group.limit, max_requests)
        for _ in range(n):
            rows.append((float("nan"), next(group.specs)))
    rows.sort(key=lambda r: r[0])
    rows = rows[:max_requests]
    seen: set[int] = set()
    cached: list[int] = []
    for _, spec in rows:
        k = 0
        for h in spec.prefix_hashes:
            if h not in seen:
                break
            k += 1
        cached.append(min(k * block_size, max(spec.prompt_len - 1, 0)))
        seen.update(spec.prefix_hashes)
    frame = pd.DataFrame({
        "time_s": [t for t, _ in rows],
        "prompt_len": [s.prompt_len for _, s in rows],
        "output_len": [s.output_len for _, s in rows],
        "tenant": [s.tenant for _, s in rows],
        "priority": [s.priority for _, s in rows],
        "slo_class": [s.slo_class for _, s in rows],
        "session_id": [s.session_id for _, s in rows],
        "turn": [s.turn for _, s in rows],
        "cached_ideal": cached,
    })
    return WorkloadSample(frame, bool(traffic.closed_loop), bool(traffic.sessions))


def _spearman(x: pd.Series, y: pd.Series) -> float:
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(x.rank(), y.rank())[0, 1])


def arrival_stats(t: np.ndarray) -> dict[str, float]:
    """Rate, inter-arrival CV and per-minute dispersion of sorted arrival times."""
    t = t[np.isfinite(t)]
    if len(t) < 3:
        return {}
    g = np.diff(t)
    span = float(t[-1] - t[0])
    out = {"requests": float(len(t)), "span_s": span,
           "rate": (len(t) - 1) / span if span > 0 else float("inf"),
           "cv": float(g.std() / g.mean()) if g.mean() > 0 else float("nan")}
    minutes = int(t[-1] // 60)
    if minutes >= 2:
        c = np.bincount((t // 60).astype(np.int64))[:minutes]
        out["dispersion_60s"] = float(c.var() / c.mean()) if c.mean() > 0 else float("nan")
    return out


def length_stats(x: pd.Series) -> dict[str, float]:
    a = x.to_numpy(dtype=float)
    q = np.percentile(a, [50, 90, 99])
    return {"mean": float(a.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
            "max": float(a.max())}


def statistics(cfg: WorkloadConfig, sample: WorkloadSample) -> dict[str, Any]:
    """Everything ``describe`` prints, as a plain dict."""
    df = sample.frame
    rate, cv = (None, None) if cfg.tenants else expected_rate_cv(cfg.arrival)
    out: dict[str, Any] = {
        "name": cfg.name or cfg.spec or "(inline)",
        "description": cfg.description,
        "arrival": cfg.arrival.kind if not cfg.tenants or any(t.arrival is None
                                                              for t in cfg.tenants) else "per tenant",
        "target": {"rate": rate, "cv": cv},
        "requests": len(df),
        "arrivals": {} if sample.closed_loop and not len(df.dropna(subset=["time_s"]))
        else arrival_stats(df["time_s"].to_numpy(dtype=float)),
        "input": length_stats(df["prompt_len"]),
        "output": length_stats(df["output_len"]),
        "spearman": _spearman(df["prompt_len"], df["output_len"]),
        "ideal_prefix_hit_rate": float(df["cached_ideal"].sum() / df["prompt_len"].sum()),
        "closed_loop": sample.closed_loop or isinstance(cfg.arrival, ClosedLoopArrivals),
    }
    if sample.sessions:
        sess = df.dropna(subset=["session_id"])
        out["sessions"] = {"sessions": int(sess["session_id"].nunique()),
                           "turns_mean": float(len(sess) / max(1, sess["session_id"].nunique()))}
    tenants = {}
    span = out["arrivals"].get("span_s") if out["arrivals"] else None
    for name, g in df.groupby("tenant", sort=True):
        tenants[str(name)] = {
            "requests": len(g), "share": len(g) / len(df),
            "rate": len(g) / span if span else float("nan"),
            "input_mean": float(g["prompt_len"].mean()), "output_mean": float(g["output_len"].mean()),
            "priority": int(g["priority"].iloc[0]), "slo_class": str(g["slo_class"].iloc[0]),
        }
    out["tenants"] = tenants
    return out


def plot(sample: WorkloadSample, title: str, path: str) -> None:
    """Arrivals per minute (per tenant) and the input/output length histograms, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = sample.frame
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    timed = df.dropna(subset=["time_s"])
    if len(timed):
        minutes = np.arange(int(timed["time_s"].max() // 60) + 2)
        for name, g in timed.groupby("tenant", sort=True):
            counts = np.bincount((g["time_s"] // 60).astype(np.int64), minlength=len(minutes))
            ax.step(minutes, counts[: len(minutes)], where="post", label=str(name))
        if timed["tenant"].nunique() > 1:
            total = np.bincount((timed["time_s"] // 60).astype(np.int64), minlength=len(minutes))
            ax.step(minutes, total[: len(minutes)], where="post", color="k", label="all")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "closed loop: arrivals depend on the server", ha="center",
                transform=ax.transAxes)
    ax.set(xlabel="minute", ylabel="requests per minute", title="arrivals per minute")
    for ax, col, label in ((axes[1], "prompt_len", "input (prompt) tokens"),
                           (axes[2], "output_len", "output tokens")):
        x = df[col].to_numpy(dtype=float)
        bins = np.geomspace(max(1.0, x.min()), max(2.0, x.max()), 50)
        ax.hist(x, bins=bins)
        ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="requests", title=f"{label}: mean {x.mean():,.0f}, "
                                                      f"p50 {np.median(x):,.0f}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

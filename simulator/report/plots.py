"""Plots for reports and notebooks: a DataFrame in, a matplotlib ``Figure`` out.

Every function builds a ``matplotlib.figure.Figure`` on an Agg canvas directly — no pyplot state,
no global backend switch — so they work headless, in worker processes and in notebooks alike (a
notebook displays the returned figure); :func:`to_png_base64` turns one into the text of a
self-contained ``<img>``. Inputs are the frames a run, a sweep or a plan produces
(``Results.requests``, :func:`simulator.sweep.load_results`, :func:`simulator.cost.cost_timeseries`,
the planner's candidates table).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _fig(w: float = 7.5, h: float = 3.2, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def to_png_base64(fig: Figure, dpi: int = 100) -> str:
    """The figure as base64-encoded PNG (for ``<img src="data:image/png;base64,…">``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def latency_cdf(requests: pd.DataFrame, targets_ms: dict[str, float] | None = None) -> Figure:
    """Empirical CDFs of TTFT, TPOT and E2E (ms) over completed requests; SLO targets as lines
    (``targets_ms`` keyed like ``ttft_p90_ms``)."""
    fig, axes = _fig(10, 3.0, 3)
    done = requests[requests["outcome"].astype(str) == "completed"] if len(requests) else requests
    for ax, (col, label) in zip(axes, (("ttft_s", "TTFT (ms)"), ("tpot_s", "TPOT (ms)"),
                                       ("e2e_s", "E2E (ms)")), strict=True):
        v = np.sort(done[col].dropna().to_numpy(float) * 1000.0) if col in done else np.array([])
        if v.size:
            ax.plot(v, np.arange(1, v.size + 1) / v.size, color=COLORS[0])
            if v.min() > 0 and v.max() / v.min() > 50:
                ax.set_xscale("log")
        metric = col.split("_")[0]
        for name, ms in (targets_ms or {}).items():
            if name.startswith(metric + "_"):
                pct = int(name.split("_p")[1].split("_")[0])
                ax.axvline(ms, color=COLORS[1], ls="--", lw=1)
                ax.axhline(pct / 100.0, color=COLORS[1], ls=":", lw=0.8)
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.01)
    axes[0].set_ylabel("fraction of requests")
    fig.suptitle("latency CDFs (completed requests; dashed: SLO targets)", fontsize=10)
    return fig


def latency_vs_load(df: pd.DataFrame, x: str, series: str | None = None,
                    x_label: str | None = None) -> Figure:
    """TTFT p50/p90 and TPOT p90 (ms) against ``x`` (e.g. ``param.workload.arrival.rate``), one
    line per value of ``series``. ``df``: a sweep's results (one row per run)."""
    fig, axes = _fig(10, 3.2, 2)
    ok = df[df.get("status", "ok") == "ok"] if "status" in df else df
    groups: list[tuple[Any, Any]] = (
        [(k, g) for k, g in ok.groupby(series, sort=True)] if series and series in ok
        else [("", ok)])
    for i, (name, g) in enumerate(groups):
        agg = g.groupby(x, sort=True)[["ttft_ms.p50", "ttft_ms.p90", "tpot_ms.p90"]].mean()
        c = COLORS[i % len(COLORS)]
        lab = f"{series.removeprefix('param.')}={name}" if series else ""
        axes[0].plot(agg.index, agg["ttft_ms.p90"], "o-", color=c, label=f"p90 {lab}".strip())
        axes[0].plot(agg.index, agg["ttft_ms.p50"], "o--", color=c, alpha=0.6,
                     label=f"p50 {lab}".strip())
        axes[1].plot(agg.index, agg["tpot_ms.p90"], "o-", color=c, label=f"p90 {lab}".strip())
    axes[0].set_ylabel("TTFT (ms)")
    axes[1].set_ylabel("TPOT (ms)")
    for ax in axes:
        ax.set_xlabel(x_label or x.removeprefix("param."))
        ax.legend(fontsize=7)
    ttft = ok["ttft_ms.p90"].dropna() if "ttft_ms.p90" in ok else pd.Series(dtype=float)
    if len(ttft) and ttft.min() > 0 and ttft.max() / ttft.min() > 50:
        axes[0].set_yscale("log")
    return fig


def cost_over_time(ts: pd.DataFrame) -> Figure:
    """GPUs held and spend rate ($/h) over time, cumulative spend on the right axis.
    ``ts``: :func:`simulator.cost.cost_timeseries`."""
    fig, axes = _fig(10, 3.0, 2)
    axes[0].step(ts["time_s"], ts["gpus"], where="post", color=COLORS[0])
    axes[0].set_ylabel("GPUs held")
    axes[0].set_ylim(bottom=0)
    axes[1].step(ts["time_s"], ts["usd_per_hour"], where="post", color=COLORS[2], label="$/h")
    axes[1].set_ylabel("$ per hour")
    axes[1].set_ylim(bottom=0)
    right = axes[1].twinx()
    right.plot(ts["time_s"], ts["cumulative_usd"], color=COLORS[3], label="cumulative $")
    right.set_ylabel("cumulative $")
    for ax in axes:
        ax.set_xlabel("simulated time (s)")
    return fig


def cost_breakdown(df: pd.DataFrame) -> Figure:
    """Horizontal bars of dollars per item. ``df``: columns ``item``, ``usd``."""
    fig, axes = _fig(7.5, 0.6 + 0.45 * max(len(df), 1))
    ax = axes[0]
    ax.barh(df["item"].astype(str), df["usd"].astype(float), color=COLORS[: len(df)] or COLORS[0])
    ax.set_xlabel("$ over the simulated time")
    ax.invert_yaxis()
    return fig


def slo_attainment(df: pd.DataFrame) -> Figure:
    """Attainment per (tenant, target) against the required fraction.
    ``df``: columns ``tenant``, ``target``, ``attainment``, ``required``."""
    fig, axes = _fig(7.5, 0.8 + 0.4 * max(len(df), 1))
    ax = axes[0]
    labels = [f"{t} · {n}" for t, n in zip(df["tenant"], df["target"], strict=True)]
    att = df["attainment"].astype(float).fillna(0.0).to_numpy()
    req = df["required"].astype(float).to_numpy()
    colors = [COLORS[2] if a >= r - 1e-12 else COLORS[1] for a, r in zip(att, req, strict=True)]
    y = np.arange(len(df))
    ax.barh(y, att, color=colors)
    ax.scatter(req, y, marker="|", s=300, color="black", zorder=3)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("fraction of requests within the target (black tick: required; green: met)")
    ax.invert_yaxis()
    return fig


MODE_MARKERS = {"aggregated": "o", "xPyD": "s"}
"""Marker of a plan candidate by mode: circles aggregated, squares disaggregated (xPyD)."""


def pareto_figure(df: pd.DataFrame, metric: str = "ttft_ms.p90") -> Figure:
    """Spend rate vs ``metric`` for every simulated plan candidate: colour by GPU, marker by mode
    (circle: aggregated, square: disaggregated xPyD); filled markers meet the SLO, hollow ones miss
    it; the solid line joins the Pareto frontier of the candidates meeting the SLO, the dotted grey
    one that of the candidates missing it; the star is the cheapest configuration meeting it."""
    from matplotlib.lines import Line2D

    fig, axes = _fig(7.5, 4.0)
    ax = axes[0]
    sim = df[df["status"] == "simulated"] if len(df) else df
    if len(sim) and metric in sim:
        mode = (sim["mode"].astype(str) if "mode" in sim
                else pd.Series("aggregated", index=sim.index))
        kind = mode.where(mode == "aggregated", "xPyD")
        handles: list[Any] = []
        for i, (gpu, g) in enumerate(sim.groupby("gpu", sort=True)):
            c = COLORS[i % len(COLORS)]
            met = g["met"].fillna(False).astype(bool)
            for k, mk in MODE_MARKERS.items():
                sel = kind.loc[g.index] == k
                ax.scatter(g.loc[met & sel, "usd_per_hour"], g.loc[met & sel, metric], color=c,
                           marker=mk)
                ax.scatter(g.loc[~met & sel, "usd_per_hour"], g.loc[~met & sel, metric],
                           facecolors="none", edgecolors=c, marker=mk)
            handles.append(Line2D([], [], ls="", marker="o", color=c, label=str(gpu)))
        for k, mk in MODE_MARKERS.items():
            if (kind == k).any():
                handles.append(Line2D([], [], ls="", marker=mk, color="gray",
                                      label="aggregated" if k == "aggregated"
                                      else "disaggregated (xPyD)"))
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="gray",
                              label="hollow: misses the SLO"))
        for col, style, label in (("pareto", "-", "frontier (meets the SLO)"),
                                  ("pareto_infeasible", ":", "frontier (misses the SLO)")):
            if col in sim:
                # NOTE: a bool in memory, the text "True" when read back from candidates.csv.
                front = sim[sim[col].astype(str) == "True"].sort_values("usd_per_hour")
                if len(front):
                    ax.plot(front["usd_per_hour"], front[metric], style,
                            color="black" if col == "pareto" else "gray", lw=1)
                    handles.append(Line2D([], [], ls=style,
                                          color="black" if col == "pareto" else "gray",
                                          label=label))
        ok = sim[sim["met"].fillna(False).astype(bool)]
        if len(ok):
            b = ok.sort_values(["usd_per_hour", metric]).iloc[0]
            # Behind the candidate's own marker, so its mode stays visible.
            ax.scatter([b["usd_per_hour"]], [b[metric]], marker="*", s=500, color="gold",
                       edgecolors="black", zorder=0.5)
            handles.append(Line2D([], [], ls="", marker="*", markersize=12, color="gold",
                                  markeredgecolor="black", label="cheapest meeting SLO"))
        v = sim[metric].dropna()
        if len(v) and v.min() > 0 and v.max() / v.min() > 10:
            ax.set_yscale("log")
        ax.legend(handles=handles, fontsize=7)
    ax.set_xlabel("$ per hour")
    ax.set_ylabel(metric)
    ax.set_title("cost vs latency", fontsize=10)
    return fig


def plot_fleet_timeseries(df: pd.DataFrame, pool: str | None = None) -> Figure:
    """The autoscaled fleet over time (``Results.extra["fleet_timeseries"]``): replicas desired,
    ready, provisioning and asleep (the staircase of a cold-start cascade), the queue and
    timed-out attempts, TTFT p90 per interval and the spend rate ($/h). ``pool``: one pool (default:
    all autoscaled pools summed; TTFT is their worst)."""
    fig = Figure(figsize=(9.0, 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(3, 1, i + 1) for i in range(3)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    d = df if pool is None else df[df["pool"] == pool]
    if not len(d):
        axes[0].set_title("no fleet time series (the scenario has no autoscaling)", fontsize=10)
        return fig
    agg = {c: "sum" for c in ("desired", "provisioning", "waking", "sleeping", "ready",
                              "draining", "held", "queue", "timed_out", "usd_per_hour")
           if c in d}
    agg["ttft_p90_s"] = "max"
    g = d.groupby("time_s", sort=True).agg(agg).reset_index()
    t = g["time_s"].to_numpy(float)
    ax = axes[0]
    ax.step(t, g["desired"], where="post", color="black", lw=1.5, label="desired")
    ax.step(t, g["ready"], where="post", color=COLORS[2], lw=2, label="ready")
    ax.step(t, g["provisioning"] + g["waking"], where="post", color=COLORS[3],
            label="provisioning (cold start / waking)")
    if g["sleeping"].any():
        ax.step(t, g["sleeping"], where="post", color=COLORS[4], ls="--", label="asleep (warm pool)")
    ax.step(t, g["held"], where="post", color=COLORS[1], ls=":", label="billed")
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"fleet{'' if pool is None else ' — ' + pool}", fontsize=10)
    ax = axes[1]
    ax.plot(t, g["queue"], color=COLORS[0], label="waiting (engines + router)")
    ax.set_ylabel("requests waiting")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.bar(t, g["timed_out"], width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 1.0,
              color=COLORS[1], alpha=0.35, label="timed-out attempts / interval")
    right.set_ylabel("timed out / interval")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax = axes[2]
    ax.plot(t, g["ttft_p90_s"], color=COLORS[5], marker=".", label="TTFT p90 (s)")
    ttft = g["ttft_p90_s"].dropna()
    if len(ttft) and ttft.min() > 0 and ttft.max() / ttft.min() > 20:
        ax.set_yscale("log")
    ax.set_ylabel("TTFT p90 (s)")
    ax.set_xlabel("simulated time (s)")
    right = ax.twinx()
    right.step(t, g["usd_per_hour"], where="post", color=COLORS[2], label="$/h")
    right.set_ylabel("$ per hour")
    right.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    return fig

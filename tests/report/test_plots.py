"""Every plot takes a DataFrame and returns a Figure that renders to PNG, headless."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from simulator.cost import cost_timeseries, static_replicas
from simulator.plan_spec import CostConfig
from simulator.report import plots


def _png_ok(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    assert base64.b64decode(plots.to_png_base64(fig))[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_plots_render():
    rng = np.random.default_rng(0)
    req = pd.DataFrame({"outcome": ["completed"] * 50 + ["rejected"],
                        "ttft_s": np.r_[rng.exponential(0.1, 50), np.nan],
                        "tpot_s": np.r_[rng.normal(0.02, 0.002, 50), np.nan],
                        "e2e_s": np.r_[rng.exponential(3, 50), np.nan]})
    _png_ok(plots.latency_cdf(req, {"ttft_p90_ms": 200.0, "tpot_p90_ms": 25.0}))
    sweep = pd.DataFrame({"status": "ok", "param.workload.arrival.rate": [5, 10, 20] * 2,
                          "param.fleet.gpu": ["H100-SXM"] * 3 + ["H200-SXM"] * 3,
                          "ttft_ms.p50": [10, 20, 90, 9, 15, 40.0],
                          "ttft_ms.p90": [20, 40, 300, 18, 30, 80.0],
                          "tpot_ms.p90": [10, 12, 20, 9, 10, 14.0]})
    _png_ok(plots.latency_vs_load(sweep, "param.workload.arrival.rate", "param.fleet.gpu"))
    ts = cost_timeseries(static_replicas(2, "H100-SXM", 1, 60.0), CostConfig(), 60.0)
    _png_ok(plots.cost_over_time(ts))
    _png_ok(plots.cost_breakdown(pd.DataFrame({"item": ["busy", "idle"], "usd": [3.0, 1.0]})))
    _png_ok(plots.slo_attainment(pd.DataFrame({"tenant": ["a", "b"], "target": ["ttft_p90_ms"] * 2,
                                               "attainment": [0.95, 0.5], "required": [0.9, 0.9]})))
    cands = pd.DataFrame({"gpu": ["H100-SXM", "MI300X", "MI300X"], "status": "simulated",
                          "usd_per_hour": [4.0, 2.6, 5.2], "ttft_ms.p90": [50.0, 400.0, 60.0],
                          "met": [True, False, True], "pareto": [True, True, False]})
    _png_ok(plots.pareto_figure(cands, "ttft_ms.p90"))
    _png_ok(plots.latency_cdf(req.iloc[:0]))  # empty input still draws


def test_pareto_figure_tells_xpyd_from_aggregated_with_markers_and_a_legend():
    # Before (#22): one marker for every mode and no legend entry saying which is which.
    cands = pd.DataFrame({"gpu": "H100-SXM", "status": "simulated",
                          "mode": ["aggregated", "aggregated", "1P1D", "2P2D"],
                          "usd_per_hour": [4.0, 8.0, 8.0, 16.0],
                          "tpot_ms.p90": [30.0, 13.0, 11.0, 9.0],
                          "met": [False, False, True, True],
                          "pareto": [False, False, True, True],
                          "pareto_infeasible": [True, True, False, False]})
    fig = plots.pareto_figure(cands, "tpot_ms.p90")
    _png_ok(fig)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"aggregated", "disaggregated (xPyD)", "frontier (meets the SLO)",
            "frontier (misses the SLO)"} <= set(labels)
    # Each point is drawn with its mode's marker: squares for the two xPyD points.
    drawn: dict[tuple[float, float], set[str]] = {}
    for coll in ax.collections:
        offs = coll.get_offsets()
        path = coll.get_paths()[0] if coll.get_paths() else None
        for x, y in np.asarray(offs):
            n = len(path.vertices) if path is not None else 0
            drawn.setdefault((float(x), float(y)), set()).add("square" if n == 5 else f"{n}")
    assert "square" in drawn[(8.0, 11.0)] and "square" in drawn[(16.0, 9.0)]
    assert "square" not in drawn[(4.0, 30.0)]

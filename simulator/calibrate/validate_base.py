"""What every validation suite shares: the measured setup to simulate (:class:`Case`), the
point left out (:class:`Skipped`), measured vs predicted (:class:`PointResult`), the whole run
(:class:`Report`), the error arithmetic and the regression gate's JSON block.

Reads no measured data itself: the suite modules (``validate_silicon``, ``validate_dstack``,
``validate_rocm``, ``validate_load``) turn the measured rows into cases, and
:mod:`simulator.calibrate.validate` runs them (its docstring says how a point is compared).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from simulator.calibrate import validate_load as vl
from simulator.config import FixedLength, Scenario

SUITES: tuple[str, ...] = ("silicon-dense", "silicon-moe", "dstack-405b", "rocm-mi300x",
                           "rocm-throughput", "mlperf")
"""Validation suites, in report order."""

GATE_TOLERANCE_POINTS = 2.0
"""The regression gate fails when a fast-subset median |error| rises by more than this (points)."""

TARGETS: dict[str, float] = {
    "ttft_mean": 20.0,
    "ttft_p50": 20.0,
    "ttft_p90": 20.0,
    "ttft_p99": 20.0,
    "tpot_mean": 10.0,
    "itl_mean": 10.0,
    "throughput": 10.0,
    "latency": 10.0,
}
"""Median |error| % each metric should stay under (issue 3; TTFT percentiles: issue 21). ITL
percentiles have no target.
``latency`` (ROCm whole-batch time, ~2,048 decode steps) is held to the TPOT/throughput target."""

METRIC_LABELS: dict[str, str] = {
    "ttft_mean": "TTFT mean", "ttft_p50": "TTFT p50", "ttft_p90": "TTFT p90",
    "ttft_p99": "TTFT p99", "tpot_mean": "TPOT mean", "itl_mean": "ITL mean",
    "itl_p50": "ITL p50", "itl_p90": "ITL p90", "itl_p99": "ITL p99",
    "throughput": "output tok/s", "latency": "batch latency",
    "tpot_p99": "TPOT p99",
}
METRIC_UNITS: dict[str, str] = {
    "ttft_mean": "ms", "ttft_p50": "ms", "ttft_p90": "ms", "ttft_p99": "ms", "tpot_mean": "ms",
    "itl_mean": "ms", "itl_p50": "ms", "itl_p90": "ms", "itl_p99": "ms", "throughput": "tok/s",
    "latency": "s", "tpot_p99": "ms",
}

_QUIET_METRICS: dict[str, Any] = dict(record_steps=False, record_itl=False, sample_interval_s=60.0)
"""Validation runs keep no per-step rows nor per-token gaps and sample gauges rarely (only the
requests are read; a request's TTFT, TPOT and largest gap are the same without the gaps). A suite
that compares ITL percentiles (dstack) keeps the gaps."""


@dataclass(frozen=True)
class Case:
    """One measured setup to simulate."""

    suite: str
    gpu: str
    point_id: str
    label: str
    kind: Literal["closed_loop", "replay", "offline", "throughput"]
    scenario: Scenario
    measured: dict[str, float]
    fast: bool = False
    flags: tuple[str, ...] = ()
    excluded: str = ""
    """Why the point is left out of the summary statistics ("" = included)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Columns shown in the per-point table (tp, concurrency, isl, osl, version …)."""
    replay: tuple[tuple[int, int], ...] = ()
    """replay cases: (input, output) tokens per request, in order."""
    compare_ids: tuple[int, ...] = ()
    """replay cases: request ids whose statistics are compared (the measured ``ok`` rows)."""
    duration_s: float = 0.0
    """replay cases: the measured benchmark duration (for throughput)."""

    @property
    def cost(self) -> float:
        """Rough simulation cost (engine steps) to schedule the longest cases first."""
        wl = self.scenario.workload
        if self.kind == "replay":
            return 20_000.0
        if self.kind == "throughput":
            return 200_000.0
        osl = wl.output_len.value if isinstance(wl.output_len, FixedLength) else 1000
        isl = wl.input_len.value if isinstance(wl.input_len, FixedLength) else 1000
        n = wl.num_requests or 1
        conc = self.info.get("concurrency", n)
        return float(n) / max(conc, 1) * (osl + isl / 2048) * (1.0 + conc / 256)


@dataclass(frozen=True)
class Skipped:
    """A measured point not simulated, and why."""

    suite: str
    gpu: str
    point_id: str
    reason: str


@dataclass
class PointResult:
    """Measured vs predicted for one case."""

    suite: str
    gpu: str
    point_id: str
    label: str
    fast: bool
    flags: list[str]
    excluded: str
    info: dict[str, Any]
    measured: dict[str, float]
    predicted: dict[str, float]
    error_pct: dict[str, float]
    calibration: str
    wall_s: float


@dataclass
class Report:
    """Everything a validation run produced."""

    suites: list[str]
    fast: bool
    points: list[PointResult]
    skipped: list[Skipped]
    summary: pd.DataFrame
    fast_summary: pd.DataFrame
    notes: dict[str, list[str]]
    wall_s: float
    data_sources: dict[str, str]
    calibrations: list[str]
    ttft_bracket: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Closed-loop TTFT against its [ramped, lock-step] bracket (:func:`summarize_ttft_bracket`)."""
    regime_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    """:func:`summarize_errors` per load regime (running sequences per GPU)."""

    def to_json(self) -> dict[str, Any]:
        """Everything as plain JSON types (NaN → null)."""
        return _clean({
            "suites": self.suites, "fast": self.fast, "wall_s": round(self.wall_s, 1),
            "targets": TARGETS, "data_sources": self.data_sources,
            "calibrations": self.calibrations,
            "summary": _records(self.summary),
            "ttft_bracket": _records(self.ttft_bracket),
            "by_regime": _records(self.regime_summary),
            "gate": gate_block(self.fast_summary),
            "notes": self.notes,
            "skipped": [asdict(s) for s in self.skipped],
            "points": [asdict(p) for p in self.points],
        })


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in df.to_dict(orient="records"):
        out.append({str(k): (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in row.items()})
    return out


def pct_error(predicted: float, measured: float) -> float:
    """Signed relative error in percent: (predicted − measured) / measured × 100 (NaN if undefined)."""
    if measured is None or predicted is None:
        return float("nan")
    if not (math.isfinite(measured) and math.isfinite(predicted)) or measured == 0:
        return float("nan")
    return (predicted - measured) / abs(measured) * 100.0


def point_regime(p: PointResult) -> str:
    """The load regime a point ran at (:func:`validate_load.load_regime` of its simulated running
    sequences per GPU)."""
    return vl.load_regime(float(p.predicted.get("running_per_gpu", float("nan"))))


def summarize_errors(points: Sequence[PointResult], by_regime: bool = False) -> pd.DataFrame:
    """Per suite, GPU (and with ``by_regime`` load regime) and metric: n, median and p90 of
    |error| %, median signed error (bias), target and status, over the points not excluded."""
    rows: list[dict[str, Any]] = []
    keyed: dict[tuple[str, str, str, str], list[float]] = {}
    for p in points:
        if p.excluded:
            continue
        regime = point_regime(p) if by_regime else ""
        for metric, err in p.error_pct.items():
            if math.isfinite(err):
                keyed.setdefault((p.suite, p.gpu, regime, metric), []).append(err)
    order = {s: i for i, s in enumerate(SUITES)}
    metric_order = {m: i for i, m in enumerate(METRIC_LABELS)}
    regime_order = {label: i for i, (label, _) in enumerate(vl.REGIMES)}
    for (suite, gpu, regime, metric), errs in sorted(
            keyed.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1],
                                           regime_order.get(kv[0][2], 99),
                                           metric_order.get(kv[0][3], 99))):
        a = np.abs(np.asarray(errs))
        med = float(np.median(a))
        target = TARGETS.get(metric)
        row: dict[str, Any] = {"suite": suite, "gpu": gpu}
        if by_regime:
            row["regime"] = regime or "?"
        rows.append(row | {
            "metric": metric, "n": len(errs),
            "median_abs_err": med, "p90_abs_err": float(np.percentile(a, 90)),
            "bias": float(np.median(errs)),
            "target": target,
            "status": "" if target is None else ("pass" if med <= target else "miss"),
        })
    cols = ["suite", "gpu", *(["regime"] if by_regime else []), "metric", "n", "median_abs_err",
            "p90_abs_err", "bias", "target", "status"]
    return pd.DataFrame(rows, columns=cols)


def gate_block(fast_summary: pd.DataFrame) -> dict[str, Any]:
    """The machine-readable block embedded in fidelity.md: fast-subset medians per suite/GPU/metric."""
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for r in fast_summary.itertuples(index=False):
        medians.setdefault(str(r.suite), {}).setdefault(str(r.gpu), {})[str(r.metric)] = round(
            float(r.median_abs_err), 2)  # type: ignore[arg-type]
    return {"subset": "fast", "tolerance_points": GATE_TOLERANCE_POINTS,
            "median_abs_err_pct": medians}


GATE_BEGIN = "<!-- fidelity-gate:begin -->"
GATE_END = "<!-- fidelity-gate:end -->"


def parse_gate_block(markdown: str) -> dict[str, Any]:
    """Read the gate JSON back from fidelity.md (between the begin/end markers)."""
    m = re.search(re.escape(GATE_BEGIN) + r"\s*```json\s*(.*?)```\s*" + re.escape(GATE_END),
                  markdown, re.S)
    if not m:
        raise ValueError("no fidelity-gate JSON block in the markdown")
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def gate_regressions(committed: dict[str, Any], current: dict[str, Any],
                     tolerance: float | None = None) -> list[str]:
    """Lines describing every suite/GPU/metric whose median |error| rose by more than the
    tolerance (or disappeared) between the committed and the current gate blocks."""
    tol = committed.get("tolerance_points", GATE_TOLERANCE_POINTS) if tolerance is None \
        else tolerance
    old = committed["median_abs_err_pct"]
    new = current["median_abs_err_pct"]
    out = []
    for suite, gpus in old.items():
        for gpu, metrics in gpus.items():
            for metric, before in metrics.items():
                after = new.get(suite, {}).get(gpu, {}).get(metric)
                if after is None:
                    out.append(f"{suite}/{gpu}/{metric}: no longer computed (was {before:.2f}%)")
                elif after > before + tol:
                    out.append(f"{suite}/{gpu}/{metric}: median |error| {after:.2f}% > "
                               f"committed {before:.2f}% + {tol:g} points")
    return out


def _mean(s: pd.Series) -> float:
    a = s.to_numpy(dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")

"""Whether a run stayed inside the regime its step-time calibration was measured in.

What this models: the question "is this number a measured prediction or an extrapolation?". A
calibration file records the step shapes its fit data covered (``provenance.regime``: running
sequences and tokens per step, context per sequence, tensor-parallel sizes; written by
:mod:`simulator.calibrate.fit`). A run's replicas are sampled every ``metrics.sample_interval_s``
(``num_requests_running``, the vLLM gauge); the share of busy samples with more running
sequences than the fit saw is reported, together with the engine settings that reach past it
(``max_num_batched_tokens`` above the largest measured step, ``max_model_len`` above the longest
measured context, a TP size the fit never saw). It leaves out the shape of each individual step
(tokens and context per step are judged from the engine's limits, not step by step), so it needs
no per-step recording and reads the same with ``metrics.record_steps`` on or off.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _span(v: Any) -> tuple[float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2:
        try:
            return float(v[0]), float(v[1])
        except (TypeError, ValueError):
            return None
    return None


def regime_summary(samples: pd.DataFrame, *, calibration: str, regime: dict[str, Any],
                   tp: int, max_num_batched_tokens: int, max_model_len: int) -> dict[str, Any]:
    """The ``regime`` block of summary.json for one deployment (see module docstring)."""
    out: dict[str, Any] = {"calibration": calibration, "fitted": dict(regime)}
    if not regime:
        out["note"] = f"{calibration} records no measured regime: treat every figure as unvalidated"
        out["outside"] = None
        return out
    outside: dict[str, Any] = {}
    notes: list[str] = []
    seqs = _span(regime.get("running_seqs"))
    if seqs is not None and not samples.empty and "num_requests_running" in samples:
        run = samples["num_requests_running"].to_numpy(dtype=float)
        busy = run[run > 0]
        share = float((busy > seqs[1]).mean()) if busy.size else 0.0
        outside["running_seqs_share"] = share
        outside["running_seqs_max"] = float(busy.max()) if busy.size else 0.0
        if share > 0:
            notes.append(f"{share:.0%} of busy time had > {seqs[1]:g} running sequences per "
                         f"replica")
    for key, flag, value, what in (
            ("tokens_per_step", "max_num_batched_tokens", max_num_batched_tokens,
             "the largest measured step"),
            ("context", "max_model_len", max_model_len, "the longest measured context")):
        span = _span(regime.get(key))
        if span is not None:
            outside[key] = value > span[1]
            if outside[key]:
                notes.append(f"{flag} {value} > {what} ({span[1]:g} tokens)")
    tps = regime.get("tp")
    if isinstance(tps, list) and tps:
        outside["tp"] = tp not in [int(t) for t in tps]
        if outside["tp"]:
            notes.append(f"tp={tp} was not measured (fitted on tp {', '.join(map(str, tps))})")
    out["outside"] = outside
    cal = calibration.split(" (")[0]
    out["note"] = ("; ".join(notes) + f" ({cal} was fitted on {describe(regime)})") if notes \
        else f"inside what {cal} was fitted on ({describe(regime)})"
    return out


def describe(regime: dict[str, Any]) -> str:
    """One phrase naming a fitted regime, e.g. "1–128 running sequences, ≤ 8192 tokens per
    step, context ≤ 4224, tp 8"."""
    parts = []
    seqs = _span(regime.get("running_seqs"))
    if seqs is not None:
        parts.append(f"{seqs[0]:g}–{seqs[1]:g} running sequences")
    toks = _span(regime.get("tokens_per_step"))
    if toks is not None:
        parts.append(f"≤ {toks[1]:g} tokens per step")
    ctx = _span(regime.get("context"))
    if ctx is not None:
        parts.append(f"context ≤ {ctx[1]:g}")
    tps = regime.get("tp")
    if isinstance(tps, list) and tps:
        parts.append(f"tp {', '.join(map(str, tps))}")
    return ", ".join(parts) or "an unstated regime"

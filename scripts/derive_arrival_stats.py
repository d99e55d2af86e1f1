#!/usr/bin/env python3
"""Derive the arrival-process fits shipped in ``workloads/arrivals/``.

Reads the real traces from the shared data directory (never copied into the repo) and writes one
small YAML per trace, with its source folder, repository and commit:

* ``trace`` — statistics of the recorded arrivals: requests, span, mean rate, inter-arrival mean,
  CV and quantiles, the share of zero gaps (ties), and the index of dispersion (variance / mean) of
  per-second, per-minute and per-5-minute counts;
* ``profile`` — the mean rate of every complete minute (a step profile; the trailing partial
  minute is left out), rounded to 4 decimals;
* ``fit`` — ``cv_on_profile_clock``: the CV of the gaps after the time change by the profile's
  cumulative rate Λ (what the ``fitted`` arrival kind feeds a Gamma renewal process, so the
  synthetic stream has the trace's minute-to-minute profile *and* its burstiness within minutes);
  ``stationary_cv``: the plain gap CV (for a stationary Gamma stand-in);
* ``check`` — the same statistics measured on 100,000 arrivals of the fitted process (seed 0), so
  a reader sees what the stand-in keeps and what it does not;
* ``prefix`` (traces with hash_ids) — block size, share of requests whose first block is shared
  by at least 1 % of requests (a system prompt), and the prefix-cache hit rate an infinite cache
  would reach (share of prompt tokens in full 512-token blocks seen before, in trace order);
* ``sessions`` (traces with hash_ids) — conversations inferred from the hash chains: a request
  *continues* the latest earlier request with which it shares the longest hash prefix, if that is
  at least 2 blocks (block 0 is the common system prompt). Reported: the share of continuations,
  mean turns per conversation, the gap between a turn and its predecessor (think time + response
  time), the new prompt tokens a continuation adds (input − parent input − parent output; a
  lognormal fit to the positive values by log-moments, and the share ≤ 0, where the client
  dropped context) and the first turns' input length.

Timestamps rounded to a coarse grid (Mooncake: 3 s, so ~10 requests share each) are spread evenly
up to the next distinct timestamp before the gap statistics and the fit (``ties_spread: true``);
the raw tie share is still reported.

Usage::

    python scripts/derive_arrival_stats.py [--data-dir DIR] [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from derive_length_tables import detect_license, read_source  # noqa: E402

from simulator.workload.arrivals import PiecewiseLinearRate, arrival_times  # noqa: E402
from simulator.workload.spec import FittedArrivals  # noqa: E402
from simulator.workload.traces import BUILTIN_TRACES, load_trace_file, spread_ties  # noqa: E402

DERIVED_BY = "scripts/derive_arrival_stats.py"
INTERVAL_S = 60
CHECK_N = 100_000
TIE_SHARE = 0.5
"""Spread ties when more than this share of the gaps are exactly zero (a rounded clock)."""

DESCRIPTIONS = {
    "azure-conv-2023": "Azure LLM inference trace 2023, conversation service: arrivals of about "
                       "1 h of production requests",
    "azure-code-2023": "Azure LLM inference trace 2023, code-completion service: arrivals of "
                       "about 1 h of production requests (very bursty)",
    "mooncake-conversation": "Mooncake (Kimi) FAST'25 conversation trace: arrivals of about 1 h "
                             "of sampled production requests, timestamps rounded to 3 s",
}


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def dispersion(t: np.ndarray, window: float) -> float:
    counts = np.bincount((t // window).astype(np.int64))
    full = counts[: int(t[-1] // window)]  # complete windows only
    return _r(full.var() / full.mean(), 3) if len(full) > 1 and full.mean() > 0 else 0.0


def gap_stats(t: np.ndarray) -> dict[str, Any]:
    g = np.diff(t)
    q = np.quantile(g, [0.5, 0.9, 0.99])
    return {
        "rate": _r(len(t) / (t[-1] - t[0])),
        "gap_mean_s": _r(g.mean(), 6),
        "gap_cv": _r(g.std() / g.mean()),
        "gap_p50_s": _r(q[0], 6),
        "gap_p90_s": _r(q[1], 6),
        "gap_p99_s": _r(q[2], 6),
        "dispersion_1s": dispersion(t, 1.0),
        "dispersion_60s": dispersion(t, 60.0),
        "dispersion_300s": dispersion(t, 300.0),
    }


def prefix_stats(hash_ids: list[tuple[int, ...]], inputs: np.ndarray, block: int) -> dict[str, Any]:
    counts: dict[int, int] = {}
    for ids in hash_ids:
        for h in set(ids):
            counts[h] = counts.get(h, 0) + 1
    common = {h for h, c in counts.items() if c >= 0.01 * len(hash_ids)}
    seen: set[int] = set()
    hit = 0
    for ids, n in zip(hash_ids, inputs.tolist(), strict=True):
        full = min(len(ids), n // block)
        k = 0
        while k < full and ids[k] in seen:
            k += 1
        hit += k * block
        seen.update(ids)
    return {
        "hash_block_tokens": block,
        "requests_with_common_first_block": _r(np.mean([bool(ids) and ids[0] in common
                                                        for ids in hash_ids])),
        "ideal_prefix_hit_rate": _r(hit / int(inputs.sum())),
    }


def session_stats(times: np.ndarray, hash_ids: list[tuple[int, ...]], inputs: np.ndarray,
                  outputs: np.ndarray) -> dict[str, Any]:
    latest: dict[int, int] = {}
    parent = np.full(len(hash_ids), -1, dtype=np.int64)
    for i, ids in enumerate(hash_ids):
        for k in range(len(ids) - 1, 0, -1):  # longest shared prefix beyond block 0
            if ids[k] in latest:
                if k + 1 >= 2:
                    parent[i] = latest[ids[k]]
                break
        for h in ids:
            latest[h] = i
    cont = parent >= 0
    p = parent[cont]
    gaps = times[cont] - times[p]
    new = inputs[cont] - inputs[p] - outputs[p]
    pos = np.log(new[new > 0].astype(float))
    sigma2 = float(pos.var())
    return {
        "continuation_share": _r(cont.mean()),
        "turns_mean": _r(len(hash_ids) / int((~cont).sum())),
        "turn_gap_mean_s": _r(gaps.mean(), 2),
        "turn_gap_p50_s": _r(np.median(gaps), 2),
        "new_tokens_lognormal": {"mean": _r(np.exp(pos.mean() + sigma2 / 2), 1),
                                 "cv": _r(np.sqrt(np.expm1(sigma2)), 3)},
        "new_tokens_p50": _r(np.median(new), 1),
        "new_tokens_nonpositive_share": _r((new <= 0).mean()),
        "first_turn_input_mean": _r(inputs[~cont].mean(), 1),
        "first_turn_input_p50": _r(np.median(inputs[~cont]), 1),
    }


def build(name: str, data_dir: Path) -> dict[str, Any]:
    rel, fmt = BUILTIN_TRACES[name]
    path = data_dir / rel
    folder = path.parent
    repository, commit = read_source(folder)
    tr = load_trace_file(path, fmt)
    raw = tr.times
    zero_share = float(np.mean(np.diff(raw) == 0))
    spread = zero_share > TIE_SHARE
    t = spread_ties(raw) if spread else raw
    n_bins = int(t[-1] // INTERVAL_S)
    counts = np.bincount((t // INTERVAL_S).astype(np.int64))[:n_bins]
    rates = counts / INTERVAL_S
    knots = np.repeat(np.arange(n_bins + 1) * INTERVAL_S, 2)[1:-1].astype(float)
    prof = PiecewiseLinearRate(knots, np.repeat(rates, 2), periodic=False)
    inside = t[t < n_bins * INTERVAL_S]
    op = np.diff(prof.cumulative(inside))
    fit = {"cv_on_profile_clock": _r(op.std() / op.mean()),
           "stationary_cv": _r(np.diff(t).std() / np.diff(t).mean())}
    out: dict[str, Any] = {
        "name": name,
        "description": DESCRIPTIONS[name],
        "source": {"folder": str(Path(rel).parent), "file": Path(rel).name,
                   "repository": repository, "commit": commit, "license": detect_license(folder),
                   "rows": len(tr)},
        "derived_by": DERIVED_BY,
        "trace": {"requests": len(tr), "span_s": _r(raw[-1], 3),
                  "zero_gap_share": _r(zero_share), "ties_spread": spread, **gap_stats(t)},
        "profile": {"interval_s": INTERVAL_S, "minutes": n_bins,
                    "rates": [_r(x) for x in rates]},
        "fit": fit,
    }
    return out


def check(table: dict[str, Any]) -> dict[str, Any]:
    """Statistics of the fitted process itself (run through the simulator's own generator)."""
    from simulator.workload import arrivals
    from simulator.workload.shipped import load_shipped

    load_shipped.cache_clear()
    orig = arrivals.load_arrival_fit
    arrivals.load_arrival_fit = lambda name: table  # type: ignore[assignment]
    try:
        spec = FittedArrivals(name=table["name"])
        t = np.fromiter(arrival_times(spec, np.random.default_rng(0), CHECK_N, None), float)
    finally:
        arrivals.load_arrival_fit = orig
    s = gap_stats(t)
    return {k: s[k] for k in ("rate", "gap_cv", "dispersion_1s", "dispersion_60s")}


def write(names: list[str], data_dir: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        table = build(name, data_dir)
        table["check"] = check(table)
        if name.startswith("mooncake"):
            rel, fmt = BUILTIN_TRACES[name]
            tr = load_trace_file(data_dir / rel, fmt)
            assert tr.hash_ids is not None
            table["prefix"] = prefix_stats(tr.hash_ids, tr.input, 512)
            table["sessions"] = session_stats(tr.times, tr.hash_ids, tr.input, tr.output)
        dest = out_dir / f"{name}.yaml"
        dest.write_text(yaml.safe_dump(table, sort_keys=False, default_flow_style=None,
                                       width=100), encoding="utf-8")
        written.append(dest)
    return written


def default_data_dir() -> Path:
    env = os.environ.get("SERVESIM_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "workloads" / "arrivals")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BUILTIN_TRACES))
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        parser.error(f"data dir not found: {args.data_dir}")
    for p in write(args.only or sorted(BUILTIN_TRACES), args.data_dir, args.out):
        print(f"wrote {p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

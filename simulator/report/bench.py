"""A run's headline in ``vllm bench serve``'s own format, so a simulation and a real benchmark can be
diffed by the same tools.

What this reproduces: the result block ``vllm bench serve`` prints and the JSON its
``--save-result`` writes, key for key, as in vLLM's ``vllm/benchmarks/serve.py``
(vllm-project/vllm main at commit 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1, the ``vllm bench
serve`` CLI; the peak-throughput lines and keys date from vLLM PR #23867, August 2025, and are in
the 0.13 release): ``calculate_metrics`` (TTFT, TPOT = (latency − TTFT) /
(output tokens − 1) for outputs longer than one token, every inter-token gap, E2EL; mean, median,
population std and the selected percentiles; ``max_output_tokens_per_s`` from one-second buckets of
token times, ``max_concurrent_requests`` from a sweep over [start, end)), ``benchmark`` (the
printed block and the result dict, without ``--save-detailed``'s per-request lists) and ``main``
(date, backend, model, traffic settings).

A simulated "benchmark" is the run's measurement window: requests arriving after
``metrics.warmup_s`` (or after a client's warm-up phase: the summary's ``window_s``); successful =
completed, failed = rejected, timed out or failed (requests
still in flight when the run stopped are neither: a real benchmark would have waited for them).
vLLM's default percentile metrics are ``ttft,tpot,itl``; E2EL is added here as
``--percentile-metrics ttft,tpot,itl,e2el`` would. The backend is written as ``servesim``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.metrics import names

#: vLLM's default ``--metric-percentiles``.
DEFAULT_PERCENTILES: tuple[float, ...] = (99.0,)

#: (key, name, header) of each latency metric, in the order vLLM prints them.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("ttft", "TTFT", "Time to First Token"),
    ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl", "ITL", "Inter-token Latency"),
    ("e2el", "E2EL", "End-to-end Latency"),
)


def _stats(values: np.ndarray, percentiles: tuple[float, ...]) -> dict[str, float]:
    """vLLM's ``np.mean(values or 0)`` etc.: an empty list gives zeros (values in seconds)."""
    a = values if values.size else np.zeros(1)
    out = {"mean": float(np.mean(a)) * 1000, "median": float(np.median(a)) * 1000,
           "std": float(np.std(a)) * 1000}
    for p in percentiles:
        out[_pword(p)] = float(np.percentile(a, p)) * 1000
    return out


def _pword(p: float) -> str:
    return "p" + (str(int(p)) if int(p) == p else str(p))


def _traffic(sc: Any) -> tuple[Any, float, int | None]:
    """(request_rate, burstiness, max_concurrency) as vLLM records them for this arrival process."""
    arr = sc.workload.arrival
    kind = getattr(arr, "kind", None)
    cap = sc.workload.max_concurrency
    if kind == "poisson":
        return float(arr.rate), 1.0, cap
    if kind == "gamma":
        # vLLM's Gamma shape is its burstiness; servesim's cv = 1/sqrt(shape).
        return float(arr.rate), 1.0 / float(arr.cv) ** 2, cap
    if kind == "closed_loop":
        return "inf", 1.0, int(arr.concurrency)
    return "inf", 1.0, None


def _token_times(done: pd.DataFrame, itl: pd.DataFrame) -> np.ndarray:
    """Every streamed token's time: first token, then the request's gaps cumulated. Without
    recorded gaps (``metrics.record_itl`` off) the tokens are spread evenly at the request's TPOT."""
    first = done.set_index("request_id")["first_token_s"]
    if len(itl):
        gaps = itl[itl["request_id"].isin(first.index)]
        later = gaps.groupby("request_id", sort=False)["itl_s"].cumsum().to_numpy() \
            + first.reindex(gaps["request_id"]).to_numpy()
        return np.concatenate([first.to_numpy(float), later])
    n = done["output_tokens"].to_numpy(int)
    tpot = np.nan_to_num(done["tpot_s"].to_numpy(float))
    k = np.concatenate([np.arange(m) for m in n]) if len(n) else np.zeros(0)
    return np.repeat(done["first_token_s"].to_numpy(float), n) + k * np.repeat(tpot, n)


def bench_result(res: Any, percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
                 ) -> dict[str, Any]:
    """The dict ``vllm bench serve --save-result`` writes, computed from a run's frames."""
    sc = res.scenario
    summary = res.summary
    req = res.requests
    measured = req[req["arrival_s"] >= float(summary["window_s"]["start"])]
    outcome = measured["outcome"].astype(str)
    done = measured[outcome == names.COMPLETED]
    failed = int((~outcome.isin([names.COMPLETED, names.IN_FLIGHT])).sum())
    w = summary["window_s"]
    duration = max(float(w["end"]) - float(w["start"]), 1e-9)
    total_in = int(done["input_tokens"].sum())
    total_out = int(done["output_tokens"].sum())
    ttft = done["ttft_s"].to_numpy(float)
    out_len = done["output_tokens"].to_numpy(int)
    e2e = done["e2e_s"].to_numpy(float)
    tpot = ((e2e - ttft) / np.maximum(out_len - 1, 1))[out_len > 1]
    itl = res.itl
    gaps = itl.loc[itl["request_id"].isin(done["request_id"]), "itl_s"].to_numpy(float) \
        if len(itl) else np.zeros(0)

    peak_tok = 0.0
    peak_conc = 0
    if len(done):
        start = done["arrival_s"].to_numpy(float)
        end = start + e2e
        t0 = float(start.min())
        nbins = int(np.ceil(float(end.max()) - t0)) + 1
        b = (_token_times(done, itl) - t0).astype(int)
        b = b[(b >= 0) & (b < nbins)]
        peak_tok = float(np.bincount(b, minlength=nbins).max()) if b.size else 0.0
        # sweep over half-open [start, end): a departure before an arrival at the same instant
        ev = np.concatenate([np.stack([end, -np.ones_like(end)], 1),
                             np.stack([start, np.ones_like(start)], 1)])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
        peak_conc = int(np.cumsum(ev[:, 1]).max())

    rate, burstiness, max_conc = _traffic(sc)
    slo = summary.get("slo")
    goodput = float(slo["goodput_rps"]) if isinstance(slo, dict) else None
    model = sc.model.name
    out: dict[str, Any] = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": "servesim", "backend": "servesim", "label": None,
        "model_id": model, "tokenizer_id": model, "num_prompts": len(measured),
        "request_rate": rate, "burstiness": burstiness, "max_concurrency": max_conc,
        "duration": duration, "completed": len(done), "failed": failed,
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(done) / duration, "request_goodput": goodput,
        "output_throughput": total_out / duration,
        "total_token_throughput": (total_in + total_out) / duration,
        "latencies": e2e.tolist(), "queue_times": [0.0] * len(done),
        "max_output_tokens_per_s": peak_tok, "max_concurrent_requests": peak_conc, "rtfx": 0.0,
    }
    for key, values in (("ttft", ttft), ("tpot", tpot), ("itl", gaps), ("e2el", e2e)):
        st = _stats(values[~np.isnan(values)], percentiles)
        out[f"mean_{key}_ms"] = st["mean"]
        out[f"median_{key}_ms"] = st["median"]
        out[f"std_{key}_ms"] = st["std"]
        for p in percentiles:
            out[f"{_pword(p)}_{key}_ms"] = st[_pword(p)]
    return out


def format_block(r: dict[str, Any], percentiles: tuple[float, ...] = DEFAULT_PERCENTILES) -> str:
    """The block ``vllm bench serve`` prints, line for line, from a :func:`bench_result` dict."""
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

    def row(label: str, value: Any, fmt: str = "{:<10}") -> None:
        lines.append(f"{label:<40} " + fmt.format(value))

    row("Successful requests:", r["completed"])
    row("Failed requests:", r["failed"])
    if r.get("max_concurrency") is not None:
        row("Maximum request concurrency:", r["max_concurrency"])
    if r.get("request_rate") != "inf":
        row("Request rate configured (RPS):", r["request_rate"], "{:<10.2f}")
    row("Benchmark duration (s):", r["duration"], "{:<10.2f}")
    row("Total input tokens:", r["total_input_tokens"])
    row("Total generated tokens:", r["total_output_tokens"])
    row("Request throughput (req/s):", r["request_throughput"], "{:<10.2f}")
    if r.get("request_goodput") is not None:
        row("Request goodput (req/s):", r["request_goodput"], "{:<10.2f}")
    row("Output token throughput (tok/s):", r["output_throughput"], "{:<10.2f}")
    row("Peak output token throughput (tok/s):", r["max_output_tokens_per_s"], "{:<10.2f}")
    row("Peak concurrent requests:", r["max_concurrent_requests"], "{:<10.2f}")
    row("Total token throughput (tok/s):", r["total_token_throughput"], "{:<10.2f}")
    for key, name, header in METRICS:
        lines.append("{s:{c}^{n}}".format(s=header, n=50, c="-"))
        row(f"Mean {name} (ms):", r[f"mean_{key}_ms"], "{:<10.2f}")
        row(f"Median {name} (ms):", r[f"median_{key}_ms"], "{:<10.2f}")
        for p in percentiles:
            w = _pword(p)
            row(f"P{w[1:]} {name} (ms):", r[f"{w}_{key}_ms"], "{:<10.2f}")
    lines.append("=" * 50)
    return "\n".join(lines)


def save_bench(r: dict[str, Any], path: str | Path) -> None:
    """Write the result JSON as ``--save-result`` does (one JSON object, no indentation)."""
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(r))

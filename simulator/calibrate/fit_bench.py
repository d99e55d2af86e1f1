"""Fit a user's own vLLM ``benchmark_serving`` run: the CPU overheads and HBM bandwidth
efficiencies that make a replay of its requests reproduce its mean TTFT and TPOT.

Reads: one ``vllm bench serve`` / ``benchmark_serving.py --save-result`` JSON with per-request
details (``datasets.benchmark_serving``: input and output lengths, TTFT, ITL, ``ok``), given by
``servesim calibrate --from-bench``; never the shared data. Its requests are replayed in order at
Poisson arrivals of the file's request rate through the real scheduler (:func:`replay_serving`),
starting from the GPU's committed calibration (family ``custom`` by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.calibrate import datasets as ds
from simulator.calibrate.fit_core import _kv_blocks, _round, _rounded, _today
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.engine.scheduler import Scheduler, SchedulerConfig
from simulator.engine.step_time import RooflineStepTime
from simulator.errors import ConfigError
from simulator.profiles import (
    Calibration,
    CalibrationProfile,
    CalibrationProvenance,
    find_calibration,
    load_gpu,
    load_model,
)


@dataclass
class ReplayResult:
    mean_ttft_s: float
    mean_tpot_s: float


def replay_serving(step_model: RooflineStepTime, arrivals: np.ndarray, input_lens: np.ndarray,
                   output_lens: np.ndarray, *, num_blocks: int, max_num_seqs: int,
                   max_num_batched_tokens: int, max_model_len: int,
                   enable_chunked_prefill: bool = True, block_size: int = 16,
                   enable_prefix_caching: bool = False,
                   scored: np.ndarray | None = None) -> ReplayResult:
    """Play requests at given arrival times through one replica — the scheduler stepping with the
    step model's times, requests joining WAITING between steps as the engine core does — and return
    the mean TTFT and TPOT of the ``scored`` requests (default: all)."""
    sched = Scheduler(SchedulerConfig(max_num_seqs=max_num_seqs,
                                      max_num_batched_tokens=max_num_batched_tokens,
                                      max_model_len=max_model_len,
                                      enable_chunked_prefill=enable_chunked_prefill),
                      KVCacheManager(num_blocks, block_size, enable_prefix_caching, max_model_len))
    n = len(arrivals)
    reqs = [Request(i, int(input_lens[i]), int(output_lens[i]), float(arrivals[i]))
            for i in range(n)]
    first = np.full(n, np.nan)
    last = np.full(n, np.nan)
    t = 0.0
    nxt = 0
    done = 0
    while done < n:
        while nxt < n and arrivals[nxt] <= t:
            sched.add_request(reqs[nxt])
            nxt += 1
        if not sched.has_work():
            t = float(arrivals[nxt])
            continue
        plan = sched.schedule()
        if plan.is_empty:
            raise ConfigError("replay: a request does not fit the KV cache; raise the memory or "
                              "lower the lengths")
        t += step_model.predict(plan)
        produced, finished = sched.update(plan)
        for r in produced:
            if r.num_output_tokens == 1:
                first[r.request_id] = t
            last[r.request_id] = t
        done += len(finished)
    sel = np.ones(n, bool) if scored is None else scored
    ttft = first[sel] - arrivals[sel]
    outs = output_lens[sel]
    multi = outs > 1
    tpot = (last[sel][multi] - first[sel][multi]) / (outs[multi] - 1)
    return ReplayResult(float(np.mean(ttft)), float(np.mean(tpot)) if len(tpot) else float("nan"))


def fit_from_benchmark(path: str | Path, gpu: str, model: str, tp: int = 8,
                       weight_dtype: str | None = None, *, kv_dtype: str = "auto",
                       max_num_seqs: int = 256, max_num_batched_tokens: int = 8192,
                       enable_chunked_prefill: bool = True, family: str = "custom",
                       start: Calibration | None = None, seed: int = 0,
                       max_iters: int = 8) -> tuple[CalibrationProfile, dict[str, float]]:
    """Fit the CPU overheads and the HBM bandwidth efficiencies so that replaying a vLLM
    ``benchmark_serving`` result reproduces its mean TTFT and mean TPOT.

    The replay sends the file's requests in their recorded order with their recorded input and
    output lengths (requests that returned no token are sent with one output token: the server
    still prefilled them) at Poisson arrivals of the file's ``request_rate`` (seeded by ``seed``;
    ``inf`` = all at t = 0) through the simulator's scheduler and step model; only the ``ok``
    requests are scored. Two targets, two unknowns: one factor scales ``step_overhead_us`` and
    ``per_seq_overhead_us`` together, another scales ``weight_bw_efficiency`` and the KV efficiency
    of ``kv_dtype`` together (each capped at 1), keeping the ratios of ``start`` (default: the
    GPU's calibration file, else the prior). Solved by Levenberg–Marquardt on the two log-ratios
    (forward differences, ``max_iters`` iterations at most). Returns the profile and a dict of the
    measured, starting and fitted means (ms).
    """

    g = load_gpu(gpu)
    m = load_model(model)
    wdt = weight_dtype or m.native_dtype
    if wdt not in m.weight_dtypes:
        raise ConfigError(f"--weight-dtype: {m.name} has no {wdt} weights; supported: "
                          f"{', '.join(m.weight_dtypes)}")
    kvdt = ("fp16" if m.native_dtype == "fp16" else "bf16") if kv_dtype == "auto" else kv_dtype
    if kvdt not in ("bf16", "fp16", "fp8"):
        raise ConfigError(f"--kv-dtype: '{kv_dtype}' is not one of auto, bf16, fp16, fp8")
    if tp < 1 or m.num_attention_heads % tp:
        raise ConfigError(f"--tp: {m.name} has {m.num_attention_heads} heads, not divisible by {tp}")
    try:
        req, meta = ds.benchmark_serving(path)
    except (FileNotFoundError, ds.BadBenchmarkFile) as e:
        raise ConfigError(str(e)) from None
    ok = req["ok"].to_numpy(bool)
    multi = ok & (req["output_len"].to_numpy() > 1)
    if ok.sum() < 2 or multi.sum() < 1:
        raise ConfigError(f"{path}: fewer than two successful requests to fit on")
    rate = float(meta.get("request_rate", float("inf")) or float("inf"))
    n = len(req)
    rng = np.random.default_rng(seed)
    arrivals = (np.zeros(n) if not math.isfinite(rate)
                else np.cumsum(rng.exponential(1.0 / rate, n)))
    inp = np.maximum(req["input_len"].to_numpy(np.int64), 1)
    out = np.maximum(req["output_len"].to_numpy(np.int64), 1)
    max_len = int(inp.max() + out.max() + 16)
    blocks = _kv_blocks(m, g, tp, wdt, kvdt, max_num_seqs, max_num_batched_tokens)
    meas = np.array([float(req.loc[ok, "ttft_s"].mean()), float(req.loc[multi, "tpot_s"].mean())])
    if start is None:
        found = find_calibration(g.name)
        start = found.coefficients if found is not None else Calibration()
    kv_name = "kv_bw_efficiency_fp8" if kvdt == "fp8" else "kv_bw_efficiency"
    base = start.model_dump()
    if base["step_overhead_us"] < 200.0:
        # NOTE: a start without CPU overheads (the vLLM V1 prior) leaves nothing to scale; the
        # overhead factor then scales the GPU-independent prior's step and per-sequence terms.
        prior = Calibration()
        base["step_overhead_us"] = prior.step_overhead_us
        base["per_seq_overhead_us"] = prior.per_seq_overhead_us

    def cal_of(x: np.ndarray) -> Calibration:
        so, sb = math.exp(float(x[0])), math.exp(float(x[1]))
        # NOTE: the per-step overhead is kept in its plausible range (0.2–10 ms), the
        # efficiencies at most 1.
        b0 = max(base["step_overhead_us"], 1.0)
        so = min(max(so, 200.0 / b0), 10000.0 / b0)
        return Calibration.model_construct(**{
            **base, "step_overhead_us": base["step_overhead_us"] * so,
            "per_seq_overhead_us": base["per_seq_overhead_us"] * so,
            "weight_bw_efficiency": min(1.0, base["weight_bw_efficiency"] * sb),
            kv_name: min(1.0, base[kv_name] * sb)})

    def run(cal: Calibration) -> np.ndarray:
        st = RooflineStepTime(m, g, tp=tp, weight_dtype=wdt, kv_dtype=kvdt, calibration=cal)
        r = replay_serving(st, arrivals, inp, out, num_blocks=blocks, max_num_seqs=max_num_seqs,
                           max_num_batched_tokens=max_num_batched_tokens, max_model_len=max_len,
                           enable_chunked_prefill=enable_chunked_prefill, scored=ok)
        return np.array([r.mean_ttft_s, r.mean_tpot_s])

    def resid(x: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(run(cal_of(np.clip(x, -4.0, 4.0))), 1e-12) / meas)

    before = run(start)
    x = _lm_forward(resid, np.zeros(2), iters=max_iters)
    cal = _rounded(Calibration.model_validate(cal_of(np.clip(x, -4.0, 4.0)).model_dump()))
    after = run(cal)
    info = {"measured_mean_ttft_ms": float(meas[0]) * 1e3,
            "measured_mean_tpot_ms": float(meas[1]) * 1e3,
            "start_mean_ttft_ms": float(before[0]) * 1e3,
            "start_mean_tpot_ms": float(before[1]) * 1e3,
            "fitted_mean_ttft_ms": float(after[0]) * 1e3,
            "fitted_mean_tpot_ms": float(after[1]) * 1e3}
    err = np.abs(after / meas - 1.0)
    residuals = {"ttft_mean_abs_rel_err_pct": _round(float(err[0]) * 100, 4),
                 "tpot_mean_abs_rel_err_pct": _round(float(err[1]) * 100, 4)}
    rate_txt = "all at t=0" if not math.isfinite(rate) else f"Poisson {rate:g}/s (seed {seed})"
    method = (f"fit_from_benchmark: one factor on (step_overhead_us, per_seq_overhead_us) and one "
              f"on (weight_bw_efficiency, {kv_name}), starting from the GPU's calibration, solved "
              f"by Levenberg-Marquardt so that replaying the file's {n} requests (recorded lengths, "
              f"in order; {rate_txt}) through the simulator's scheduler ({m.name} {wdt}, KV {kvdt}, "
              f"TP{tp}, max_num_seqs {max_num_seqs}, max_num_batched_tokens "
              f"{max_num_batched_tokens}) reproduces its mean TTFT and TPOT ({int(ok.sum())} "
              f"successful requests scored).")
    p = Path(path)
    try:
        rel = str(p.resolve().relative_to(ds.shared_data_root().resolve()))
    except ValueError:
        rel = str(p)
    prof = CalibrationProfile(
        gpu=g.name, vllm_family=family, coefficients=cal,
        provenance=CalibrationProvenance(method=method, data=[rel], commit=None, date=_today(),
                                         residuals=residuals, validation={}))
    return prof, info


def _lm_forward(resid: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, iters: int,
                h: float = 0.05) -> np.ndarray:
    """Levenberg–Marquardt with forward differences of step ``h`` (a replay's output moves in
    small jumps as events reorder, so derivatives are taken over a finite step)."""
    x = np.asarray(x0, dtype=float).copy()
    r = resid(x)
    f = float(np.sum(r * r))
    lam = 1e-2
    for _ in range(iters):
        J = np.empty((len(r), len(x)))
        for i in range(len(x)):
            e = np.zeros_like(x)
            e[i] = h
            J[:, i] = (resid(x + e) - r) / h
        A, g = J.T @ J, J.T @ r
        accepted = False
        for _try in range(4):
            dx = -np.linalg.solve(A + lam * (np.diag(np.diag(A)) + 1e-9 * np.eye(len(x))), g)
            xn = np.clip(x + dx, -4.0, 4.0)
            rn = resid(xn)
            fn = float(np.sum(rn * rn))
            if fn < f:
                x, r, f = xn, rn, fn
                lam = max(lam / 10, 1e-6)
                accepted = True
                break
            lam *= 10
        if not accepted or f < 1e-6:
            break
    return x

"""The fitting machinery every step-time fit shares: bounded parameters and a deterministic
optimiser (:func:`fit_params`: Nelder–Mead on log-ratio residuals, restarted to convergence;
:func:`levenberg_marquardt`), residual statistics, rounding to the written digits, and whole
static batches replayed through the real vLLM-v1 scheduler (:func:`static_batch_steps`,
:class:`StaticCase`, :class:`_StaticPredictor`) so that an end-to-end latency is predicted with
the simulator's own step model.

Reads no measured data itself (but a data folder's ``SOURCE.txt`` commit, :func:`_commit`): the
per-source modules (``fit_aic``, ``fit_rocm``, ``fit_bench``) turn their measurements into
kernel rows or :class:`StaticCase` s and fit them here; :mod:`simulator.calibrate.fit` writes the
files.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.calibrate import datasets as ds
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.engine.scheduler import Scheduler, SchedulerConfig
from simulator.engine.step_time import RooflineStepTime, StepFeatures
from simulator.errors import ConfigError
from simulator.profiles import (
    Calibration,
    CalibrationProfile,
    GpuProfile,
    ModelProfile,
    load_model,
    memory_budget,
)

#: Engine settings assumed for the static-batch sources (vLLM's default token budget).
STATIC_MAX_BATCHED_TOKENS = 8192

SIG_DIGITS = 8
"""Significant digits coefficients are written with."""
NOISE_SIGMA = 0.1
"""Assumed typical |log error| of one measurement under the model: weighs prior terms against the
data in maximum a-posteriori fits (loss = mean squared log error + NOISE_SIGMA² / N × Σ z²)."""


@dataclass(frozen=True)
class Param:
    """A fitted coefficient with its physical bounds and (optionally) a log-normal prior."""

    name: str
    lo: float
    hi: float
    prior: float | None = None
    """Centre of the prior (None: no prior term)."""
    prior_sigma: float = 0.5
    """Width of the prior in natural-log units (0.5 ≈ a factor 1.65 at one sigma)."""

    def value(self, x: float) -> float:
        """Unconstrained x → value in (lo, hi) through a logistic map."""
        return self.lo + (self.hi - self.lo) / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))

    def x_of(self, v: float) -> float:
        f = (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo)
        f = min(max(f, 1e-6), 1 - 1e-6)
        return math.log(f / (1 - f))


def nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 0.5,
                max_evals: int = 6000, tol: float = 1e-13) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` by Nelder–Mead (standard coefficients), restarted from the best
    point until a restart no longer improves; deterministic."""
    n = len(x0)
    best = np.asarray(x0, dtype=float)
    fbest = f(best)
    evals = 1
    for _restart in range(12):
        simplex = [best.copy()]
        for i in range(n):
            p = best.copy()
            p[i] += step
            simplex.append(p)
        fs = [f(p) for p in simplex]
        evals += n
        while evals < max_evals:
            order = np.argsort(fs, kind="stable")
            simplex = [simplex[i] for i in order]
            fs = [fs[i] for i in order]
            if abs(fs[-1] - fs[0]) <= tol * (abs(fs[0]) + tol) and \
                    max(float(np.max(np.abs(p - simplex[0]))) for p in simplex) < 1e-9:
                break
            centroid = np.mean(simplex[:-1], axis=0)
            xr = centroid + (centroid - simplex[-1])
            fr = f(xr)
            evals += 1
            if fr < fs[0]:
                xe = centroid + 2.0 * (centroid - simplex[-1])
                fe = f(xe)
                evals += 1
                simplex[-1], fs[-1] = (xe, fe) if fe < fr else (xr, fr)
            elif fr < fs[-2]:
                simplex[-1], fs[-1] = xr, fr
            else:
                inside = fr >= fs[-1]
                xc = centroid + (0.5 * (simplex[-1] - centroid) if inside
                                 else 0.5 * (xr - centroid))
                fc = f(xc)
                evals += 1
                if fc < min(fr, fs[-1]):
                    simplex[-1], fs[-1] = xc, fc
                else:
                    for i in range(1, n + 1):
                        simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                        fs[i] = f(simplex[i])
                    evals += n
        i0 = int(np.argmin(fs))
        improved = fs[i0] < fbest - tol * (abs(fbest) + tol)
        if fs[i0] <= fbest:
            best, fbest = simplex[i0].copy(), fs[i0]
        if not improved or evals >= max_evals:
            break
        step = max(step * 0.5, 1e-3)
    return best, fbest


@dataclass
class FitResult:
    """Values of the fitted parameters and the residuals of the fit set."""

    values: dict[str, Any]
    residuals: dict[str, float]
    rel_errors: np.ndarray = field(repr=False)


def fit_params(params: Sequence[Param], start: Calibration,
               predict: Callable[[Calibration], np.ndarray], measured: np.ndarray,
               weights: np.ndarray | None = None, tag: str = "fit") -> FitResult:
    """Least squares on log(pred / measured) (+ log-normal prior terms), over ``params`` of
    ``start``; returns the best values and residual statistics named ``<tag>_…``.

    Nelder–Mead finds the basin; a Levenberg–Marquardt polish on the residual vector then pins the
    optimum to ~1e-10 (a minimum of a sum of squares is only located to ~√ε by its value alone),
    so refits agree to far better than the 1e-6 ``--check`` tolerance."""
    meas = np.asarray(measured, dtype=float)
    w = np.ones_like(meas) if weights is None else np.asarray(weights, dtype=float)
    sw = np.sqrt(w / w.sum())
    base = start.model_dump()
    prior_w = NOISE_SIGMA / math.sqrt(len(meas))

    def cal_of(x: np.ndarray) -> Calibration:
        upd = {p.name: p.value(float(v)) for p, v in zip(params, x, strict=True)}
        return Calibration.model_construct(**{**base, **upd})

    def resid(x: np.ndarray) -> np.ndarray:
        pred = predict(cal_of(x))
        r = sw * np.log(np.maximum(pred, 1e-30) / meas)
        pri = [prior_w * math.log(p.value(float(v)) / p.prior) / p.prior_sigma
               for p, v in zip(params, x, strict=True) if p.prior is not None]
        return np.concatenate([r, pri]) if pri else r

    def loss(x: np.ndarray) -> float:
        r = resid(x)
        return float(np.sum(r * r))

    x0 = np.array([p.x_of(float(base[p.name])) for p in params])
    x, _ = nelder_mead(loss, x0)
    x = levenberg_marquardt(resid, x)
    values = {p.name: _round(p.value(float(v))) for p, v in zip(params, x, strict=True)}
    cal = Calibration.model_construct(**{**base, **values})
    rel = predict(cal) / meas - 1.0
    return FitResult(values, residual_stats(rel, tag), rel)


def levenberg_marquardt(resid: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                        iters: int = 60, h: float = 1e-6) -> np.ndarray:
    """Polish a least-squares minimum: damped Gauss–Newton steps with a central-difference
    Jacobian, accepted only when they lower the sum of squares; deterministic."""
    x = np.asarray(x0, dtype=float).copy()
    r = resid(x)
    f = float(np.sum(r * r))
    lam = 1e-3
    for _ in range(iters):
        J = np.empty((len(r), len(x)))
        for i in range(len(x)):
            e = np.zeros_like(x)
            e[i] = h
            J[:, i] = (resid(x + e) - resid(x - e)) / (2 * h)
        g = J.T @ r
        A = J.T @ J
        improved = False
        for _try in range(12):
            D = A + lam * (np.diag(np.diag(A)) + 1e-12 * np.eye(len(x)))
            try:
                dx = -np.linalg.solve(D, g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            xn = np.clip(x + dx, -50.0, 50.0)
            rn = resid(xn)
            fn = float(np.sum(rn * rn))
            if fn < f:
                step = float(np.max(np.abs(xn - x)))
                x, r, f = xn, rn, fn
                lam = max(lam / 10, 1e-12)
                improved = True
                break
            lam *= 10
        if not improved or step < 1e-12:
            break
    return x


def residual_stats(rel: np.ndarray, tag: str) -> dict[str, float]:
    """Median and p90 of |relative error| (%), and the number of points."""
    a = np.abs(np.asarray(rel, dtype=float))
    return {f"{tag}_median_abs_rel_err_pct": _round(float(np.median(a)) * 100, 4),
            f"{tag}_p90_abs_rel_err_pct": _round(float(np.percentile(a, 90)) * 100, 4),
            f"{tag}_points": float(len(a))}


def _round(v: float, digits: int = SIG_DIGITS) -> float:
    if v == 0 or not math.isfinite(v):
        return float(v)
    return float(f"{v:.{digits}g}")


def _kv_blocks(model: ModelProfile, gpu: GpuProfile, tp: int, weight_dtype: str, kv_dtype: str,
               max_num_seqs: int, max_num_batched_tokens: int, block_size: int = 16) -> int:
    mem = memory_budget(model, gpu, tp=tp, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
                        gpu_memory_utilization=0.9, block_size=block_size,
                        max_num_batched_tokens=max_num_batched_tokens,
                        max_num_seqs=max_num_seqs, reserve_gib=1.0)
    return max(mem.num_blocks, 1)


def _stack(rows: list[StepFeatures]) -> StepFeatures:
    cols = {k: np.array([getattr(r, k) for r in rows], dtype=float)
            for k in StepFeatures.__dataclass_fields__}
    return StepFeatures(**cols)


def _concat(parts: list[StepFeatures]) -> StepFeatures:
    lens = [len(np.atleast_1d(p.num_tokens)) for p in parts]
    return StepFeatures(**{k: np.concatenate([
        np.broadcast_to(np.asarray(getattr(p, k), dtype=float), (n,)) for p, n in
        zip(parts, lens, strict=True)]) for k in StepFeatures.__dataclass_fields__})


def static_batch_steps(batch: int, input_len: int, output_len: int, *, num_blocks: int,
                       max_num_batched_tokens: int = STATIC_MAX_BATCHED_TOKENS,
                       block_size: int = 16) -> StepFeatures:
    """Features of every step of an offline batch (``batch`` prompts of ``input_len`` tokens
    generating ``output_len`` tokens each, all submitted at t = 0, ``max_num_seqs`` = batch), as the
    simulator's scheduler runs it: vLLM's ``benchmark_latency`` / a static-batch benchmark.

    NOTE: the prefill phase runs through the real scheduler step by step; once only decodes are left
    and the KV cache can hold every request to its end (no preemption possible), the remaining
    decode steps are written in closed form — exactly what the scheduler would do, without its
    per-step Python cost.
    """
    need = batch * -(-(input_len + output_len) // block_size)
    return _static_batch_steps(batch, input_len, output_len, min(num_blocks, need),
                               max_num_batched_tokens, block_size)


@functools.lru_cache(maxsize=512)
def _static_batch_steps(batch: int, input_len: int, output_len: int, num_blocks: int,
                        max_num_batched_tokens: int, block_size: int) -> StepFeatures:
    # NOTE: when the whole batch fits (num_blocks = what it needs), a smaller pool behaves exactly
    # like the real one — allocation never fails — so runs differing only in pool size share this.
    max_len = input_len + output_len + block_size
    sched = Scheduler(SchedulerConfig(max_num_seqs=batch,
                                      max_num_batched_tokens=max_num_batched_tokens,
                                      max_model_len=max_len),
                      KVCacheManager(num_blocks, block_size, True, max_len))
    for i in range(batch):
        sched.add_request(Request(i, input_len, output_len))
    rows: list[StepFeatures] = []
    while sched.has_work():
        if not len(sched.waiting) and rows and all(
                r.num_tokens - r.num_computed_tokens == 1 for r in sched.running):
            need = sum(-(-(r.prompt_len + r.max_tokens) // block_size) for r in sched.running)
            if need <= num_blocks:
                tail = _decode_tail(sched.running)
                head = compress(_stack(rows))
                return _concat([head, tail]) if len(np.atleast_1d(tail.num_tokens)) else head
        plan = sched.schedule()
        if plan.is_empty:
            raise ConfigError(f"a batch of {batch} × {input_len} tokens does not fit the KV cache "
                              f"({num_blocks} blocks)")
        rows.append(StepFeatures.from_plan(plan))
        sched.update(plan)
    return compress(_stack(rows))


def _decode_tail(running: list[Request]) -> StepFeatures:
    """Closed-form decode steps of requests that only decode from here on."""
    ctx = np.array([r.num_computed_tokens for r in running], dtype=float)
    left = np.array([r.max_tokens - r.num_output_tokens for r in running], dtype=np.int64)
    steps = int(left.max()) if len(left) else 0
    j = np.arange(steps)
    order = np.argsort(left, kind="stable")
    left_s, ctx_s = left[order], ctx[order]
    # Requests still active at tail step j: left > j.
    first = np.searchsorted(left_s, j, side="right")
    active = len(left_s) - first
    ctx_suffix = np.concatenate([np.cumsum(ctx_s[::-1])[::-1], [0.0]])
    pairs = ctx_suffix[first] + active * (j + 1.0)
    a = active.astype(float)
    zero = np.zeros(steps)
    return compress(StepFeatures(a, a, a, pairs, zero, zero, zero))


def compress(f: StepFeatures) -> StepFeatures:
    """Merge runs of consecutive decode-only rows of equal shape into one row (``steps`` = run
    length, ``decode_pairs`` summed): the same total time, far fewer rows to evaluate."""
    n = len(np.atleast_1d(f.num_tokens))
    cols = {k: np.broadcast_to(np.asarray(getattr(f, k), dtype=float), (n,)).copy()
            for k in StepFeatures.__dataclass_fields__}
    if n == 0:
        return f
    dec_only = cols["prefill_tokens"] == 0
    same = np.ones(n, bool)
    same[1:] = (dec_only[1:] & dec_only[:-1] & (cols["num_tokens"][1:] == cols["num_tokens"][:-1])
                & (cols["num_seqs"][1:] == cols["num_seqs"][:-1]))
    same[0] = False
    starts = np.flatnonzero(~same)
    out = {}
    for k, v in cols.items():
        if k in ("decode_pairs", "steps"):
            out[k] = np.add.reduceat(v, starts)
        else:
            out[k] = v[starts]
    return StepFeatures(**out)


@dataclass
class StaticCase:
    """One measured static-batch latency and the step features of its replay."""

    source: str
    model: str
    tp: int
    weight_dtype: str
    kv_dtype: str
    batch: int
    input_len: int
    output_len: int
    latency_s: float
    features: StepFeatures
    version: str = ""


def static_latency(case: StaticCase, gpu: GpuProfile, cal: Calibration) -> float:
    """Predicted wall time of the batch: the sum of its step times."""
    st = RooflineStepTime(load_model(case.model), gpu, tp=case.tp,
                          weight_dtype=case.weight_dtype, kv_dtype=case.kv_dtype, calibration=cal)
    return float(np.sum(st.total(case.features)))


def _make_case(gpu: GpuProfile, source: str, model: str, tp: int, wdt: str, kvdt: str, batch: int,
               inp: int, out: int, lat: float, version: str = "",
               max_num_batched_tokens: int = STATIC_MAX_BATCHED_TOKENS) -> StaticCase:
    m = load_model(model)
    blocks = _kv_blocks(m, gpu, tp, wdt, kvdt, batch, max_num_batched_tokens)
    feats = static_batch_steps(batch, inp, out, num_blocks=blocks,
                               max_num_batched_tokens=max_num_batched_tokens)
    return StaticCase(source, model, tp, wdt, kvdt, batch, inp, out, lat, feats, version)


class _StaticPredictor:
    """Vectorised prediction of many static batches under one calibration."""

    def __init__(self, cases: list[StaticCase], gpu: GpuProfile) -> None:
        self.gpu = gpu
        self.groups: dict[tuple[str, int, str, str], list[int]] = {}
        for i, c in enumerate(cases):
            self.groups.setdefault((c.model, c.tp, c.weight_dtype, c.kv_dtype), []).append(i)
        self.feats = {k: _concat([cases[i].features for i in idx]) for k, idx in self.groups.items()}
        self.bounds = {k: np.cumsum([0] + [len(np.atleast_1d(cases[i].features.num_tokens))
                                           for i in idx]) for k, idx in self.groups.items()}
        self.n = len(cases)

    def __call__(self, cal: Calibration) -> np.ndarray:
        out = np.empty(self.n)
        for key, idx in self.groups.items():
            model, tp, wdt, kvdt = key
            st = RooflineStepTime(load_model(model), self.gpu, tp=tp, weight_dtype=wdt,
                                  kv_dtype=kvdt, calibration=cal)
            t = np.asarray(st.total(self.feats[key]), dtype=float)
            cs = np.concatenate([[0.0], np.cumsum(t)])
            b = self.bounds[key]
            out[idx] = cs[b[1:]] - cs[b[:-1]]
        return out


@dataclass
class GpuFit:
    """A calibration profile plus what the CLI prints."""

    profile: CalibrationProfile
    notes: list[str] = field(default_factory=list)


def _commit(folder: str) -> str:
    """The data source's commit (first 40-hex token of SOURCE_COMMIT.txt, else SOURCE.txt)."""
    root = ds.shared_data_root()
    for name in ("SOURCE_COMMIT.txt", "SOURCE.txt"):
        p = root / folder / name
        if p.exists():
            m = re.search(r"\b[0-9a-f]{40}\b", p.read_text())
            if m:
                return m.group(0)
    return "unknown"


def _today() -> str:
    return _dt.date.today().isoformat()


def _rounded(cal: Calibration) -> Calibration:
    def rnd(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rnd(x) for k, x in v.items()}
        return v if v is None or isinstance(v, bool) else _round(float(v))

    return Calibration(**{k: rnd(v) for k, v in cal.model_dump().items()})

"""Capacity planning: the cheapest fleet that meets an SLO, and the cost-vs-latency trade-off.

What this models: the question a planner brings to a budget meeting — "for this traffic and these
latency targets, which GPU, how many per replica, how many replicas, with which vLLM settings, and
what does it cost a month?" The planner searches GPU type × tensor parallelism × engine knobs (any
scenario fields, e.g. ``engine.max_num_seqs``) × replica count, and confirms every answer by
simulation. It reports the cheapest configuration meeting the SLO, the cheapest per GPU type side by
side, and the Pareto frontier of spend rate ($/h) against a latency figure over everything it
simulated.

Search, per *shape* (GPU, TP, knobs):

1. **Memory fit** — :func:`simulator.run.resolve_deployment`: a shape whose weights, activations
   or ``max_model_len`` do not fit is out (the same checks vLLM does at start-up).
2. **Throughput bound** — with Poisson arrivals at rate λ, a fleet of R replicas whose capacity is
   at most R·μ⁺ is overloaded (its queue grows without bound) when λ ≥ R·μ⁺, so fewer replicas than
   ``floor(λ/μ⁺) + 1`` cannot meet a latency SLO in steady state. μ⁺ is an *upper* bound on one
   replica's request rate from the calibrated step-time model: every step costs at least the time of
   a step of its token count with one sequence and no attention, so a request needs at least
   (uncached prompt + output tokens) × min_T t(T)/T seconds of replica time (T up to
   ``max_num_batched_tokens``), and at least (output − 1)/``max_num_seqs`` steps of at least t(1).
   Mean lengths are taken from 50,000 draws of the workload's length distributions minus four
   standard errors (requests too long for ``max_model_len`` are rejected and count as no work; the
   shared system prompt counts as cached). The bound is claimed only for one Poisson stream of
   independent requests (no tenants with their own arrivals, no sessions, whose shared context
   could be cached) and the roofline backend; otherwise it is skipped (nothing is pruned by it).
3. **TPOT floor** — every output token after the first costs at least one step t(1); when every
   request has ≥ 2 output tokens (fixed lengths ≥ 2, or lognormal with ``min`` ≥ 2), a TPOT target
   below t(1) cannot be met by any replica count.
4. **Cost** — candidates are visited cheapest lower bound first; for each GPU type the planner keeps
   the cheapest configuration found to meet the SLO and skips every candidate whose spend rate is
   higher (a candidate can only cost more with more replicas); equal cost is simulated, and ties
   go to the lower latency (``pareto_metric``). The replica count of a shape is
   scanned upward from its bound, and the scan stops at the first count that meets the SLO — so the
   cheapest meeting count is found without assuming latency falls with more replicas.

NOTE: the throughput bound is a steady-state argument; a short simulation of an overloaded fleet can
still pass a loose SLO by ending before its queue grows. The planner treats overload as failure,
which is what a longer run shows.

With ``replications: K`` every candidate is simulated with K seeds and a target counts as met only
when the lower end of the 95% interval of its attainment reaches the percentile (the pessimistic
bound).

Disaggregated prefill/decode candidates (``search.disaggregation``): for each shape, fleets of x
prefill + y decode replicas (``fleet.pools`` with roles, KV cache over the base scenario's
``fleet.kv_transfer``) are scanned by total replica count n = x + y upward — every split of n is
simulated, since the cost depends only on n — with the same memory fit, throughput bound (on n: a
request needs the same token work wherever it runs) and cost pruning.

A base scenario with ``fleet.pools`` is planned as the fleet of its one served model
(:func:`single_pool_base`): each candidate's fleet replaces the pools.

The Pareto frontier (``pareto``) is that of the simulated candidates meeting the SLO; the frontier
of those missing it (``pareto_infeasible``) is reported apart, never as an answer.

Why one module (~830 lines): the plan spec, the bounds, the search loop and the report all speak of
one :class:`Shape` and :class:`PlanResult`, and :func:`plan`'s pruning reads the bounds and the
spec together; the scenario sections it reuses (SLO, cost) are in ``plan_spec.py`` already.

Spec (YAML)::

    name: chat-8b
    base: ../scenarios/default.yaml         # optional; default: the embedded default scenario
    overrides: {workload.num_requests: 1000, workload.arrival.rate: 30}
    slo: {ttft_p90_ms: 500, tpot_p90_ms: 40}  # or in the base scenario
    cost: {pricing: on_demand}               # optional
    search:
      gpus: [H100-SXM, H200-SXM, MI300X]
      tps: [1, 2]
      replicas: {min: 1, max: 16}
      knobs: {engine.max_num_seqs: [128, 256]}
      disaggregation: {prefill: [1, 2], decode: [1, 2, 3, 4]}   # optional xPyD candidates
    replications: 1
    pareto_metric: ttft_ms.p90
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import typer
from pydantic import Field, model_validator

from simulator.config import Scenario
from simulator.errors import ConfigError, load_yaml_model
from simulator.plan_spec import TARGETS, CostConfig, SloConfig
from simulator.profiles import Strict

if TYPE_CHECKING:
    from simulator.results import Deployment, Results

class ReplicaRange(Strict):
    """Replica counts to consider."""

    min: int = Field(default=1, ge=1)
    """Fewest replicas."""
    max: int = Field(default=16, ge=1, le=10_000)
    """Most replicas."""

    @model_validator(mode="after")
    def _check(self) -> ReplicaRange:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) < replicas.min ({self.min}); swap them")
        return self


class DisaggSearch(Strict):
    """Prefill/decode replica counts of the xPyD candidates (every x + y combination)."""

    prefill: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    """Prefill replica counts x."""
    decode: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], min_length=1)
    """Decode replica counts y."""

    @model_validator(mode="after")
    def _check(self) -> DisaggSearch:
        if min(self.prefill + self.decode) < 1:
            raise ValueError("prefill and decode replica counts must be >= 1")
        return self


class SearchSpace(Strict):
    """What the planner varies."""

    gpus: list[str] = Field(default_factory=lambda: ["H100-SXM", "H200-SXM", "MI300X"], min_length=1)
    """GPU profiles to compare."""
    tps: list[int] = Field(default_factory=lambda: [1], min_length=1)
    """Tensor-parallel sizes (GPUs per replica)."""
    replicas: ReplicaRange = ReplicaRange()
    """Replica counts."""
    knobs: dict[str, list[Any]] = Field(default_factory=dict)
    """Other scenario fields to vary, ``path.to.field: [values …]`` (e.g. ``engine.max_num_seqs``,
    ``engine.max_num_batched_tokens``, ``engine.enable_chunked_prefill``, ``model.weight_dtype``)."""
    disaggregation: DisaggSearch | None = None
    """Also search disaggregated prefill/decode fleets (xPyD: x prefill + y decode replicas of the
    same GPU, TP and engine knobs, KV cache sent over ``fleet.kv_transfer``); None: aggregated only."""
    aggregated: bool = True
    """Search ordinary (aggregated) fleets; false with ``disaggregation`` set: xPyD only."""


class PlanSpec(Strict):
    """A planning question: traffic (the base scenario), SLO, prices and the search space."""

    name: str | None = None
    """Label (default: the spec file's name)."""
    base: str | None = None
    """Scenario file (relative to the spec's folder) giving model, traffic and engine defaults;
    default: the embedded default scenario."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """``path.to.field: value`` changes to the base scenario."""
    slo: SloConfig | None = None
    """Targets to meet (replaces the base scenario's ``slo``); required here or in the base."""
    cost: CostConfig | None = None
    """Pricing (replaces the base scenario's ``cost``)."""
    search: SearchSpace = SearchSpace()
    """What to vary."""
    replications: int = Field(default=1, ge=1, le=100)
    """Seeds per candidate; >1 checks the SLO on the pessimistic end of a 95% interval."""
    pareto_metric: str = "ttft_ms.p90"
    """Latency axis of the Pareto frontier: a summary path such as ``ttft_ms.p90``,
    ``tpot_ms.p90`` or ``e2e_ms.p99``."""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_plan_spec(path: str | Path) -> PlanSpec:
    return load_yaml_model(Path(path), PlanSpec,
                           "a mapping (base, overrides, slo, cost, search, …)")


def base_scenario_raw(spec: PlanSpec, spec_dir: Path) -> tuple[dict[str, Any], str]:
    """The base scenario mapping (with overrides, slo and cost applied) and its folder."""
    from simulator.config import set_path
    from simulator.sweep import _raw_scenario

    raw, base_dir, _ = _raw_scenario(spec_dir / spec.base if spec.base else None)
    for k, v in spec.overrides.items():
        set_path(raw, k, v)
    if spec.slo is not None:
        raw["slo"] = spec.slo.model_dump(mode="json", exclude_none=True)
    if spec.cost is not None:
        raw["cost"] = spec.cost.model_dump(mode="json")
    return raw, base_dir


def single_pool_base(raw: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The base scenario as the fleet the planner sizes: one pool of one model, whose GPU, TP,
    replica count (or xPyD pools) each candidate sets. A base with ``fleet.pools`` of one served
    model becomes its first front pool's model, formats and engine settings (its GPU and TP the
    default); fault events and the autoscaler name that single pool. Returns (mapping, a note saying
    what was replaced, or None). Pools of several served models are an error: the planner sizes
    one model's fleet."""
    fleet = raw.get("fleet")
    pools = fleet.get("pools") if isinstance(fleet, dict) else None
    if not pools:
        return raw, None
    d = copy.deepcopy(raw)
    fl = d["fleet"]
    if not isinstance(d.get("model"), dict):
        d["model"] = {}
    model = d["model"]
    base_model = model.get("name", "Llama-3.1-8B")
    front = [p for p in pools if isinstance(p, dict) and p.get("role", "mixed") != "decode"]
    served = list(dict.fromkeys(p.get("served_model") or p.get("model") or base_model
                                for p in front))
    if len(served) > 1:
        raise ConfigError(f"plan: the base scenario's fleet.pools serve {len(served)} models "
                          f"({', '.join(map(str, served))}); the planner sizes one model's fleet — "
                          f"plan each model with a base scenario of its own")
    p0 = front[0]
    if p0.get("model") and p0["model"] != base_model:
        model.clear()
        model["name"] = p0["model"]
    for k in ("weight_dtype", "kv_cache_dtype"):
        if p0.get(k) is not None:
            model[k] = p0[k]
    if p0.get("engine"):
        d["engine"] = {**(d.get("engine") or {}), **p0["engine"]}
    for k in ("gpu", "tp"):
        if p0.get(k) is not None:
            fl[k] = p0[k]
    for k in ("pools", "aggregate", "routes", "degrade", "replicas"):
        fl.pop(k, None)
    names = [p.get("name") for p in pools if isinstance(p, dict)]
    faults = d.get("faults")
    if isinstance(faults, dict):
        for ev in faults.get("events") or []:
            if isinstance(ev, dict):
                ev.pop("pool", None)
        if isinstance(faults.get("mtbf"), dict):
            faults["mtbf"].pop("pools", None)
    auto = d.get("autoscaling")
    if isinstance(auto, dict) and isinstance(auto.get("pools"), dict) and auto["pools"]:
        first = next(iter(auto["pools"].values()))
        auto["pools"] = {"default": first}
    note = (f"the base scenario's fleet.pools ({', '.join(map(str, names))}) are replaced by each "
            f"candidate's fleet (model, formats and engine of pool {p0.get('name')!r})")
    return d, note


# --------------------------------------------------------------------------------------------
# Analytic bounds
# --------------------------------------------------------------------------------------------


@dataclass
class Bounds:
    """Cheap facts about one replica of a shape, from the step-time model."""

    min_step_s: float | None = None
    """t(1): the shortest possible step."""
    min_s_per_token: float | None = None
    """min over T ≤ max_num_batched_tokens of t(T)/T."""
    capacity_rps: float | None = None
    """μ⁺: upper bound on requests/s one replica completes."""
    offered_rps: float | None = None
    """λ: Poisson arrival rate (None for other arrival processes)."""
    notes: list[str] = field(default_factory=list)

    def min_replicas(self) -> int:
        """Fewest replicas not provably overloaded (1 without a bound)."""
        if self.capacity_rps and self.offered_rps:
            return math.floor(self.offered_rps / self.capacity_rps) + 1
        return 1


def _step_times(step: Any, max_tokens: int) -> np.ndarray | None:
    """t(T) for T = 1 … max_tokens of a step with one sequence and no attention context."""
    from simulator.engine import step_time as st

    features = getattr(st, "StepFeatures", None)
    if features is not None and hasattr(step, "total"):
        t = np.arange(1, max_tokens + 1, dtype=float)
        z = np.zeros_like(t)
        try:
            f = features(num_tokens=t, num_seqs=np.ones_like(t), num_decodes=z, decode_pairs=z,
                         prefill_tokens=z, prefill_pairs=z, prefill_kv_tokens=z)
            return np.asarray(step.total(f), dtype=float)
        except TypeError:  # another StepFeatures shape: fall back to one step at a time
            pass
    if not hasattr(step, "breakdown_totals"):
        return None
    return np.array([step.breakdown_totals(int(n), 1, 0, []).total
                     for n in range(1, max_tokens + 1)])


def _work_tokens(sc: Scenario, max_model_len: int, count_input: bool) -> float | None:
    """Lower bound on the mean tokens one arriving request makes a replica compute (50,000 draws of
    the workload's lengths, minus four standard errors; requests longer than ``max_model_len`` are
    rejected and cost nothing). None when the lengths cannot be drawn here."""
    wl = sc.workload
    try:
        from simulator.workload.lengths import LengthPairs

        # NOTE: newer LengthPairs take the correlation and the clip length; older ones do not.
        kw: dict[str, Any] = {"correlation": getattr(wl, "length_correlation", None),
                              "max_model_len": max_model_len}
        try:
            pairs = LengthPairs(wl.input_len, wl.output_len, sc.base_dir, **kw)
        except TypeError:
            pairs = LengthPairs(wl.input_len, wl.output_len, sc.base_dir)
        inp, out = pairs.sample(np.random.default_rng(20240607), 50_000)
    except Exception:  # the workload module may change shape; then no bound
        return None
    inp, out = np.asarray(inp, float), np.asarray(out, float)
    fits = (inp + wl.system_prompt_tokens + out) <= max_model_len
    work = np.where(fits, out + (inp if count_input else 0.0), 0.0)
    return max(float(work.mean()) - 4.0 * float(work.std()) / math.sqrt(len(work)), 0.0)


def _always_two_outputs(sc: Scenario) -> bool:
    from simulator.config import FixedLength, LognormalLength

    o = sc.workload.output_len
    return (isinstance(o, FixedLength) and o.value >= 2) or \
        (isinstance(o, LognormalLength) and o.min >= 2)


def analytic_bounds(sc: Scenario, dep: Deployment) -> Bounds:
    """Throughput and step-time bounds of one replica of ``sc`` (see the module docstring)."""
    from simulator.config import PoissonArrivals
    from simulator.run import build_step_time

    b = Bounds()
    if sc.step_time.backend != "roofline":
        b.notes.append("no analytic bound for a measured step-time table")
        return b
    step = build_step_time(sc, dep)
    t = _step_times(step, sc.engine.max_num_batched_tokens)
    if t is None:
        return b
    b.min_step_s = float(t[0])
    b.min_s_per_token = float(np.min(t / np.arange(1, len(t) + 1)))
    wl = sc.workload
    # NOTE: the bound is only claimed for the traffic it can see whole: one Poisson stream of
    # independent requests (no tenants with their own arrivals, no sessions, lengths not clipped).
    arrival = wl.arrival
    if not isinstance(arrival, PoissonArrivals) or getattr(wl, "tenants", None) \
            or getattr(wl, "sessions", None) is not None \
            or getattr(wl, "overlong", "send") != "send":
        b.notes.append("no throughput bound for this arrival process / tenants / sessions")
        return b
    b.offered_rps = float(arrival.rate)
    # Prompt tokens beyond the shared system prompt are never cached in independent traffic.
    tokens = _work_tokens(sc, dep.max_model_len, count_input=True)
    if tokens is None:
        b.notes.append("length distribution not sampled: no throughput bound")
        return b
    outs = _work_tokens(sc, dep.max_model_len, count_input=False) or 0.0
    work = max(tokens * b.min_s_per_token,
               max(outs - 1.0, 0.0) / sc.engine.max_num_seqs * b.min_step_s)
    if work > 0:
        b.capacity_rps = 1.0 / work
    return b


# --------------------------------------------------------------------------------------------
# Judging a candidate
# --------------------------------------------------------------------------------------------


def slo_verdict(summaries: list[dict[str, Any]]) -> tuple[bool, float | None]:
    """(met on the pessimistic bound, lower bound of the overall attainment) over replications.

    A target is met when the lower end of the 95% interval of its attainment (the point value for
    one run) reaches its percentile; fleet-wide and per-tenant targets all count."""
    from simulator.metrics.summary import interval

    slos: list[dict[str, Any]] = []
    for s in summaries:
        if s.get("slo") is None:
            raise ConfigError("plan needs an slo: set it in the plan spec or the base scenario")
        slos.append(s["slo"])
    pct = {n: p for n, _, p in TARGETS}
    checks: list[tuple[str | None, str]] = [(None, n) for n in slos[0]["targets"]]
    for t, blk in slos[0]["tenants"].items():
        checks += [(t, n) for n in blk["targets"]]
    met = True
    for tenant, name in checks:
        vals = []
        for s in slos:
            blk = s["targets"] if tenant is None else s["tenants"].get(tenant, {}).get("targets", {})
            vals.append(blk.get(name, {}).get("attainment"))
        if all(v is None for v in vals):
            continue  # no requests of this tenant: nothing to miss
        lo = interval([0.0 if v is None else float(v) for v in vals])["lo"]
        if lo is None or lo < pct[name] / 100.0 - 1e-12:
            met = False
    att = interval([float(s["attainment"] or 0.0) for s in slos])["lo"]
    return met, float(att) if att is not None else None


def _get(d: dict[str, Any], path: str) -> Any:
    node: Any = d
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _figure(summaries: list[dict[str, Any]], path: str) -> tuple[float | None, float | None]:
    """(mean, upper 95% bound) of a summary figure over replications."""
    from simulator.metrics.summary import interval

    vals = [_get(s, path) for s in summaries]
    iv = interval(vals)
    mean, hi = iv["mean"], iv["hi"]
    return (None if mean is None else float(mean)), (None if hi is None else float(hi))


# --------------------------------------------------------------------------------------------
# The search
# --------------------------------------------------------------------------------------------


@dataclass
class Shape:
    gpu: str
    tp: int
    knobs: dict[str, Any]
    disagg: bool = False
    scenario: Scenario | None = None
    deployment: Any = None
    bounds: Bounds | None = None
    usd_per_replica_hour: float = 0.0
    status: str = ""


@dataclass
class PlanResult:
    spec: PlanSpec
    candidates: pd.DataFrame
    best: dict[str, Any] | None
    best_per_gpu: dict[str, dict[str, Any] | None]
    best_results: Results | None
    simulations: int
    name: str
    notes: list[str] = field(default_factory=list)
    """What the planner did to the base scenario (e.g. replaced its pools)."""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.model_dump(mode="json"), "best": self.best,
                "best_per_gpu": self.best_per_gpu, "simulations": self.simulations,
                "notes": self.notes,
                "candidates": len(self.candidates),
                "pruned": int((self.candidates["status"] == "pruned").sum())
                if len(self.candidates) else 0,
                "disaggregation": "searched (xPyD)" if self.spec.search.disaggregation
                else "not searched (set search.disaggregation to include xPyD fleets)"}


def _row(shape: Shape, replicas: int, usd_h: float, cost: CostConfig, status: str, reason: str,
         summaries: list[dict[str, Any]] | None = None, met: bool | None = None,
         metric: str = "ttft_ms.p90", layout: tuple[int, int] | None = None) -> dict[str, Any]:
    mode = "aggregated" if not shape.disagg else (f"{layout[0]}P{layout[1]}D" if layout else "xPyD")
    row: dict[str, Any] = {"gpu": shape.gpu, "tp": shape.tp, "mode": mode, "replicas": replicas,
                           "prefill": layout[0] if layout else None,
                           "decode": layout[1] if layout else None,
                           "gpus": replicas * shape.tp,
                           **{f"knob.{k}": v for k, v in shape.knobs.items()},
                           "usd_per_hour": usd_h, "usd_per_month": usd_h * cost.hours_per_month,
                           "status": status, "reason": reason, "met": met}
    figures = ("ttft_ms.p50", "ttft_ms.p90", "ttft_ms.p99", "tpot_ms.p90", "e2e_ms.p99",
               "slo.attainment", "slo.goodput_rps", "throughput.requests_per_s",
               "cost.usd_per_1m_output_tokens", "cost.usd_per_1m_input_tokens",
               "cost.utilisation.replica_busy_frac", "cost.utilisation.capacity_frac",
               "kv_cache_usage.mean")
    for f in (*figures, metric) if metric not in figures else figures:
        if summaries:
            mean, hi = _figure(summaries, f)
            row[f] = mean
            if len(summaries) > 1:
                row[f + ".hi95"] = hi
        else:
            row[f] = None
    return row


def plan(spec: PlanSpec, spec_dir: Path, *, name: str = "plan", progress: bool = True,
         log: Any = None) -> PlanResult:
    """Run the search (see the module docstring) and return every candidate with its verdict."""
    from simulator.cost import gpu_price
    from simulator.run import resolve_deployment, simulate
    from simulator.sweep import build_scenario

    raw, base_dir = base_scenario_raw(spec, spec_dir)
    build_scenario(raw, base_dir, {}, "plan base scenario")  # the base as written must be valid
    raw, base_note = single_pool_base(raw)
    base = build_scenario(raw, base_dir, {}, "plan base scenario (one pool)")
    if base.slo is None:
        raise ConfigError("plan needs an slo: set slo: in the plan spec or the base scenario")
    cost = base.cost
    rng = spec.search.replicas
    knob_keys = list(spec.search.knobs)
    rows: list[dict[str, Any]] = []
    shapes: list[Shape] = []
    for gpu, tp in itertools.product(spec.search.gpus, spec.search.tps):
        for combo in itertools.product(*(spec.search.knobs[k] for k in knob_keys)):
            knobs = dict(zip(knob_keys, combo, strict=True))
            modes = ([False] if spec.search.aggregated else []) + \
                ([True] if spec.search.disaggregation is not None else [])
            changes = {"fleet.gpu": gpu, "fleet.tp": tp, "fleet.replicas": rng.min, **knobs}
            desc = ", ".join(f"{k}={v}" for k, v in changes.items() if k != "fleet.replicas")
            for disagg in modes:
                sh = Shape(gpu, tp, knobs, disagg)
                shapes.append(sh)
                try:
                    # The memory fit and the bounds are those of one replica: the same for an
                    # aggregated replica and for a prefill or decode one.
                    sh.scenario = build_scenario(raw, base_dir, changes, desc)
                    sh.usd_per_replica_hour = tp * gpu_price(gpu, cost)[0]
                    sh.deployment = resolve_deployment(sh.scenario)
                except ConfigError as e:
                    sh.status = f"does not fit / invalid: {e}"
                    rows.append(_row(sh, rng.min, rng.min * sh.usd_per_replica_hour, cost,
                                     "pruned", sh.status, metric=spec.pareto_metric))
                    continue
                sh.bounds = analytic_bounds(sh.scenario, sh.deployment)

    live = [s for s in shapes if not s.status]
    best: dict[str, float] = {}
    best_row: dict[str, dict[str, Any]] = {}
    best_res: dict[str, Any] = {}
    sims = 0
    dis = spec.search.disaggregation

    def lb(s: Shape) -> int:
        n = max(rng.min, s.bounds.min_replicas() if s.bounds else 1)
        return max(n, min(dis.prefill) + min(dis.decode)) if s.disagg and dis else n

    def top(s: Shape) -> int:
        return max(dis.prefill) + max(dis.decode) if s.disagg and dis else rng.max

    def layouts(s: Shape, n: int) -> list[tuple[int, int] | None]:
        if not s.disagg or dis is None:
            return [None]
        return [(x, n - x) for x in sorted(set(dis.prefill)) if (n - x) in dis.decode]

    def scenario_for(s: Shape, n: int, layout: tuple[int, int] | None) -> Scenario:
        assert s.scenario is not None
        if layout is None:
            return s.scenario.model_copy(update={
                "fleet": s.scenario.fleet.model_copy(update={"replicas": n})})
        x, y = layout
        d = copy.deepcopy(raw)
        if isinstance(d.get("fleet"), dict):
            d["fleet"].pop("replicas", None)
        pools = [{"name": "prefill", "role": "prefill", "decode_pool": "decode", "replicas": x},
                 {"name": "decode", "role": "decode", "replicas": y}]
        return build_scenario(d, base_dir, {"fleet.gpu": s.gpu, "fleet.tp": s.tp,
                                            "fleet.pools": pools, **s.knobs},
                              f"{x}P{y}D on {s.gpu} tp={s.tp}")

    live.sort(key=lambda s: (lb(s) * s.usd_per_replica_hour, s.gpu, s.tp, s.disagg))
    metric = spec.pareto_metric
    status = _Status(progress)
    try:
        for sh in live:
            assert sh.scenario is not None and sh.bounds is not None
            b = sh.bounds
            gpu_best = best.get(sh.gpu, math.inf)
            r0 = lb(sh)
            if b.capacity_rps and r0 - 1 >= 1 and r0 - 1 < b.min_replicas():
                rows.append(_row(sh, r0 - 1, (r0 - 1) * sh.usd_per_replica_hour, cost, "pruned",
                                 f"overloaded: offered {b.offered_rps:.3g} req/s ≥ {r0 - 1} × "
                                 f"capacity bound {b.capacity_rps:.3g} req/s (fewer replicas too)",
                                 metric=metric))
            floor_ms = (b.min_step_s or 0.0) * 1000.0
            tpot_targets = [v for n, v in _all_targets(base.slo).items() if n.startswith("tpot")]
            if tpot_targets and _always_two_outputs(sh.scenario) and min(tpot_targets) < floor_ms:
                rows.append(_row(sh, r0, r0 * sh.usd_per_replica_hour, cost, "pruned",
                                 f"TPOT floor: one step takes ≥ {floor_ms:.2f} ms > target "
                                 f"{min(tpot_targets):g} ms", metric=metric))
                continue
            for n in range(r0, top(sh) + 1):
                usd_h = n * sh.usd_per_replica_hour
                # NOTE: equal cost is still simulated, so ties are broken by latency, not visit order.
                if usd_h > gpu_best + 1e-9:
                    rows.append(_row(sh, n, usd_h, cost, "pruned",
                                     f"costs more than the best {sh.gpu} configuration found "
                                     f"(${gpu_best:,.2f}/h)", metric=metric))
                    break
                found: list[tuple[dict[str, Any], Any]] = []
                for layout in layouts(sh, n):
                    status.say(f"plan: {sims} simulations; now {sh.gpu} tp={sh.tp} "
                               + (f"{layout[0]}P{layout[1]}D" if layout else f"× {n}"))
                    try:
                        sc = scenario_for(sh, n, layout)
                        runs = [simulate(sc.model_copy(update={"seed": sc.seed + i}))
                                for i in range(spec.replications)]
                    except ConfigError as e:
                        rows.append(_row(sh, n, usd_h, cost, "pruned", f"cannot be built: {e}",
                                         metric=metric, layout=layout))
                        continue
                    sims += len(runs)
                    summaries = [x.summary for x in runs]
                    met, _ = slo_verdict(summaries)
                    row = _row(sh, n, usd_h, cost, "simulated",
                               "meets the SLO" if met else "misses the SLO", summaries, met, metric,
                               layout)
                    rows.append(row)
                    if log is not None:
                        log(row)
                    if met:
                        found.append((row, runs[0]))
                if found:
                    row, first = min(found, key=lambda f: _rank(f[0], metric))
                    old = best_row.get(sh.gpu)
                    if old is None or _rank(row, metric) < _rank(old, metric):
                        best[sh.gpu] = usd_h
                        gpu_best = usd_h
                        best_row[sh.gpu] = row
                        best_res[sh.gpu] = first
                    break
    finally:
        status.stop()
    df = pd.DataFrame(rows)
    if len(df):
        meets: pd.Series = df["met"].fillna(False).astype(bool)
        df["pareto"] = pareto_mask(df, spec.pareto_metric, among=meets)
        # NOTE: points that miss the SLO but are cheaper or faster than the feasible frontier:
        # the trade-off a looser SLO would buy, shown apart and never as an answer.
        df["pareto_infeasible"] = pareto_mask(df, spec.pareto_metric, among=~meets)
    per_gpu = {g: best_row.get(g) for g in spec.search.gpus}
    overall = min(best_row.values(), key=lambda r: _rank(r, spec.pareto_metric), default=None)
    res = best_res[overall["gpu"]] if overall else None
    return PlanResult(spec, df, overall, per_gpu, res, sims, name,
                      [base_note] if base_note else [])


class _Status:
    """A one-line live status on stderr while the planner simulates (nothing when disabled or when
    stderr is not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self._st: Any = None
        if enabled:
            from rich.console import Console

            con = Console(stderr=True)
            if con.is_terminal:
                self._st = con.status("plan: starting")
                self._st.start()

    def say(self, text: str) -> None:
        if self._st is not None:
            self._st.update(text)

    def stop(self) -> None:
        if self._st is not None:
            self._st.stop()
            self._st = None


def _rank(row: dict[str, Any], metric: str) -> tuple[float, float]:
    """Cheaper first; at equal cost, lower latency."""
    v = row.get(metric)
    return float(row["usd_per_hour"]), (math.inf if v is None else float(v))


def _all_targets(slo: SloConfig) -> dict[str, float]:
    out = slo.set_targets()
    for t in slo.tenants.values():
        for k, v in t.set_targets().items():
            out[k] = min(out.get(k, math.inf), v)
    return out


def pareto_mask(df: pd.DataFrame, metric: str, among: pd.Series | None = None) -> pd.Series:
    """Simulated candidates on the cost-vs-latency frontier: no other simulated candidate is at
    most as dear and at most as slow, and strictly better in one. ``among``: only rows where it is
    true take part (the planner's ``pareto`` is the frontier of the candidates meeting the SLO)."""
    keep = (df["status"] == "simulated") & df[metric].notna()
    if among is not None:
        keep &= among.astype(bool)
    sim = df[keep]
    on = pd.Series(False, index=df.index)
    cost = sim["usd_per_hour"].to_numpy(float)
    lat = sim[metric].to_numpy(float)
    for i, idx in enumerate(sim.index):
        dominated = ((cost <= cost[i]) & (lat <= lat[i]) & ((cost < cost[i]) | (lat < lat[i]))).any()
        on[idx] = not dominated
    return on


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def describe(row: dict[str, Any] | None) -> str:
    if row is None:
        return "none found"
    knobs = ", ".join(f"{k.removeprefix('knob.')}={v}" for k, v in row.items()
                      if k.startswith("knob."))
    mode = row.get("mode", "aggregated")
    count = (f"{row['replicas']}" if mode in ("aggregated", None)
             else f"{row['prefill']}P+{row['decode']}D")
    return (f"{count} × {row['gpu']} tp={row['tp']}" + (f" ({knobs})" if knobs else "")
            + f": ${row['usd_per_hour']:,.2f}/h = ${row['usd_per_month']:,.0f}/month")


def save_plan(result: PlanResult, out: Path) -> Path:
    """Write plan.json, candidates.csv/.parquet, pareto.png and the best run (best/)."""
    from simulator.report.plots import pareto_figure

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    df = result.candidates
    df.to_csv(out / "candidates.csv", index=False)
    df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(
        out / "candidates.parquet", index=False)
    fig = pareto_figure(df, result.spec.pareto_metric)
    fig.savefig(out / "pareto.png", dpi=110)
    if result.best_results is not None:
        from simulator.report.html import save_run

        save_run(result.best_results, out / "best")
    return out


def print_plan(result: PlanResult) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console() if Console().is_terminal else Console(width=160)
    df = result.candidates
    metric = result.spec.pareto_metric
    t = Table(title=f"plan {result.name}: candidates ({result.simulations} simulations)",
              show_edge=False)
    for c in ("gpu", "tp", "mode", "replicas", "knobs", "$/h", "$/month", metric, "TPOT p90",
              "attain.", "status"):
        t.add_column(c, justify="left" if c in ("gpu", "mode", "knobs", "status") else "right")
    for _, r in df.iterrows():
        knobs = " ".join(f"{k.removeprefix('knob.')}={r[k]}" for k in df.columns
                         if k.startswith("knob."))
        b = result.best
        same = b is not None and all(r.get(k) == b.get(k) for k in ("gpu", "tp", "mode", "replicas")) \
            and all(r.get(k) == b.get(k) for k in df.columns if k.startswith("knob."))
        mark = " ★" if same and r["status"] == "simulated" and r.get("met") else ""
        t.add_row(r["gpu"], str(r["tp"]), str(r.get("mode", "")), str(r["replicas"]), knobs,
                  f"{r['usd_per_hour']:,.2f}",
                  f"{r['usd_per_month']:,.0f}", _f(r.get(metric)), _f(r.get("tpot_ms.p90")),
                  _f(r.get("slo.attainment"), pct=True),
                  r["reason"] + mark)
    con.print(t)
    g = Table(title="cheapest configuration meeting the SLO, per GPU", show_edge=False)
    g.add_column("gpu")
    g.add_column("configuration")
    g.add_column(metric, justify="right")
    g.add_column("$/1M output tok", justify="right")
    for gpu, row in result.best_per_gpu.items():
        g.add_row(gpu, describe(row), _f(row.get(metric)) if row else "—",
                  _f(row.get("cost.usd_per_1m_output_tokens"), nd=3) if row else "—")
    con.print(g)
    for col, title in (("pareto", f"Pareto frontier of the candidates meeting the SLO: $/h vs "
                                  f"{metric}"),
                       ("pareto_infeasible", f"for reference, NOT meeting the SLO — the frontier "
                                             f"of the candidates that miss it: $/h vs {metric}")):
        front = df[df[col].astype(bool)] if col in df else df.iloc[:0]
        if col == "pareto_infeasible" and not len(front):
            continue
        cols = pareto_columns(df)
        p = Table(title=title, show_edge=False)
        for c in ("gpu", "tp", "mode", "replicas", *(c.removeprefix("knob.") for c in cols),
                  "$/h", metric, "attain.", "meets SLO"):
            p.add_column(c)
        if not len(front):
            p.add_row(*(["—"] * (8 + len(cols))))
        for _, r in front.sort_values(["usd_per_hour", metric]).iterrows():
            p.add_row(r["gpu"], str(r["tp"]), str(r.get("mode", "")), str(r["replicas"]),
                      *(str(r[c]) for c in cols), f"{r['usd_per_hour']:,.2f}",
                      _f(r[metric]), _f(r.get("slo.attainment"), pct=True),
                      "yes" if r["met"] else "no")
        con.print(p)
    for note in result.notes:
        con.print(f"note: {note}")
    con.print(f"[bold]answer:[/] {describe(result.best)}")
    if result.spec.search.disaggregation is None:
        con.print("disaggregated (xPyD) candidates: not searched (set search.disaggregation)")


def pareto_columns(df: pd.DataFrame) -> list[str]:
    """The knob columns (``knob.*``) whose value differs between simulated candidates: the ones
    that tell two frontier rows of the same GPU, TP, mode and replicas apart."""
    sim = df[df["status"] == "simulated"] if "status" in df else df
    return [c for c in df.columns if c.startswith("knob.")
            and sim[c].astype(str).nunique(dropna=False) > 1]


def _f(v: Any, nd: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.1%}" if pct else f"{v:,.{nd}f}"


def plan_command(
    spec: Annotated[Path, typer.Argument(help="Plan spec YAML (base scenario, slo, cost, search).")],
    out: Annotated[Path | None, typer.Option(help="Write plan.json, candidates.csv, pareto.png "
                                             "and the best run here (default: plans/<spec name>).")
                   ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print plan.json to stdout.")] = False,
) -> None:
    """Find the cheapest fleet that meets the SLO (and the cost-vs-latency Pareto frontier)."""
    try:
        s = load_plan_spec(spec)
        result = plan(s, spec.resolve().parent, name=s.name or spec.stem)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    out_dir = out or Path("plans") / spec.stem
    save_plan(result, out_dir)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print_plan(result)
        typer.echo(f"wrote {out_dir}/plan.json, candidates.csv, pareto.png; "
                   f"report: servesim report {out_dir} --out {out_dir / 'report.html'}")

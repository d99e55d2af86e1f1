"""``simulate(scenario) -> Results``: build, run, finalise, collect — in one place.

What this models: one what-if experiment, end to end. *Build* resolves the profiles, checks the model
fits (the same checks vLLM does at start-up, with a message saying what to change), sizes each
replica's KV cache and wires clients → gateway → router → replicas. *Run* advances the SimPy clock
until every request has ended, or the workload's duration or the safety limit is reached. *Finalise*
checks conservation (every request ended exactly once or is in flight). *Collect* turns the flat
records into DataFrames and the summary. The result records the resolved scenario, the seed, the
package version and the wall time.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from simulator import __version__, _native
from simulator.cluster.client import Clients, start_clients
from simulator.cluster.faults import start_faults
from simulator.cluster.fleet import Fleet, Pool
from simulator.cluster.spec import PoolConfig
from simulator.config import EngineConfig, Scenario
from simulator.cost import capacity_fns
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.scheduler import Scheduler, SchedulerConfig
from simulator.engine.step_time import RooflineStepTime, StepTimeModel
from simulator.errors import ConfigError
from simulator.metrics import names
from simulator.metrics.recorder import Recorder
from simulator.metrics.regime import regime_summary
from simulator.metrics.summary import counts_summary, fleet_summary, post_summary, summarize
from simulator.profiles import (
    Calibration,
    GpuProfile,
    find_calibration,
    load_gpu,
    load_model,
    memory_budget,
)
from simulator.results import Deployment, Results
from simulator.simenv import Environment
from simulator.workload.generator import build_traffic

# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def resolve_deployment(sc: Scenario) -> Deployment:
    """Profiles + engine arguments → the replica as vLLM would start it, or a one-line error."""
    model = load_model(sc.model.name)
    gpu = load_gpu(sc.fleet.gpu)
    eng = sc.engine
    tp = sc.fleet.tp
    wdt = sc.model.weight_dtype or model.native_dtype
    if wdt not in model.weight_dtypes:
        raise ConfigError(f"model.weight_dtype: {model.name} has no {wdt} weights; "
                          f"supported: {', '.join(model.weight_dtypes)}")
    kvdt = sc.model.kv_cache_dtype
    if kvdt == "auto":
        kvdt = "fp16" if model.native_dtype == "fp16" else "bf16"
    if kvdt not in model.kv_dtypes and kvdt != "bf16":
        raise ConfigError(f"model.kv_cache_dtype: {model.name} does not support a {kvdt} KV cache; "
                          f"supported: {', '.join(model.kv_dtypes)}")
    if tp > gpu.gpus_per_node:
        raise ConfigError(f"fleet.tp: {tp} exceeds the {gpu.gpus_per_node} GPUs of one "
                          f"{gpu.name} node (pipeline parallelism is not modelled); lower tp")
    if model.num_attention_heads % tp:
        raise ConfigError(f"fleet.tp: {model.name} has {model.num_attention_heads} attention heads, "
                          f"not divisible by tp={tp}; pick a tp that divides it")
    max_len = eng.max_model_len or model.max_position_embeddings
    if max_len > model.max_position_embeddings:
        raise ConfigError(f"engine.max_model_len: {max_len} exceeds {model.name}'s "
                          f"max_position_embeddings {model.max_position_embeddings}; lower it")
    if not eng.enable_chunked_prefill and eng.max_num_batched_tokens < max_len:
        raise ConfigError(f"engine.max_num_batched_tokens: {eng.max_num_batched_tokens} < "
                          f"max_model_len {max_len} with chunked prefill off (vLLM refuses this); "
                          f"raise it, lower engine.max_model_len, or enable chunked prefill")
    mem = memory_budget(model, gpu, tp=tp, weight_dtype=wdt, kv_dtype=kvdt,
                        gpu_memory_utilization=eng.gpu_memory_utilization,
                        block_size=eng.block_size,
                        max_num_batched_tokens=eng.max_num_batched_tokens,
                        max_num_seqs=eng.max_num_seqs, reserve_gib=eng.memory_reserve_gib)
    if mem.kv_cache_gib <= 0:
        need = mem.weights_gib * tp
        raise ConfigError(
            f"fleet.tp: {model.name} {wdt} needs {need:.1f} GiB of weights ({mem.weights_gib:.1f} "
            f"GiB per GPU at tp={tp}) plus {mem.activation_gib + mem.reserve_gib:.1f} GiB of "
            f"activations/reserve, but a {gpu.name} offers {mem.usable_gib:.1f} GiB at "
            f"gpu_memory_utilization {eng.gpu_memory_utilization}; raise tp, use a smaller "
            f"weight_dtype, or pick a bigger GPU")
    if mem.max_tokens < max_len:
        need_gib = max_len * mem.kv_bytes_per_token / 2**30
        raise ConfigError(
            f"engine.max_model_len: {max_len} needs {need_gib:.2f} GiB of KV cache per GPU but "
            f"only {mem.kv_cache_gib:.2f} GiB is left after weights on {gpu.name} at tp={tp} "
            f"(room for {mem.max_tokens} tokens); lower max_model_len to <= {mem.max_tokens} "
            f"or raise tp / gpu_memory_utilization")
    cal, source, regime = resolve_calibration(sc, gpu)
    if sc.step_time.backend != "roofline":
        regime = {}  # the other backends do not use the calibration's fitted regime
    return Deployment(model, gpu, tp, wdt, kvdt, max_len, mem, cal, source, regime)


def resolve_calibration(sc: Scenario, gpu: GpuProfile
                        ) -> tuple[Calibration, str, dict[str, Any]]:
    """(coefficients, where they came from, the step shapes their fit covered)."""
    choice = sc.step_time.calibration
    regime: dict[str, Any] = {}
    if choice == "prior":
        cal, source = Calibration(), "prior (uncalibrated defaults)"
    else:
        found = find_calibration(gpu.name, None if choice == "auto" else choice)
        if found is None and choice != "auto":
            from simulator.profiles import calibration_families

            fams = ", ".join(f"vllm-{f}" for f in calibration_families(gpu.name)) or "none"
            raise ConfigError(f"step_time.calibration: no calibration '{choice}' for {gpu.name}; "
                              f"its families: {fams} (or auto, prior, a calibration file's "
                              f"path; see `servesim profiles`)")
        if found is None:
            cal, source = Calibration(), "prior (no calibration file for this GPU)"
        else:
            cal = found.coefficients
            regime = dict(found.provenance.regime)
            # The file name and date; the method and data are in the file's provenance.
            source = f"{found.gpu}__vllm-{found.vllm_family} ({found.provenance.date})"
    if sc.step_time.overrides:
        cal = cal.model_copy(update=sc.step_time.overrides)
        try:
            cal = Calibration.model_validate(cal.model_dump())
        except ValidationError as e:
            err = e.errors()[0]
            name = ".".join(str(x) for x in err["loc"])
            raise ConfigError(f"step_time.overrides: with {source} they give {name} "
                              f"{err.get('input')!r}: {err['msg']}") from None
        source += f" + overrides {sorted(sc.step_time.overrides)}"
    return cal, source, regime


def build_step_time(sc: Scenario, dep: Deployment) -> StepTimeModel:
    """The step-time backend the scenario asks for: ``roofline`` (the calibrated physical model),
    ``table`` (the user's measured step times, interpolated; see
    :mod:`simulator.engine.step_time_table`) or ``aiconfigurator`` (NVIDIA's measured kernel
    database, optional package; see :mod:`simulator.engine.step_time_aic`)."""
    st = sc.step_time
    if st.backend == "table":
        from simulator.engine.step_time_table import TableStepTime

        if st.table_file is None:  # pragma: no cover - StepTimeConfig refuses this
            raise ConfigError("step_time.table_file: required by backend 'table'")
        path = Path(st.table_file)
        if not path.is_absolute() and sc.base_dir:
            path = Path(sc.base_dir) / path
        return TableStepTime.from_csv(path, interpolation=st.table_interpolation)
    if st.backend == "aiconfigurator":
        from simulator.engine.step_time_aic import AiconfiguratorStepTime

        return AiconfiguratorStepTime(
            model=dep.model.name, gpu=dep.gpu.name, tp=dep.tp, weight_dtype=dep.weight_dtype,
            kv_dtype=dep.kv_dtype, is_moe=dep.model.is_moe,
            calibration=dep.calibration if st.aiconfigurator_cpu_overhead else None,
            version=st.aiconfigurator_version)
    return RooflineStepTime(dep.model, dep.gpu, tp=dep.tp, weight_dtype=dep.weight_dtype,
                            kv_dtype=dep.kv_dtype, calibration=dep.calibration,
                            scheduler_steps=sc.engine.num_scheduler_steps)


@dataclass
class ResolvedPool:
    """One pool of the fleet, resolved: its config, the single-pool scenario it amounts to (its
    model, GPU, TP and engine) and its deployment."""

    config: PoolConfig
    scenario: Scenario
    deployment: Deployment


def effective_pools(sc: Scenario) -> list[PoolConfig]:
    """The pools that will run: ``fleet.pools``, or one pool ``default`` of ``fleet.replicas``;
    with ``fleet.aggregate`` each prefill pool and its decode pool merged into one mixed pool."""
    f = sc.fleet
    if not f.pools:
        return [PoolConfig(name="default", replicas=f.replicas)]
    if not f.aggregate:
        return list(f.pools)
    by_name = {p.name: p for p in f.pools}
    out = []
    for p in f.pools:
        if p.role == "decode":
            continue
        if p.role == "prefill":
            assert p.decode_pool is not None
            d = by_name[p.decode_pool]
            for attr in ("model", "weight_dtype", "kv_cache_dtype", "gpu", "tp", "region", "zone"):
                if getattr(p, attr) != getattr(d, attr):
                    raise ConfigError(
                        f"fleet.aggregate: prefill pool {p.name!r} and decode pool {d.name!r} "
                        f"differ in {attr} ({getattr(p, attr)} vs {getattr(d, attr)}); aggregation "
                        f"merges them into one pool of identical replicas — make them equal")
            p = p.model_copy(update={"role": "mixed", "decode_pool": None,
                                     "replicas": p.replicas + d.replicas})
        out.append(p)
    return out


def pool_scenario(sc: Scenario, p: PoolConfig, where: str) -> Scenario:
    """The single-pool scenario pool ``p`` amounts to (its model, GPU, TP and engine)."""
    same_model = p.model is None or p.model == sc.model.name
    model = sc.model.model_copy(update={
        "name": p.model or sc.model.name,
        "weight_dtype": p.weight_dtype if p.weight_dtype is not None
        else (sc.model.weight_dtype if same_model else None),
        "kv_cache_dtype": p.kv_cache_dtype or sc.model.kv_cache_dtype})
    engine = sc.engine
    if p.engine:
        try:
            engine = EngineConfig.model_validate({**sc.engine.model_dump(), **p.engine})
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ConfigError(f"{where}.engine{'.' + loc if loc else ''}: {err['msg']}") from None
    fleet = sc.fleet.model_copy(update={"gpu": p.gpu or sc.fleet.gpu, "tp": p.tp or sc.fleet.tp,
                                        "replicas": p.replicas, "pools": []})
    return sc.model_copy(update={"model": model, "engine": engine, "fleet": fleet})


def resolve_pools(sc: Scenario) -> list[ResolvedPool]:
    """One deployment per pool (the first pool's is the run's ``Results.deployment``)."""
    if not sc.fleet.pools:
        return [ResolvedPool(effective_pools(sc)[0], sc, resolve_deployment(sc))]
    out = []
    for i, p in enumerate(effective_pools(sc)):
        where = f"fleet.pools[{i}] ({p.name})"
        sub = pool_scenario(sc, p, where)
        try:
            dep = resolve_deployment(sub)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        out.append(ResolvedPool(p, sub, dep))
    return out


def build_fleet(sc: Scenario, env: Environment, rec: Recorder, pools: list[ResolvedPool],
                seed: np.random.SeedSequence) -> Fleet:
    """The pools' replicas behind the gateway and router."""
    fleet = Fleet(env, rec, sc.fleet, sc.gateway, np.random.default_rng(seed))
    fleet.fast_path = sc.sim.fast_path
    for rp in pools:
        pc, sub, d = rp.config, rp.scenario, rp.deployment
        e = sub.engine
        # NOTE: the replicas' decode fast path mirrors the V1 scheduler; a V0 pool takes every
        # step through the scheduler (same results, slower).
        fleet.fast_path = sc.sim.fast_path and e.scheduler == "v1"
        step_model = build_step_time(sub, d)
        sched_cfg = SchedulerConfig(
            max_num_seqs=e.max_num_seqs, max_num_batched_tokens=e.max_num_batched_tokens,
            max_model_len=d.max_model_len, enable_chunked_prefill=e.enable_chunked_prefill,
            long_prefill_token_threshold=e.long_prefill_token_threshold,
            policy=e.scheduling_policy, engine=e.scheduler,
            num_scheduler_steps=e.num_scheduler_steps)

        def make_scheduler(d: Deployment = d, e: EngineConfig = e,
                           cfg: SchedulerConfig = sched_cfg) -> Scheduler:
            kv = KVCacheManager(d.memory.num_blocks, e.block_size, e.enable_prefix_caching,
                                d.max_model_len)
            return Scheduler(cfg, kv)

        pool = Pool(name=pc.name, served=pc.served_model or d.model.name, model=d.model.name,
                    role=pc.role, region=pc.region, zone=pc.zone, gpu=d.gpu.name, tp=d.tp,
                    max_model_len=d.max_model_len,
                    kv_bytes_per_token=d.model.kv_bytes_per_token(d.kv_dtype, 1),
                    tenants=frozenset(pc.tenants) if pc.tenants is not None else None,
                    pin=dict(pc.pin), decode_name=pc.decode_pool, deployment=d,
                    weight=pc.weight, api_server=e.api_server)
        fleet.add_pool(pool, pc.replicas, make_scheduler, step_model)
    fleet.build()
    return fleet


# --------------------------------------------------------------------------------------------
# Simulate
# --------------------------------------------------------------------------------------------


RECORD_BUDGET_GIB = float(os.environ.get("SERVESIM_RECORD_BUDGET_GIB", "4"))
"""Memory the recorded rows of one run may take (gauge samples, step rows, inter-token gaps);
a run that would pass it is refused, naming the knob (``SERVESIM_RECORD_BUDGET_GIB`` moves it)."""
ROW_BYTES = {"samples": 48, "steps": 88, "itl": 16}
"""Bytes one recorded row takes (its numeric columns, 8 bytes each; a gap: value + owner)."""
MAX_CLIENTS = 1_000_000
"""Closed-loop clients of one run without a request cap (each is a SimPy process)."""


def _knob(kind: str) -> str:
    return {"samples": "raise metrics.sample_interval_s",
            "steps": "set metrics.record_steps: false",
            "itl": "set metrics.record_itl: false"}[kind]


def check_record_budget(sc: Scenario, replicas: int) -> None:
    """Refuse, before running, a run whose gauge samples alone could pass the budget (over the
    longest it may run: ``workload.duration_s`` or ``metrics.max_sim_time_s``)."""
    horizon = min(sc.workload.duration_s or sc.metrics.max_sim_time_s, sc.metrics.max_sim_time_s)
    rows = replicas * horizon / sc.metrics.sample_interval_s
    gib = rows * ROW_BYTES["samples"] / 2**30
    if gib > RECORD_BUDGET_GIB:
        raise ConfigError(
            f"metrics.sample_interval_s: {sc.metrics.sample_interval_s:g} s over {horizon:g} s "
            f"and {replicas} replicas records {rows:,.0f} gauge rows ({gib:,.1f} GiB), past the "
            f"{RECORD_BUDGET_GIB:g} GiB budget of recorded rows; raise sample_interval_s or "
            f"lower metrics.max_sim_time_s / workload.duration_s")


def _guarded(scraper: Any, rec: Recorder, every: int) -> Any:
    """The fleet's scraper, checking every ``every`` scrapes that the rows recorded so far stay
    inside the budget (a ConfigError ends the run otherwise). It adds no event of its own, so
    the run is the same event for event."""
    budget = RECORD_BUDGET_GIB * 2**30
    for n, ev in enumerate(scraper, start=1):
        yield ev
        if n % every == 0:
            # NOTE: read straight from the recorder's tables (their lengths, nothing copied)
            held = {"samples": len(rec._samples), "steps": len(rec._steps),
                    "itl": len(rec.itl_values)}
            used = sum(ROW_BYTES[k] * v for k, v in held.items())
            if used > budget:
                worst = max(held, key=lambda k: ROW_BYTES[k] * held[k])
                raise ConfigError(
                    f"the run's recorded rows passed the {RECORD_BUDGET_GIB:g} GiB budget at "
                    f"t = {rec_now(ev):,.0f} s ({held['samples']:,} gauge samples, "
                    f"{held['steps']:,} steps, {held['itl']:,} inter-token gaps); "
                    f"{_knob(worst)}, or lower metrics.max_sim_time_s / workload.num_requests")


def rec_now(ev: Any) -> float:
    return float(ev.env.now) if hasattr(ev, "env") else 0.0


def simulate(sc: Scenario, progress: Any = None, *, summaries: bool = True) -> Results:
    """Run one scenario and return its results. ``progress``: an object told when the run starts
    (``started(env, log, expected_requests, until_s)``; ``log.num_ended``: requests ended so far)
    and ends (``finished()``), e.g. :class:`simulator.report.progress.RunWatcher`; it only reads
    the run. ``summaries=False``: the frames only — the summary keeps its request counts, the
    measured window, ``sim`` and ``warnings``, not the latency, fleet, regime, tenant, SLO, cost
    and autoscaling figures (derived from the frames with pandas: ~25 ms a run, half of a small
    run's time; ``servesim validate`` reads the frames). Conservation is checked either way."""
    wall0 = time.perf_counter()
    pools = resolve_pools(sc)
    dep = pools[0].deployment
    eng = sc.engine
    # NOTE: a float clock from the start (SimPy's default is the int 0), so every time recorded
    # is a float, as the compiled engine (simulator._native) stores it anyway.
    env = Environment(initial_time=0.0)
    rec = Recorder(record_steps=sc.metrics.record_steps, record_itl=sc.metrics.record_itl)
    # One seed sequence, spawned per aspect: [0] workload, [1] fleet (random routing, client
    # regions), [2] clients (backoff jitter), [3] faults (MTBF).
    seeds = np.random.SeedSequence(sc.seed).spawn(4)
    fleet = build_fleet(sc, env, rec, pools, seeds[1])

    wl = sc.workload
    traffic = build_traffic(wl, seeds[0], eng.block_size, sc.base_dir, dep.max_model_len)
    for group in traffic.closed_loop:
        if group.limit is None and group.concurrency > MAX_CLIENTS:
            raise ConfigError(
                f"workload.arrival.concurrency: {group.concurrency:,} clients without a request "
                f"cap (each is a process); at most {MAX_CLIENTS:,}, or set num_requests (only as "
                f"many clients as requests are started)")
    n_replicas = sum(rp.config.replicas for rp in pools)
    check_record_budget(sc, max(n_replicas, 1))
    clients = Clients(env, fleet, sc.clients, np.random.default_rng(seeds[2]))
    start_clients(env, traffic, clients.submit, clients.fire)
    start_faults(env, fleet, sc.faults, np.random.default_rng(seeds[3]))
    # the budget is checked at least every 10 simulated seconds
    env.process(_guarded(fleet.scraper(sc.metrics.sample_interval_s), rec,
                         max(1, int(10.0 / sc.metrics.sample_interval_s))))
    autoscaling = None
    if sc.autoscaling is not None:
        from simulator.cluster.autoscale_spec import ProvisioningConfig
        from simulator.cluster.autoscaler import start_autoscaling

        # NOTE: a fifth child of the same seed sequence (spawned children are prefix-stable, so
        # the first four streams are unchanged): node acquisition delays and stock-outs.
        prov_seed = np.random.SeedSequence(sc.seed).spawn(5)[4]
        autoscaling = start_autoscaling(env, fleet, sc.autoscaling,
                                         sc.provisioning or ProvisioningConfig(),
                                         np.random.default_rng(prov_seed))

    # Run until every request has ended, the duration is over, or the safety limit.
    stop = env.event()
    fleet.stop_when_ended(traffic.expected_requests, stop)
    limit = min(wl.duration_s or np.inf, sc.metrics.max_sim_time_s)
    # NOTE: what exists now (profiles, the fleet, imported modules) lives through the run: frozen,
    # the cyclic garbage collector's full passes skip it (S2: ~10 % of the run was such passes).
    # Unfrozen after, so nothing frozen outlives the run (a notebook runs many).
    gc.freeze()
    if progress is not None:
        progress.started(env, fleet.log, traffic.expected_requests, limit)
    try:
        env.run(until=env.any_of([stop, env.timeout(limit)]))
    finally:
        gc.unfreeze()
        if progress is not None:
            progress.finished()
    end = env.now

    # Finalise and collect.
    for rep in fleet.replicas:
        rep.sync()  # a decode run in progress (fast path): apply its deferred per-request state
    fleet.log.check_conservation()
    requests, steps, samples, itl, attempts = fleet.log.collect()  # the recorder's rows are freed
    preempt = sum(r.num_preemptions for r in fleet.replicas)
    queries = sum(r.prefix_queries for r in fleet.replicas)
    hits = sum(r.prefix_hits for r in fleet.replicas)
    busy = [r.busy_time for r in fleet.replicas]
    busy_frac = (sum(busy) / (len(busy) * end)) if end > 0 else 0.0
    if autoscaling is not None:
        # Replicas come and go: busy time over the replica-seconds held (billed, not-ready time
        # included), so the cost block's idle dollars count loading GPUs as idle.
        lives = rec.replica_frame(end)
        held = float((lives["end_s"] - lives["start_s"]).sum())
        busy_frac = sum(busy) / held if held > 0 else 0.0
    sim = {"seed": sc.seed, "wall_s": time.perf_counter() - wall0, "sim_time_s": end,
           "version": __version__, "steps": rec.num_steps, "events": env.num_events,
           "fast_path_steps": sum(r.fast_steps for r in fleet.replicas),
           "run_ahead_steps": sum(r.ahead_steps for r in fleet.replicas),
           "run_ahead_finishes": sum(r.ahead_finishes for r in fleet.replicas),
           "replica_busy_frac": busy_frac, "native": _native.status()["reason"]}
    counts = fleet.log.counts()
    arrived = counts.get("arrived", sum(counts[o] for o in names.OUTCOMES))
    if arrived == 0:
        raise ConfigError(
            f"no request arrived in the {end:g} simulated s (workload.duration_s / "
            f"metrics.max_sim_time_s): the arrival process (workload.arrival: its rate, a trace's "
            f"rate_scale, time_scale or start_s/end_s window) sends its first request later; "
            f"raise the rate or the time limit")
    # The measured window: metrics.warmup_s, or later where a client's warm-up phase ended.
    warmup_s = max(sc.metrics.warmup_s, traffic.measure_from_s)
    replicas = rec.replica_frame(end)
    if summaries:
        summary = summarize(requests, steps, samples, itl, counts=counts,
                            warmup_s=warmup_s, end_s=end, preemptions=preempt,
                            prefix_queries=queries, prefix_hits=hits, sim=sim)
        # ---- fleet figures (issue 4): the outcome `failed` joins the request identity
        # arrived = completed + rejected + timed_out + failed + in_flight; attempts, reasons, pools.
        fleet_extra = fleet.extra_summary()
        fleet_extra["retries_denied_by_budget"] = clients.retries_denied
        summary["fleet"] = fleet_summary(requests, attempts, replicas, warmup_s, fleet_extra)
        summary["deployment"] = dep.describe()
        summary["regime"] = regime_summary(
            samples, calibration=dep.calibration_source, regime=dep.calibration_regime,
            tp=dep.tp, max_num_batched_tokens=sc.engine.max_num_batched_tokens,
            max_model_len=dep.max_model_len)
    else:
        summary = counts_summary(requests, counts=counts, warmup_s=warmup_s, end_s=end, sim=sim)
    summary["requests"]["failed"] = counts[names.FAILED]
    summary["scenario"] = sc.name
    summary["sim"]["wall_s"] = time.perf_counter() - wall0
    # requests the workload would still have sent when the run stopped (a trace's rows past
    # max_sim_time_s, a capped stream's tail): counted, and said
    expected = traffic.expected_requests
    summary["requests"]["not_sent"] = max(0, expected - arrived) if expected is not None else 0
    summary["warnings"] = run_warnings(summary, counts, end, sc)
    res = Results(sc, dep, requests, steps, samples, itl, summary,
                  extra={"attempts": attempts, "replicas": replicas,
                         "deployments": {rp.config.name: rp.deployment for rp in pools},
                         "gpu_time": pd.DataFrame.from_records(
                             fleet.gpu_time(), columns=["replica", "pool", "busy_s", "prefill_s"]),
                         "capacity": capacity_fns(fleet.pools)})
    if not summaries:
        return res
    # ---- planner figures (issue 7): per-tenant breakdown, SLO attainment/goodput, cost --------
    res.summary.update(post_summary(res))
    # ---- autoscaling (issue 5): fleet time series and the autoscaling block --------------------
    if autoscaling is not None:
        ts = autoscaling.timeseries(requests, attempts, replicas, sc.cost, end)
        res.extra["fleet_timeseries"] = ts
        res.summary["autoscaling"] = autoscaling.summary(ts, end)
    return res


def run_warnings(summary: dict[str, Any], counts: dict[str, int], end: float,
                 sc: Scenario) -> list[str]:
    """What a run's numbers may hide, one line each (printed by ``servesim run`` and kept in
    summary.json's ``warnings``)."""
    out: list[str] = []
    arrived = counts.get("arrived", sum(counts[o] for o in names.OUTCOMES))
    if counts.get(names.COMPLETED, 0) == 0:
        out.append(f"no request completed ({arrived:,} arrived in {end:g} simulated s: "
                   f"{counts.get(names.REJECTED, 0):,} rejected, "
                   f"{counts.get(names.TIMED_OUT, 0):,} timed out, "
                   f"{counts.get(names.FAILED, 0):,} failed, "
                   f"{counts.get(names.IN_FLIGHT, 0):,} in flight); latency figures are empty "
                   f"and the cost buys nothing")
    not_sent = summary["requests"].get("not_sent", 0)
    if not_sent:
        out.append(f"{not_sent:,} requests of the workload were not sent: the run stopped at "
                   f"{end:g} s (metrics.max_sim_time_s {sc.metrics.max_sim_time_s:g} / "
                   f"workload.duration_s); raise the limit to replay them")
    return out


def simulate_replications(sc: Scenario, k: int) -> list[Results]:
    """Run ``sc`` with seeds seed, seed+1, …, seed+k−1 (for prediction intervals:
    :func:`simulator.metrics.summary.interval_summary`)."""
    if k < 1:
        raise ConfigError(f"--replications: {k}; need at least 1")
    return [simulate(sc.model_copy(update={"seed": sc.seed + i})) for i in range(k)]

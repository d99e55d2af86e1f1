"""Faults and health: what breaks, when, and how long the fleet takes to notice.

What this models:

- **crash** of one replica at a given time (process crash, GPU Xid error, node failure), optionally
  back after a repair time with empty caches;
- **random crashes**: each replica fails after exponential times with a given MTBF (the scenario's
  seeded generator), and is repaired after ``repair_s``;
- **spot preemption**: a notice, during which the router stops sending new requests to the replica
  (``drain_on_notice``) while its in-flight requests continue; then the instance is gone;
  optionally a replacement serves after ``replace_after_s``;
- **zone loss**: every replica of every pool in an availability zone dies at once;
- **health checks**: a prober hits every replica each ``interval_s``; after ``failure_threshold``
  consecutive failures the router stops routing there, after ``success_threshold`` good probes a
  recovered replica is routable again. Until then the router keeps sending to a dead replica, which
  answers 502 at once — the detection delay — unless its circuit breaker ejects it first
  (:mod:`simulator.cluster.router`).

Requests on a replica when it dies fail with 502 (:meth:`Fleet.crash_replica`: the fleet's
bookkeeping of its attempts) and follow their client's retry policy. A replica's return
(:func:`restore_replica`) and the health checks' verdicts (:func:`set_healthy`) are here. The whole
module runs only when the scenario has faults (``faults.events`` or ``faults.mtbf``).

Leaves out: partial failures (slow or flaky replicas), network partitions between gateway and
replicas, the cold start of a replacement (the autoscaling issue models provisioning and loading).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simulator.cluster.fleet import Fleet, Pool
from simulator.cluster.replica import Replica
from simulator.cluster.spec import (
    CrashFault,
    FaultsConfig,
    MtbfConfig,
    SpotPreemption,
    ZoneLoss,
)
from simulator.errors import ConfigError
from simulator.metrics import names
from simulator.simenv import Environment


def _replica(fleet: Fleet, pool: str | None, index: int, where: str) -> Replica:
    pools = {p.name: p for p in fleet.pools}
    p: Pool = pools[pool] if pool is not None and pool in pools else fleet.pools[0]
    if pool is not None and pool not in pools:
        raise ConfigError(f"{where}.pool: no pool {pool!r}; pools: {sorted(pools)}")
    if index >= len(p.replicas):
        raise ConfigError(f"{where}.replica: pool {p.name!r} has {len(p.replicas)} replicas "
                          f"(indices 0..{len(p.replicas) - 1}); got {index}")
    return p.replicas[index]


def start_faults(env: Environment, fleet: Fleet, cfg: FaultsConfig,
                 rng: np.random.Generator) -> None:
    """Start the fault and health-check processes the scenario asks for (none without faults)."""
    if not cfg.any:
        return
    for i, ev in enumerate(cfg.events):
        where = f"faults.events[{i}]"
        if isinstance(ev, CrashFault):
            rep = _replica(fleet, ev.pool, ev.replica, where)
            env.process(_crash(env, fleet, rep, ev.at_s, ev.recover_after_s, names.END_CRASH))
        elif isinstance(ev, SpotPreemption):
            rep = _replica(fleet, ev.pool, ev.replica, where)
            env.process(_spot(env, fleet, rep, ev, cfg.drain_on_notice))
        elif isinstance(ev, ZoneLoss):
            reps = [r for p in fleet.pools if p.zone == ev.zone for r in p.replicas]
            if not reps:
                zones = sorted({p.zone for p in fleet.pools})
                raise ConfigError(f"{where}.zone: no pool in zone {ev.zone!r}; zones: {zones}")
            for rep in reps:
                env.process(_crash(env, fleet, rep, ev.at_s, ev.duration_s, names.END_ZONE))
    if cfg.mtbf is not None:
        known = {p.name for p in fleet.pools}
        unknown = sorted(set(cfg.mtbf.pools or []) - known)
        if unknown:
            raise ConfigError(f"faults.mtbf.pools: no pool(s) {unknown}; pools: {sorted(known)}")
        env.process(_mtbf(env, fleet, cfg.mtbf, rng))
    env.process(health_checker(env, fleet, cfg.health.interval_s, cfg.health.failure_threshold,
                               cfg.health.success_threshold))


def _crash(env: Environment, fleet: Fleet, rep: Replica, at_s: float,
           back_after: float | None, reason: str) -> Generator[simpy.Event, Any, None]:
    if at_s > env.now:
        yield env.timeout(at_s - env.now)
    fleet.crash_replica(rep, reason)
    if back_after is not None:
        yield env.timeout(back_after)
        restore_replica(fleet, rep)


def _spot(env: Environment, fleet: Fleet, rep: Replica, ev: SpotPreemption,
          drain: bool) -> Generator[simpy.Event, Any, None]:
    if ev.at_s > env.now:
        yield env.timeout(ev.at_s - env.now)
    if drain:
        fleet.drain_replica(rep)
    yield env.timeout(ev.notice_s)
    fleet.crash_replica(rep, names.END_PREEMPTED)
    if ev.replace_after_s is not None:
        yield env.timeout(ev.replace_after_s)
        restore_replica(fleet, rep)


def _mtbf(env: Environment, fleet: Fleet, cfg: MtbfConfig,
          rng: np.random.Generator) -> Generator[simpy.Event, Any, None]:
    """One process drawing every replica's next failure (keeps the random stream in one order)."""
    reps = [r for p in fleet.pools if cfg.pools is None or p.name in cfg.pools for r in p.replicas]
    next_fail = {r.id: float(rng.exponential(cfg.mean_s)) for r in reps}
    back_at: dict[int, float] = {}
    by_id = {r.id: r for r in reps}
    while next_fail or back_at:
        t_fail = min(next_fail.values(), default=np.inf)
        t_back = min(back_at.values(), default=np.inf)
        t = min(t_fail, t_back)
        if t > env.now:
            yield env.timeout(t - env.now)
        if t_back <= t_fail:
            rid = min(back_at, key=back_at.__getitem__)
            del back_at[rid]
            restore_replica(fleet, by_id[rid])
            next_fail[rid] = env.now + float(rng.exponential(cfg.mean_s))
        else:
            rid = min(next_fail, key=next_fail.__getitem__)
            del next_fail[rid]
            fleet.crash_replica(by_id[rid], names.END_CRASH)
            if cfg.repair_s is not None:
                back_at[rid] = env.now + cfg.repair_s


def health_checker(env: Environment, fleet: Fleet, interval_s: float, failures: int,
                   successes: int) -> Generator[simpy.Event, Any, None]:
    """Probe every replica each ``interval_s``; flip the router's view after enough probes."""
    # NOTE: keyed by replica id, not sized once: an autoscaler adds replicas during the run.
    bad: dict[int, int] = {}
    good: dict[int, int] = {}
    while True:
        yield env.timeout(interval_s)
        for rep in fleet.replicas:
            st = fleet.states[rep.id]
            if rep.alive:
                bad[rep.id] = 0
                good[rep.id] = good.get(rep.id, 0) + 1
                if not st.healthy and good[rep.id] >= successes:
                    set_healthy(fleet, rep, True)
            else:
                good[rep.id] = 0
                bad[rep.id] = bad.get(rep.id, 0) + 1
                if st.healthy and bad[rep.id] >= failures:
                    set_healthy(fleet, rep, False)


def restore_replica(fleet: Fleet, rep: Replica) -> None:
    """``rep`` is back with empty caches (health checks decide when it gets traffic)."""
    if rep.alive:
        return
    rep.restart()
    st = fleet.states[rep.id]
    st.draining = False
    st.consecutive_failures = 0
    fleet.replica_up(rep)


def set_healthy(fleet: Fleet, rep: Replica, healthy: bool) -> None:
    """The health checks changed their mind about ``rep``. NOTE: a replica found healthy again
    is also un-ejected by the circuit breaker (Envoy's default,
    ``successful_active_health_check_uneject_host``)."""
    st = fleet.states[rep.id]
    st.healthy = healthy
    if healthy:
        st.ejected_until = -math.inf
        st.consecutive_failures = 0
        fleet.released(st)

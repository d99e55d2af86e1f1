"""The serving path around the replicas: pools, gateway, router, KV links, and each attempt's way
through them.

What this models: a fleet of one or more *pools* of vLLM replicas (several models, several regions,
prefill/decode roles) behind one gateway and one router, and the bookkeeping a real front end keeps.
An attempt (one try of a client request, :mod:`simulator.cluster.request`) goes:

1. client → its region's gateway: half the client's round trip, plus the gateway's latency;
2. gateway (:mod:`simulator.cluster.gateway`): API key → tenant (401), validation against the target
   model's ``max_model_len`` (400), rate limits, quota and load shedding (429);
3. router (:mod:`simulator.cluster.router`): served model (tenant routes, graceful-degradation
   fallback), replica group (every pool of the model in the client's region first, other regions
   on spill-over), replica (policy, balancing by load across pools). All saturated: held in the
   group's fair queue or shed (429); nothing routable: 503. A group in another region adds half
   the inter-region round trip each way;
4. replica: a dead one answers 502 at once (until health checks or the circuit breaker take it out of
   rotation); a live one schedules it. Disaggregated: the prefill replica computes the prompt, the
   decode replica reserves blocks, the KV cache crosses the link (:mod:`simulator.cluster.disagg`),
   then it decodes;
5. the response travels back (half the round trip[s]); the attempt ends for its client.

The client (:mod:`simulator.cluster.client`) may give up on an attempt (:meth:`Fleet.cancel`): the
server aborts it wherever it is and frees its KV blocks. A lost replica (:meth:`Fleet.crash_replica`:
a fault, or a scale-down that ran out of drain time) fails every attempt on it with 502; when it
comes back and when the health checks route to it again is :mod:`simulator.cluster.faults`'
business. The gauge scrape into the recorder (every ``sample_interval_s``) is
:mod:`simulator.metrics.scrape`; the router's own, possibly stale, scrape (every
``metrics_staleness_s``) is routing and stays here.

Why this is one module of ~780 lines: it is the one class every stage of an attempt passes
through — gateway, router, dispatch, the P/D hand-off, the return trip, cancellation and the
failure of a lost replica — and each of those moves the same bookkeeping (the attempt's stage,
the router's outstanding counts and circuit breaker, the fair queues, the request log) in step.
Split across modules, every piece would reach into that shared state; what does not move it
(faults' timing, health checks, the gauge scrape, the P/D link) lives elsewhere already.

Leaves out: the gateway and router as machines (one instance each, no CPU or connection limits of
their own), network bandwidth between client and gateway (latency only), streaming back-pressure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from simulator.cluster.disagg import Link
from simulator.cluster.gateway import FairQueue, Gateway, validate
from simulator.cluster.ledger import RequestLog
from simulator.cluster.replica import Replica
from simulator.cluster.request import Attempt, ClientRequest, Stage
from simulator.cluster.router import (
    ROUTERS,
    Group,
    LeastKv,
    ReplicaState,
    routing_changed,
    waiting_per_replica,
)
from simulator.cluster.spec import (
    APIServerConfig,
    FleetConfig,
    GatewayConfig,
    RegionConfig,
)
from simulator.engine.request import Request, RequestStatus
from simulator.engine.scheduler import Scheduler
from simulator.engine.step_time import StepTimeModel
from simulator.errors import ConfigError
from simulator.metrics import names
from simulator.metrics.recorder import Recorder
from simulator.metrics.scrape import replica_gauges
from simulator.simenv import Environment
from simulator.workload.generator import RequestSpec

_HOLDING = (Stage.DISPATCHED, Stage.ENGINE, Stage.PENDING_DECODE, Stage.TRANSFER)
"""Stages in which an attempt counts as outstanding on ``att.replica``."""


@dataclass(eq=False)
class Pool:
    """A pool at run time."""

    name: str
    served: str
    model: str
    role: str
    region: str
    zone: str
    gpu: str
    tp: int
    max_model_len: int
    kv_bytes_per_token: int
    """KV bytes per token of the whole model (all TP ranks): what a KV transfer moves."""
    tenants: frozenset[str] | None
    """Dedicated pool: only these tenants (None = any)."""
    pin: dict[str, list[int]]
    """Tenant → indices of the replicas holding its adapter."""
    decode_name: str | None = None
    """Prefill pools: the name of their decode pool."""
    weight: float = 1.0
    """Routing weight (relative capacity) of its replicas."""
    deployment: Any = None
    replicas: list[Replica] = field(default_factory=list)
    make_scheduler: Callable[[], Scheduler] | None = None
    """Builds a replica's scheduler (kept for replicas added at run time)."""
    step_time: StepTimeModel | None = None
    """The pool's step-time model (kept for replicas added at run time)."""
    decode: Pool | None = None
    group: Group | None = None
    api_server: APIServerConfig | None = None
    """The API server in front of each replica's engine core (None: none)."""


class Fleet:
    """Pools of replicas behind one gateway and one router; moves attempts along the serving path.

    Built by :func:`simulator.run.build_fleet` (``add_pool`` per pool, then ``build``); driven by the
    clients (``submit`` or ``fire`` / ``new_request`` + ``send`` / ``cancel`` / ``finish``), the
    replicas (``on_finish``), the faults (:mod:`simulator.cluster.faults`: ``crash_replica``,
    ``drain_replica``, and through ``replica_up`` / ``released`` a replica's return and health) and
    the scale-down (``drain_replica``, ``is_drained``, ``crash_replica``, ``retire_replica``)."""

    def __init__(self, env: Environment, recorder: Recorder, cfg: FleetConfig,
                 gateway: GatewayConfig, rng: np.random.Generator) -> None:
        self.env = env
        self.recorder = recorder
        self.log = RequestLog(recorder)
        """Client requests and attempts in flight, their endings and conservation."""
        self.cfg = cfg
        self.rcfg = cfg.router
        self.rng = rng
        self.gateway = Gateway(gateway, self.fleet_waiting)
        self.gateway_latency = gateway.latency_s
        self.gcfg = gateway
        self.regions: list[RegionConfig] = list(cfg.regions) or [RegionConfig(name="default")]
        self._region_p = np.array([r.client_share for r in self.regions], dtype=float)
        self._region_p /= self._region_p.sum()
        self._session_region: dict[int, str] = {}
        self._rtt = {r.name: r.client_rtt_s for r in self.regions}
        self.pools: list[Pool] = []
        self.replicas: list[Replica] = []
        self.states: list[ReplicaState] = []
        self.groups: list[Group] = []
        self._order: dict[tuple[str, str], list[Group]] = {}
        self._max_len: dict[str, int] = {}
        self._default_served = ""
        self._degrade = {d.primary: d for d in cfg.degrade}
        self._att: dict[int, Attempt] = {}
        self._links: dict[int, Link] = {}
        self._next_cid = 0
        self._next_eid = 0
        self._target: int | None = None
        self._stop: simpy.Event | None = None
        self.live_gauges = self.rcfg.metrics_staleness_s == 0
        # NOTE: the settings read per request, kept as typed fields (the configs are frozen
        # pydantic models: each read of one is a generic attribute lookup from compiled code).
        self._max_out: int | None = self.rcfg.max_outstanding_per_replica
        self._spill: float | None = cfg.spill_when_waiting_per_replica
        self._output_cap = self.rcfg.output_cap
        self._inter_rtt: float = cfg.inter_region_rtt_s
        self.transfer_s: list[float] = []
        self.ejections = 0
        self._scraped_waiting = 0
        self._retired: set[int] = set()
        """Replicas removed by the autoscaler (no longer sampled)."""
        self.hold_when_empty: set[Group] = set()
        """Groups whose requests wait in the router queue while they have no routable replica
        (an autoscaled pool at zero or still loading) instead of getting 503."""
        self.ttft_obs: list[tuple[float, str, float]] | None = None
        """(time, pool, TTFT) of completed attempts, for the autoscaler's TTFT histogram (None: off)."""
        self.gen_tokens: dict[int, int] = {}
        """Replica id → output tokens of its completed attempts (with ``ttft_obs`` on)."""
        self.fast_path = True
        """Replicas use the decode fast path (``sim.fast_path``; set before ``add_pool``)."""

    # ---- build ---------------------------------------------------------------------------------
    def add_pool(self, pool: Pool, replicas: int, make_scheduler: Callable[[], Scheduler],
                 step_time: StepTimeModel) -> Pool:
        """Create ``replicas`` replicas of ``pool``."""
        self.pools.append(pool)
        self.recorder.pool_models[pool.name] = pool.served
        model = getattr(pool.deployment, "model", None)
        self.recorder.pool_hidden_tokens[pool.name] = getattr(model, "hidden_output_tokens", 0)
        pool.make_scheduler, pool.step_time = make_scheduler, step_time
        for _ in range(replicas):
            self.replica_up(self.new_replica(pool))
        return pool

    def new_replica(self, pool: Pool) -> Replica:
        """Build one more replica of ``pool`` (at build time, or when an autoscaled replica
        becomes ready). It is routable once its pool's group includes it (``build``, or
        :meth:`attach_replica`)."""
        assert pool.make_scheduler is not None and pool.step_time is not None
        rep = Replica(self.env, len(self.replicas), pool.make_scheduler, pool.step_time,
                      self.recorder, self.on_finish, pool=pool, index=len(pool.replicas),
                      role=pool.role, fast_path=self.fast_path, api_server=pool.api_server)
        pool.replicas.append(rep)
        self.replicas.append(rep)
        self.states.append(ReplicaState(rep, rep.id, weight=pool.weight))
        return rep

    def attach_replica(self, rep: Replica) -> None:
        """A replica added at run time joins its pool's router group and takes held requests."""
        st = self.states[rep.id]
        g = rep.pool.group
        if g is not None and g not in st.groups:
            g.states.append(st)
            st.groups.append(g)
            routing_changed()
        st.scrape()
        self.released(st)

    def is_drained(self, rep: Replica) -> bool:
        """No attempt is on ``rep`` or pulling KV from it."""
        if self.states[rep.id].outstanding:
            return False
        return not any(a.replica is rep or a.src is rep for a in self._att.values())

    def retire_replica(self, rep: Replica) -> None:
        """Remove a drained replica (scale-down): its engine stops, the router forgets it. The
        caller ends its lifetime row."""
        st = self.states[rep.id]
        for g in st.groups:
            if st in g.states:
                g.states.remove(st)
        st.groups.clear()
        routing_changed()
        st.draining = True
        if rep.alive:
            rep.crash()
        self._retired.add(rep.id)

    def replica_up(self, rep: Replica) -> None:
        """Record that ``rep`` serves from now (at build, when added, or back after a fault)."""
        p = rep.pool
        self.recorder.replica_up(rep.id, p.name, p.model, p.gpu, p.tp, p.region, p.zone,
                                 self.env._now)

    def build(self) -> None:
        """Wire pools into router groups once every pool is added."""
        by_name = {p.name: p for p in self.pools}
        front = [p for p in self.pools if p.role != "decode"]
        self._default_served = front[0].served
        served_models = list(dict.fromkeys(p.served for p in front))
        for p in front:
            self._max_len.setdefault(p.served, p.max_model_len)
        for p in self.pools:
            if p.role == "prefill" and p.decode_name is not None:
                p.decode = by_name[p.decode_name]
        if self.cfg.region_aware and self.cfg.pool_preference == "order":
            for p in self.pools:
                p.group = self._group(p.name, p.served, p.region, [p])
        elif self.cfg.region_aware:
            # NOTE: every ready replica of a served model in a region is a candidate (a Service's
            # endpoints), whatever its pool, GPU or zone: one group per (served model, region).
            for name in served_models:
                for region in dict.fromkeys(p.region for p in front if p.served == name):
                    members = [p for p in front if p.served == name and p.region == region]
                    key = members[0].name if len(members) == 1 else f"{name}@{region}"
                    g = self._group(key, name, region, members)
                    for p in members:
                        p.group = g
            for p in self.pools:
                if p.role == "decode":
                    p.group = self._group(p.name, p.served, p.region, [p])
        else:
            for name in served_models:
                g = self._group(name, name, "*", [p for p in front if p.served == name])
                for p in front:
                    if p.served == name:
                        p.group = g
            for p in self.pools:
                if p.role == "decode":
                    p.group = self._group(p.name, p.served, p.region, [p])
        for served in served_models:
            for region in self._rtt:
                gs: list[Group] = []
                for p in front:
                    if p.served == served and p.group is not None and p.group not in gs:
                        gs.append(p.group)
                local = [g for g in gs if g.region in (region, "*")]
                self._order[(served, region)] = local + [g for g in gs if g not in local]
        for p in front:
            own = p.group
            assert own is not None
            own.siblings = [x.group for x in front if x.served == p.served
                            and x.group is not own and x.group is not None]
        for d in self._degrade.values():
            for m in (d.primary, d.fallback):
                if m not in self._max_len:
                    raise ConfigError(f"fleet.degrade: no pool serves {m!r}; served models: "
                                     f"{sorted(self._max_len)}")
        for t, m in self.cfg.routes.items():
            if m not in self._max_len:
                raise ConfigError(f"fleet.routes[{t!r}]: no pool serves {m!r}; served models: "
                                 f"{sorted(self._max_len)}")
        if self._needs_scrape() and not self.live_gauges:
            self.env.process(self._router_scrape(self.rcfg.metrics_staleness_s))

    def _group(self, key: str, served: str, region: str, pools: list[Pool]) -> Group:
        states = [self.states[r.id] for p in pools for r in p.replicas]
        rc = self.rcfg
        policy = ROUTERS[rc.kind](states, rng=self.rng, prefix_blocks=rc.prefix_blocks,
                                  prefix_skip_blocks=(-1 if rc.prefix_skip_blocks == "auto"
                                                      else int(rc.prefix_skip_blocks)),
                                  load_bound=rc.load_bound, virtual_nodes=rc.virtual_nodes,
                                  weighted=any(p.weight != 1.0 for p in pools))
        pinned: dict[str, frozenset[int]] = {}
        for p in pools:
            for t, idx in p.pin.items():
                pinned[t] = pinned.get(t, frozenset()) | frozenset(p.replicas[i].id for i in idx)
        queue = FairQueue(self.gcfg.fairness, lambda t: self.gcfg.policy(t).weight,
                          self.gcfg.vtc_input_weight, self.gcfg.vtc_output_weight)
        g = Group(key, served, region, states, policy, queue, pinned)
        for s in states:
            s.groups.append(g)
        self.groups.append(g)
        return g

    def _needs_scrape(self) -> bool:
        rc = self.rcfg
        return (rc.kind == "least_kv" or rc.output_cap is not None or bool(self._degrade)
                or self.gcfg.shed_when_waiting is not None
                or self.cfg.spill_when_waiting_per_replica is not None)

    def _router_scrape(self, period: float) -> Generator[simpy.Event, Any, None]:
        states = self.states
        while True:
            for s in states:
                s.scrape()
            self._scraped_waiting = sum(s.num_waiting for s in states)
            yield self.env.timeout(period)

    def _live(self, cands: list[ReplicaState]) -> None:
        if self.live_gauges:
            for s in cands:
                s.scrape()

    # ---- run control ---------------------------------------------------------------------------
    def stop_when_ended(self, target: int | None, stop: simpy.Event) -> None:
        """Trigger ``stop`` once ``target`` client requests have ended (None: never)."""
        self._target, self._stop = target, stop

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.env.timeout(delay).callbacks.append(lambda _e: fn(*args))

    # ---- client side ---------------------------------------------------------------------------
    def submit(self, spec: RequestSpec) -> simpy.Event:
        """Send a request with no client policy (no timeout, no retry): the event fires with the
        ClientRequest when it has ended."""
        creq = self.new_request(spec, auto=True)
        self.send(creq)
        assert creq.done is not None
        return creq.done

    def fire(self, spec: RequestSpec) -> None:
        """:meth:`submit` for a request no one waits for (an open-loop source): no event fires
        when it ends."""
        self.send(self.new_request(spec, auto=True, wait=False))

    def new_request(self, spec: RequestSpec, auto: bool, wait: bool = True) -> ClientRequest:
        """A new client request (``wait``: someone will wait for its ``done`` event)."""
        env = self.env
        if len(self.regions) == 1:
            region = self.regions[0].name
        else:
            sid = spec.session_id
            got = self._session_region.get(sid) if sid is not None else None
            if got is None:
                got = self.regions[int(self.rng.choice(len(self.regions), p=self._region_p))].name
                if sid is not None:
                    self._session_region[sid] = got
            region = got
        creq = ClientRequest(self._next_cid, spec, env._now, region,
                             env.event() if wait else None, auto)
        self._next_cid += 1
        self.log.arrived(creq)
        return creq

    def send(self, creq: ClientRequest) -> Attempt:
        """Start one attempt of ``creq``."""
        env = self.env
        spec = creq.spec
        req = Request(self._next_eid, spec.prompt_len, spec.output_len, env._now, spec.priority,
                      spec.prefix_hashes)
        self._next_eid += 1
        att = Attempt(creq, len(creq.attempts), req, env._now, spec.tenant, spec.output_len)
        creq.attempts.append(att)
        self.log.attempt(att)
        if not creq.auto:
            att.done = env.event()
        att.back_s = self._rtt[creq.region] / 2
        delay = att.back_s + self.gateway_latency
        if delay > 0:
            self._later(delay, self._at_gateway, att)
        else:
            self._at_gateway(att)
        return att

    def finish(self, creq: ClientRequest, outcome: str, reason: str) -> None:
        """The client stops trying: record the request's end (that of its last attempt)."""
        self.log.end(creq, outcome, reason, self.env._now)
        if self._target is not None and self.log.num_ended >= self._target \
                and self._stop is not None and not self._stop.triggered:
            self._stop.succeed()
        if creq.done is not None:
            creq.done.succeed(creq)

    def cancel(self, att: Attempt, reason: str = names.R_TIMEOUT) -> None:
        """The client gave up on ``att``: abort it wherever it is and free what it holds."""
        stage = att.stage
        if stage == Stage.ENDED:
            return
        req = att.req
        if stage == Stage.QUEUED:
            att.group.queue.discard(att)
        elif stage in (Stage.ENGINE, Stage.PENDING_DECODE):
            assert att.replica is not None
            att.replica.abort(req)
            self._att.pop(req.request_id, None)
        elif stage == Stage.TRANSFER:
            assert att.src is not None and att.replica is not None
            self._link(att.src).cancel(att.transfer)
            att.replica.drop_reserved(req)
            self._att.pop(req.request_id, None)
        if stage != Stage.RETURNING:
            self._release(att, names.TIMED_OUT)
            self.gateway.settle(att, self.env._now)
        att.stage = Stage.ENDED
        req.status = RequestStatus.FINISHED
        self.log.attempt_end(att, names.TIMED_OUT, reason, self.env._now)

    # ---- gateway and router --------------------------------------------------------------------
    def _at_gateway(self, att: Attempt) -> None:
        if att.stage == Stage.ENDED:
            return  # the client gave up on the way in
        spec = att.creq.spec
        gw = self.gateway
        tenant = gw.resolve_tenant(spec.tenant, spec.api_key)
        if tenant is None:
            self._server_end(att, names.REJECTED, names.R_UNAUTHORIZED)
            return
        att.tenant = tenant
        req = att.req
        req.priority = gw.priority(tenant, spec.priority)
        served = self.cfg.routes.get(tenant, self._default_served)
        reason = validate(req, self._max_len[served])
        if reason is None:
            reason = gw.admit(att, self.env._now)
        if reason is not None:
            self._server_end(att, names.REJECTED, reason)
            return
        self._route(att, served)

    def _route(self, att: Attempt, served: str) -> None:
        st, g, _ = self._pick(att, served)
        if st is not None:
            assert g is not None
            self._maybe_cap(att, g)
            self._dispatch(att, st, g)
            return
        if g is not None:  # every replica saturated
            rc = self.rcfg
            if rc.when_saturated == "shed":
                self._server_end(att, names.REJECTED, names.R_SATURATED)
            elif rc.max_queue is not None and len(g.queue) >= rc.max_queue:
                self._server_end(att, names.REJECTED, names.R_QUEUE_FULL)
            else:
                att.stage = Stage.QUEUED
                att.group = g
                g.queue.push(att)
            return
        self._server_end(att, names.REJECTED, names.R_NO_REPLICA)

    def _pick(self, att: Attempt, served: str) -> tuple[ReplicaState | None, Group | None, str]:
        st, g, why = self._pick_in(att, served)
        rule = self._degrade.get(served)
        if rule is not None and (st is None or self._overloaded(att, served,
                                                                rule.when_waiting_per_replica)):
            fb = rule.fallback
            if att.req.prompt_len + att.req.max_tokens <= self._max_len[fb]:
                st2, g2, _ = self._pick_in(att, fb)
                if st2 is not None:
                    return st2, g2, ""
        return st, g, why

    def _overloaded(self, att: Attempt, served: str, threshold: float) -> bool:
        now = self.env._now
        for g in self._order[(served, att.creq.region)]:
            cands = g.candidates(att.tenant, now)
            if not cands:
                continue
            self._live(cands)
            if waiting_per_replica(cands) < threshold:
                return False
        return True

    def _pick_in(self, att: Attempt, served: str,
                 ) -> tuple[ReplicaState | None, Group | None, str]:
        now = self.env._now
        order = self._order[(served, att.creq.region)]
        max_out = self._max_out
        spill = self._spill
        sat: Group | None = None
        spilled: tuple[Group, list[ReplicaState]] | None = None
        last = order[-1]
        for g in order:
            cands = g.candidates(att.tenant, now)
            if not cands:
                if sat is None and self.hold_when_empty and g in self.hold_when_empty:
                    sat = g  # autoscaled pool with nothing ready yet: hold, do not 503
                continue
            free = cands if max_out is None else [s for s in cands if s.outstanding < max_out]
            if not free:
                if sat is None:
                    sat = g
                continue
            if spill is not None and g is not last:
                self._live(cands)
                if waiting_per_replica(cands) >= spill:
                    if spilled is None:
                        spilled = (g, free)
                    continue
            return self._choose(g, att, free), g, ""
        if spilled is not None:
            return self._choose(spilled[0], att, spilled[1]), spilled[0], ""
        if sat is not None:
            return None, sat, "saturated"
        return None, None, "unavailable"

    def _choose(self, g: Group, att: Attempt, free: list[ReplicaState]) -> ReplicaState:
        if self.live_gauges and isinstance(g.policy, LeastKv):
            self._live(free)
        return g.policy.choose(att.req, free)

    def _maybe_cap(self, att: Attempt, g: Group) -> None:
        cap = self._output_cap
        if cap is None or att.max_tokens <= cap.max_tokens:
            return
        cands = g.candidates(att.tenant, self.env._now)
        self._live(cands)
        if waiting_per_replica(cands) >= cap.when_waiting_per_replica:
            att.max_tokens = att.req.max_tokens = cap.max_tokens
            att.capped = True

    def fleet_waiting(self) -> int:
        """Waiting requests as the gateway sees them: scraped gauges plus the router's queues."""
        if self.live_gauges:
            self._live(self.states)
            self._scraped_waiting = sum(s.num_waiting for s in self.states)
        return self._scraped_waiting + sum(len(g.queue) for g in self.groups)

    def _dispatch(self, att: Attempt, st: ReplicaState, g: Group) -> None:
        st.outstanding += 1
        rep = st.replica
        pool: Pool = rep.pool
        att.group = g
        att.replica = rep
        att.replica_id = rep.id
        att.pool = pool.name
        g.queue.dispatched(att.tenant, att.req.prompt_len)
        if pool.region != att.creq.region and self._inter_rtt > 0:
            half = self._inter_rtt / 2
            att.back_s += half
            att.stage = Stage.DISPATCHED
            self._later(half, self._arrive, att)
        else:
            att.stage = Stage.DISPATCHED
            self._arrive(att)

    def _arrive(self, att: Attempt) -> None:
        if att.stage == Stage.ENDED:
            return
        rep = att.replica
        assert rep is not None
        if not rep.alive:
            self._server_end(att, names.FAILED, names.R_UNREACHABLE)
            return
        att.stage = Stage.ENGINE
        req = att.req
        self._att[req.request_id] = att
        if rep.role == "prefill":
            req.max_tokens = 1
        rep.submit(req)

    def _drain(self, g: Group) -> None:
        """Dispatch held requests while the group has room: its own first, then its siblings'
        (the same model in other regions), oldest queue first."""
        if g.draining or not (len(g.queue) or (
                g.siblings and any(len(x.queue) for x in g.siblings))):
            return
        g.draining = True
        try:
            now = self.env._now
            max_out = self.rcfg.max_outstanding_per_replica
            while True:
                q = g.queue if len(g.queue) else next(
                    (x.queue for x in g.siblings if len(x.queue)), None)
                if q is None:
                    break
                att = q.pop()
                if att is None:
                    break
                cands = g.candidates(att.tenant, now)
                if not cands and self.hold_when_empty and g in self.hold_when_empty:
                    q.push_front(att)  # still nothing ready: keep holding
                    break
                if not cands:
                    if q is g.queue:  # the group lost its replicas: route it afresh
                        att.stage = Stage.INBOUND
                        self._route(att, g.served)
                        continue
                    q.push_front(att)  # not for this group (pinning, dedicated pool)
                    break
                free = cands if max_out is None else [s for s in cands if s.outstanding < max_out]
                if not free:
                    q.push_front(att)
                    break
                self._maybe_cap(att, g)
                self._dispatch(att, self._choose(g, att, free), g)
        finally:
            g.draining = False

    # ---- replica side --------------------------------------------------------------------------
    def on_finish(self, req: Request, rep: Replica) -> None:
        """A replica finished ``req`` (called from its engine loop)."""
        if rep.role == "prefill":
            self._to_decode(self._att[req.request_id], rep)
            return
        att = self._att.pop(req.request_id)
        self._server_end(att, names.COMPLETED, "")

    def _to_decode(self, att: Attempt, prefill: Replica) -> None:
        req = att.req
        self._release(att, names.COMPLETED)
        req.max_tokens = att.max_tokens
        req.num_output_tokens = 0
        req.finish_time = -1.0
        req.status = RequestStatus.WAITING
        dpool = prefill.pool.decode
        g = dpool.group
        cands = g.candidates(att.tenant, self.env._now)
        if not cands:
            self._att.pop(req.request_id, None)
            att.stage = Stage.INBOUND
            self._server_end(att, names.REJECTED, names.R_NO_REPLICA)
            return
        st = self._choose(g, att, cands)
        st.outstanding += 1
        dst = st.replica
        att.replica = dst
        att.replica_id = dst.id
        att.pool = dpool.name
        att.src = prefill
        if not dst.alive:
            att.stage = Stage.DISPATCHED
            self._att.pop(req.request_id, None)
            self._server_end(att, names.FAILED, names.R_UNREACHABLE)
            return
        att.stage = Stage.PENDING_DECODE
        t0 = self.env._now
        dst.admit_remote(req, lambda r: self._start_transfer(att, t0))

    def _link(self, src: Replica) -> Link:
        key = src.id if self.cfg.kv_transfer.shared == "prefill_replica" else -1
        link = self._links.get(key)
        if link is None:
            kt = self.cfg.kv_transfer
            link = self._links[key] = Link(self.env, kt.bandwidth_gb_s * 1e9, kt.latency_s)
        return link

    def _start_transfer(self, att: Attempt, t0: float) -> None:
        att.stage = Stage.TRANSFER
        src = att.src
        assert src is not None
        nbytes = att.req.prompt_len * src.pool.kv_bytes_per_token
        start = self.env._now
        att.transfer = self._link(src).start(nbytes, lambda: self._transfer_done(att, start))

    def _transfer_done(self, att: Attempt, start: float) -> None:
        if att.stage != Stage.TRANSFER:
            return
        self.transfer_s.append(self.env._now - start)
        att.transfer = None
        att.src = None
        att.stage = Stage.ENGINE
        assert att.replica is not None
        att.replica.start_decoding(att.req)

    def _release(self, att: Attempt, outcome: str, blame: bool = True) -> None:
        """The attempt no longer counts against its replica: update the router's counts and
        circuit breaker (``blame``: the failure was that replica's), and let held requests in."""
        if att.stage not in _HOLDING or att.replica is None:
            return
        st = self.states[att.replica.id]
        st.outstanding -= 1
        if outcome == names.FAILED and blame:
            st.consecutive_failures += 1
            eject = self.rcfg.eject_after_failures
            if eject is not None and st.consecutive_failures >= eject \
                    and self.env._now >= st.ejected_until:
                st.ejected_until = self.env._now + self.rcfg.ejection_s
                st.consecutive_failures = 0
                self.ejections += 1
                self._later(self.rcfg.ejection_s, self.released, st)
        elif outcome == names.COMPLETED:
            st.consecutive_failures = 0
        self.released(st)

    def released(self, st: ReplicaState) -> None:
        """``st`` may have room again: let held requests of its groups in."""
        for g in st.groups:
            self._drain(g)

    def _server_end(self, att: Attempt, outcome: str, reason: str, blame: bool = True) -> None:
        """The serving side is done with the attempt; its answer travels back to the client."""
        self._release(att, outcome, blame)
        now = self.env._now
        self.gateway.settle(att, now)
        if outcome == names.COMPLETED and att.group is not None:
            att.group.queue.served(att.tenant, att.req.num_output_tokens)
        if self.ttft_obs is not None and outcome == names.COMPLETED and att.replica is not None:
            req = att.req
            if req.first_token_time >= 0:
                self.ttft_obs.append((now, att.pool, req.first_token_time - req.arrival_time))
            rid = att.replica.id
            self.gen_tokens[rid] = self.gen_tokens.get(rid, 0) + req.num_output_tokens
        if att.back_s > 0:
            att.stage = Stage.RETURNING
            self._later(att.back_s, self._deliver, att, outcome, reason)
        else:
            self._deliver(att, outcome, reason)

    def _deliver(self, att: Attempt, outcome: str, reason: str) -> None:
        if att.stage == Stage.ENDED:
            return  # the client gave up meanwhile
        att.stage = Stage.ENDED
        self.log.attempt_end(att, outcome, reason, self.env._now)
        creq = att.creq
        if creq.auto:
            self.finish(creq, outcome, reason)
        else:
            assert att.done is not None
            att.done.succeed(att)

    # ---- lost replicas ---------------------------------------------------------------------------
    def crash_replica(self, rep: Replica, reason: str = names.END_CRASH) -> None:
        """``rep`` dies now: every attempt on it (or pulling KV from it) fails with 502."""
        if not rep.alive:
            return
        rep.crash()
        self.recorder.replica_down(rep.id, self.env._now, reason)
        victims = [a for a in self._att.values() if a.replica is rep or a.src is rep]
        for a in victims:
            if a.stage == Stage.TRANSFER:
                assert a.src is not None and a.replica is not None
                self._link(a.src).cancel(a.transfer)
                if a.replica is not rep:  # the source died: the decode side lets go
                    a.replica.drop_reserved(a.req)
            elif a.stage == Stage.PENDING_DECODE and a.replica is not rep:
                assert a.replica is not None
                a.replica.abort(a.req)
            self._att.pop(a.req.request_id, None)
            a.req.status = RequestStatus.FINISHED
            self._server_end(a, names.FAILED, names.R_CRASHED, blame=a.replica is rep)

    def drain_replica(self, rep: Replica) -> None:
        """Stop routing new requests to ``rep`` (spot notice); in-flight ones continue."""
        self.states[rep.id].draining = True

    # ---- gauges ----------------------------------------------------------------------------------
    def scraper(self, interval: float) -> Generator[simpy.Event, Any, None]:
        """The gauge scrape of every replica into the recorder (:mod:`simulator.metrics.scrape`)."""
        return replica_gauges(self.env, self.recorder.sample, self.replicas, self.states,
                              self._retired, interval)

    def gpu_time(self) -> list[tuple[int, str, float, float]]:
        """(replica, pool, seconds in engine steps, of which on prefill tokens) of every replica
        that ever ran (for the cost split and the utilisation)."""
        return [(r.id, r.pool.name, r.busy_time, r.prefill_time) for r in self.replicas]

    def extra_summary(self) -> dict[str, Any]:
        """Fleet figures only the fleet knows (merged into summary["fleet"])."""
        out: dict[str, Any] = {
            "router_queue_max": max((g.queue.max_len for g in self.groups), default=0),
            "ejections": self.ejections,
        }
        if self._links:
            ts = np.array(self.transfer_s) if self.transfer_s else np.array([math.nan])
            out["kv_transfer"] = {
                "transfers": len(self.transfer_s),
                "gb": sum(lk.bytes_sent for lk in self._links.values()) / 1e9,
                "mean_ms": float(np.nanmean(ts) * 1000) if self.transfer_s else None,
                "p99_ms": float(np.percentile(ts, 99) * 1000) if self.transfer_s else None,
            }
        return out

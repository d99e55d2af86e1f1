"""The fleet's router: which replica group, then which replica, gets a request.

What this models: an LLM-aware load balancer (llm-d's endpoint picker, the vLLM production-stack
router, AIBrix, an Envoy with outlier detection). It sees what a real one sees:

- its **own counts** of requests it has sent to each replica and not yet seen answered (exact);
- **gauges scraped** from the replicas every ``metrics_staleness_s`` (``num_requests_waiting``,
  ``kv_cache_usage_perc``) — stale between scrapes, never read from the engines directly
  (``metrics_staleness_s: 0`` reads them live, as an oracle for comparison);
- **health** from active health checks (:mod:`simulator.cluster.faults`) and its own **circuit
  breaker**: after ``eject_after_failures`` consecutive 5xx from a replica it ejects it for
  ``ejection_s``.

Replicas are grouped as a real router's endpoint set is: every ready replica of a served model in
one region is one group (a Kubernetes Service, a Gateway API ``InferencePool``, the vLLM
production-stack router's endpoints of a model), whatever pool, GPU, zone or price it comes from —
so an H100 pool, an H200 pool and a spot pool of one model all take traffic, balanced by load.
Regions stay apart: with region-aware routing there is one group per served model and region, and
the router tries the client's region first, then the others (spill-over); without it one group per
served model spans every region. ``fleet.pool_preference: order`` keeps one group per pool instead
(pools of a region tried in the order listed: fill the first, e.g. reserved capacity, and spill to
the next only when it is saturated or over ``spill_when_waiting_per_replica``). For a request the
router tries the groups in order, skipping groups with no routable replica, or whose replicas are
all saturated, or (with a spill threshold) overloaded. Within a group a *policy* picks the replica;
the load-aware ones (``least_outstanding``, ``power_of_two``, the fallback of ``prefix_affinity``)
divide by a pool's routing ``weight`` when weights are set (Envoy's weighted least-request:
the largest weight / (outstanding + 1) wins), so a replica of twice the capacity gets about twice
the requests in flight. Policies are small objects behind one ``Protocol``, chosen through one
mapping, :data:`ROUTERS`. When every replica is saturated the fleet queues the request at the router
or sheds it (:mod:`simulator.cluster.fleet`).

Leaves out: routing on the decode length, KV-event streams from the engines (llm-d's precise prefix
index), LoRA adapter loading/eviction (pinning is static).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simulator.engine.request import Request

if TYPE_CHECKING:
    from simulator.cluster.replica import Replica

_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fixed, platform-independent integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


_EPOCH = [0]
"""Bumped whenever a replica's routability (health, draining, ejection) or a group's membership
changes: cached candidate lists (:meth:`Group.candidates`) are valid within one epoch."""


def routing_changed() -> None:
    """A group's replicas changed (a replica attached or retired): drop cached candidates."""
    _EPOCH[0] += 1


class ReplicaState:
    """The router's view of one replica."""

    __slots__ = ("_draining", "_ejected_until", "_healthy", "consecutive_failures", "groups",
                 "id", "kv_usage", "num_waiting", "outstanding", "replica", "weight")

    def __init__(self, replica: Replica, id: int, outstanding: int = 0, num_waiting: int = 0,
                 kv_usage: float = 0.0, healthy: bool = True, draining: bool = False,
                 ejected_until: float = -math.inf, consecutive_failures: int = 0,
                 groups: list[Group] | None = None, weight: float = 1.0) -> None:
        self.replica = replica
        self.id = id
        """Global replica id."""
        self.outstanding = outstanding
        """Requests the router sent there and has not seen answered."""
        self.num_waiting = num_waiting
        """Scraped ``num_requests_waiting``."""
        self.kv_usage = kv_usage
        """Scraped ``kv_cache_usage_perc``."""
        self._healthy = healthy
        self._draining = draining
        self._ejected_until = ejected_until
        self.consecutive_failures = consecutive_failures
        self.groups: list[Group] = [] if groups is None else groups
        self.weight = weight
        """Routing weight: the relative capacity of its pool (``fleet.pools[].weight``)."""
        _EPOCH[0] += 1

    @property
    def healthy(self) -> bool:
        """As the health checks last concluded."""
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._healthy = value
        _EPOCH[0] += 1

    @property
    def draining(self) -> bool:
        """Told to go away (spot notice, scale-down): no new requests."""
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        _EPOCH[0] += 1

    @property
    def ejected_until(self) -> float:
        """Circuit breaker: no traffic before this time."""
        return self._ejected_until

    @ejected_until.setter
    def ejected_until(self, value: float) -> None:
        self._ejected_until = value
        _EPOCH[0] += 1

    def scrape(self) -> None:
        rep = self.replica
        if rep.alive:  # a dead replica's endpoint does not answer: keep the last values
            self.num_waiting = rep.num_waiting
            self.kv_usage = rep.kv_usage


class Policy(Protocol):
    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        """One of ``cands`` (non-empty, in group order) for ``req``."""
        ...


class RoundRobin:
    """Cycle through the replicas in order."""

    def __init__(self, states: Sequence[ReplicaState], **_: Any) -> None:
        self._next = 0

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        i = self._next % len(cands)
        self._next = i + 1
        return cands[i]


class Random:
    """Uniformly at random (the scenario's seeded generator)."""

    def __init__(self, states: Sequence[ReplicaState], rng: np.random.Generator, **_: Any) -> None:
        self.rng = rng

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        return cands[int(self.rng.integers(len(cands)))] if len(cands) > 1 else cands[0]


def _lighter(b: ReplicaState, a: ReplicaState) -> bool:
    """``b`` is less loaded than ``a`` for its capacity: weight / (outstanding + 1) is larger
    (Envoy's weighted least-request with ``active_request_bias`` 1)."""
    return b.weight * (a.outstanding + 1) > a.weight * (b.outstanding + 1)


class PowerOfTwo:
    """Sample two distinct replicas, take the one with fewer outstanding requests (per unit of
    routing weight when weights are set)."""

    def __init__(self, states: Sequence[ReplicaState], rng: np.random.Generator,
                 weighted: bool = False, **_: Any) -> None:
        self.rng = rng
        self.weighted = weighted

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        n = len(cands)
        if n == 1:
            return cands[0]
        i, j = self.rng.choice(n, size=2, replace=False)
        a, b = cands[int(i)], cands[int(j)]
        if self.weighted:
            return b if _lighter(b, a) else a
        return b if b.outstanding < a.outstanding else a


class LeastOutstanding:
    """Fewest requests in flight (as the router counts them); ties go to the lowest index. With
    routing weights: the largest weight / (outstanding + 1)."""

    def __init__(self, states: Sequence[ReplicaState] = (), weighted: bool = False,
                 **_: Any) -> None:
        self.weighted = weighted

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        best = cands[0]
        if self.weighted:
            for s in cands:
                if _lighter(s, best):
                    best = s
            return best
        for s in cands:
            if s.outstanding < best.outstanding:
                best = s
        return best


class LeastKv:
    """Lowest scraped KV-cache usage; ties by outstanding requests, then index."""

    def __init__(self, states: Sequence[ReplicaState] = (), **_: Any) -> None:
        pass

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        return min(cands, key=lambda s: (s.kv_usage, s.outstanding))


AUTO_SKIP_MAX_BLOCKS = 4096
"""``prefix_skip_blocks: auto`` looks at most this many leading blocks (64k tokens at 16)."""


class PrefixAffinity:
    """Consistent hashing of the leading shared prefix blocks with bounded loads.

    Each replica owns ``virtual_nodes`` points on a 64-bit ring. A request's key is the hash of its
    first ``prefix_blocks`` shared prefix blocks after ``prefix_skip_blocks`` (a document, the first
    turn of its conversation — the same for every later turn); ``prefix_skip_blocks`` < 0 is
    ``auto``: skip the leading blocks every request routed so far has carried (a system prompt
    shared by all — Mooncake's first 512-token block — would otherwise give every request the same
    key), learned as the running longest common prefix from the second request on;
    the router walks the ring clockwise from the key and takes the first replica whose outstanding
    count is below ⌈load_bound × (total outstanding + 1) / replicas⌉ (Mirrokni et al., "Consistent
    hashing with bounded loads"), so requests sharing a prefix meet the same KV cache until that
    replica is loaded. A request with no shared prefix there goes to the least-outstanding replica.
    NOTE: a fixed-length key is the price of hashing (a prefix tree of what was routed where would
    match longer prefixes, as SGLang's cache-aware router does).
    """

    def __init__(self, states: Sequence[ReplicaState], prefix_blocks: int = 4,
                 load_bound: float = 1.25, virtual_nodes: int = 64, prefix_skip_blocks: int = 0,
                 rng: Any = None, weighted: bool = False) -> None:
        # NOTE: no ``**kwargs`` after defaults here (the router table passes ``rng`` to every
        # policy): mypyc cannot compile that signature (see simulator._native).
        self.k = prefix_blocks
        self.auto = prefix_skip_blocks < 0
        self.skip = max(prefix_skip_blocks, 0)
        self.common: list[int] = []
        """``auto``: the leading prefix blocks every request seen so far shares."""
        self.seen = 0
        self.c = load_bound
        ring = sorted((mix64((s.id << 16) ^ v), s.id) for s in states for v in range(virtual_nodes))
        self.points = [p for p, _ in ring]
        self.owners = [o for _, o in ring]
        self.fallback = LeastOutstanding(weighted=weighted)

    def _learn(self, hashes: Sequence[int]) -> None:
        """``auto``: shorten the common prefix to what this request shares with it."""
        self.seen += 1
        if self.seen == 1:
            self.common = list(hashes[:AUTO_SKIP_MAX_BLOCKS])
            return
        c = self.common
        n = min(len(c), len(hashes))
        i = 0
        while i < n and c[i] == hashes[i]:
            i += 1
        if i < len(c):
            del c[i:]
        # NOTE: one request alone shares everything with itself: the skip applies from the
        # second request on.
        self.skip = len(c)

    def key(self, req: Request) -> int | None:
        if self.auto:
            self._learn(req.prefix_hashes)
        h = req.prefix_hashes[self.skip: self.skip + self.k]
        if not h:
            return None
        x = 0
        for b in h:
            x = mix64(x ^ (b & _MASK))
        return x

    def choose(self, req: Request, cands: Sequence[ReplicaState]) -> ReplicaState:
        key = self.key(req)
        if key is None or len(cands) == 1:
            return self.fallback.choose(req, cands)
        by_id = {s.id: s for s in cands}
        total = sum(s.outstanding for s in cands)
        cap = math.ceil(self.c * (total + 1) / len(cands))
        n = len(self.points)
        start = bisect.bisect_left(self.points, key)
        owners = self.owners
        for k in range(n):
            s = by_id.get(owners[(start + k) % n])
            if s is not None and s.outstanding < cap:
                return s
        return self.fallback.choose(req, cands)


ROUTERS: dict[str, type[RoundRobin] | type[Random] | type[PowerOfTwo] | type[LeastOutstanding]
              | type[LeastKv] | type[PrefixAffinity]] = {
    "round_robin": RoundRobin,
    "random": Random,
    "power_of_two": PowerOfTwo,
    "least_outstanding": LeastOutstanding,
    "least_kv": LeastKv,
    "prefix_affinity": PrefixAffinity,
}
"""Policy name (``fleet.router.kind``) → class."""


@dataclass(eq=False)
class Group:
    """Replicas the router balances over with one policy: a served model's pools in one region (or
    in every region), or one pool (``fleet.pool_preference: order``, decode pools)."""

    key: str
    served: str
    region: str
    """Region of its replicas ("*" for a cross-region group)."""
    states: list[ReplicaState]
    policy: Policy
    queue: Any = None
    """Requests held while every replica is saturated (a gateway FairQueue)."""
    pinned: dict[str, frozenset[int]] = field(default_factory=dict)
    """Tenant → replica ids holding its adapter."""
    draining: bool = False
    """Re-entrancy guard of the fleet's queue drain."""
    siblings: list[Group] = field(default_factory=list)
    """Other groups of the same served model: when this one has room and its own queue is empty,
    it takes their held requests (spill-over from the queue)."""
    _cache: dict[str, tuple[int, int, float, float, list[ReplicaState]]] = field(
        default_factory=dict)
    """Tenant → (epoch, replicas in the group, from, until, candidates): valid in that epoch from
    ``from`` until ``until`` (the next end of an ejection)."""

    def candidates(self, tenant: str, now: float) -> list[ReplicaState]:
        """Replicas the router may send ``tenant``'s request to now (not counting saturation).
        The list is shared between calls: do not modify it."""
        hit = self._cache.get(tenant)
        states = self.states
        if hit is not None and hit[0] == _EPOCH[0] and hit[1] == len(states) \
                and hit[2] <= now < hit[3]:
            return hit[4]
        pin = self.pinned.get(tenant) if self.pinned else None
        out = []
        until = math.inf
        for s in states:
            if s.healthy and not s.draining and (pin is None or s.id in pin) \
                    and (s.replica.pool.tenants is None or tenant in s.replica.pool.tenants):
                if now >= s.ejected_until:
                    out.append(s)
                elif s.ejected_until < until:
                    until = s.ejected_until
        self._cache[tenant] = (_EPOCH[0], len(states), now, until, out)
        return out


def waiting_per_replica(cands: Sequence[ReplicaState]) -> float:
    return sum(s.num_waiting for s in cands) / len(cands) if cands else math.inf

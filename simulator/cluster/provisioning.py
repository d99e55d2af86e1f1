"""The cold start of a vLLM replica, and the replica set an autoscaler resizes.

What this models: what happens between "the autoscaler wants one more replica" and "the router
sends it traffic", stage by stage, each a delay of its own (:class:`ColdStart` timings):

1. **node acquisition** from the cloud: a lognormal delay; the provider may have a capacity limit
   (``node_capacity``: above it the request waits until a node is released) and may be out of stock
   (``stockout_probability``: the attempt fails, is retried after ``stockout_retry_s``). Nothing is
   billed until a node is acquired; from then on it is (``Recorder.replica_acquired``);
2. **image pull** (size / node bandwidth, then extraction), cached per node: the next replica on
   the same node skips it;
3. **weight fetch** from shared storage whose total bandwidth is *shared* among all replicas
   fetching at once (processor sharing, :class:`SharedStorage`: N concurrent loads each get 1/N,
   re-evaluated whenever a load starts or ends, optionally capped per load). This is what turns a
   scale-up into a cold-start cascade: the more replicas are requested, the longer each takes;
4. **load into GPU memory**, **torch.compile**, **CUDA-graph capture**, **warm-up**, and the
   **readiness probe** delay — then the replica joins its router group.

A *warm pool* keeps replicas loaded but asleep (vLLM sleep mode: the GPUs are held and billed, the
weights wait in CPU memory); a scale-up wakes them in ``wake_s`` seconds, and the pool is refilled
through the full pipeline. *Scale-down* drains: the router stops sending new requests, in-flight
ones finish (up to ``drain_timeout_s``), then the replica goes back to sleep (if the warm pool is
short) or is released — its bill ends.

:class:`ReplicaSet` is one pool's set of replicas as a Kubernetes Deployment controller keeps it:
``scale_to(n)`` wakes sleepers first, then starts cold starts; scaling down cancels replicas that
are not ready yet (newest first) before draining ready ones (newest first), as a ReplicaSet picks
pods to delete.

Defaults for the 8B and 70B size classes come from published figures (/work/shared/FACTS.md; source
next to each in :data:`CLASS_DEFAULTS`); every one is overridable in ``provisioning:``.

Leaves out: the cluster autoscaler's node scale-down delay (a node is released the moment it is
empty), image pulls competing for bandwidth, lazy-pull snapshotters (set a higher pull bandwidth),
faults during a cold start, and the cold start of a replica recovering from a fault (faults keep
their own repair times).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from simulator.cluster.autoscale_spec import ProvisioningConfig
from simulator.simenv import Environment

if TYPE_CHECKING:
    from simulator.cluster.fleet import Fleet, Pool
    from simulator.cluster.replica import Replica

END_SCALE_DOWN = "scale_down"
"""``end_reason`` of a replica lifetime ended by the autoscaler."""
END_CANCELLED = "scale_down_before_ready"
"""``end_reason`` of a replica released before it became ready."""

CLASS_DEFAULTS: dict[str, dict[str, float | None]] = {
    "8b": {
        "node_acquire_mean_s": 120.0,  # "minutes" (FACTS.md: node provisioning, seeds); assumption
        "image_gb": 5.2,  # 8B image ≈ 20 GB = CUDA 2.8 + torch 1.4 + libs 1 + weights 15 (BentoML)
        "image_pull_gb_s": 0.06,  # naive pull of 20 GB in 5–6 min (BentoML blog 2025)
        "image_extract_gb_s": 0.095,  # extraction of 20 GB in 3–4 min (BentoML blog 2025)
        "storage_gb_s": 1.25,  # a 10 Gb/s shared NFS / object-store gateway; assumption, override
        "per_load_gb_s": None,
        "load_s": 48.0,  # Llama-3-8B safetensors from a GP3 SSD (Run:ai/NVIDIA blog)
        "compile_s": 19.0,  # torch.compile 8B cold (vLLM PR #11005, #16848)
        "cuda_graph_s": 13.5,  # CUDA-graph capture 8B 10–17 s (vLLM PR #11005, #20264)
        "warmup_s": 5.0,  # dummy requests / profiling run; assumption
        "readiness_delay_s": 10.0,  # Kubernetes readiness probe periodSeconds default 10 s
        "wake_s": 2.9,  # wake from sleep mode, Qwen3-30B-A3B TP1 (vLLM blog, sleep mode 2025-10-26)
    },
    "70b": {
        "node_acquire_mean_s": 120.0,  # as 8b
        "image_gb": 5.2,  # as 8b (the image without weights does not grow with the model)
        "image_pull_gb_s": 0.06,
        "image_extract_gb_s": 0.095,
        "storage_gb_s": 1.25,  # Llama-2-70B download + init 4 m 25 s from object storage (Anyscale)
        "per_load_gb_s": None,
        "load_s": 84.0,  # Llama-2-70B with standard loaders (ServerlessLLM, OSDI'24)
        "compile_s": 85.0,  # torch.compile 70B-FP8 TP8 cold (vLLM #19824)
        "cuda_graph_s": 60.0,  # CUDA-graph capture 70B TP8 (vLLM #19824)
        "warmup_s": 5.0,
        "readiness_delay_s": 10.0,
        "wake_s": 5.3,  # wake from sleep mode, Qwen3-235B-FP8 TP4 (vLLM blog, sleep mode)
    },
}
"""Size-class defaults of :class:`ProvisioningConfig` (``None`` fields there)."""

# Replica-set slot states.
ACQUIRING, PULLING, FETCHING, LOADING, COMPILING, GRAPHS, WARMING, READINESS = (
    "acquiring", "pulling", "fetching", "loading", "compiling", "cuda_graphs", "warming",
    "readiness")
WAKING, READY, SLEEPING, DRAINING, GONE = "waking", "ready", "sleeping", "draining", "gone"
NOT_READY = frozenset({ACQUIRING, PULLING, FETCHING, LOADING, COMPILING, GRAPHS, WARMING, READINESS,
                       WAKING})
"""States of a replica that counts towards the desired count but takes no traffic yet."""


@dataclass(frozen=True)
class ColdStart:
    """Resolved cold-start timings of one pool (seconds, GB, GB/s)."""

    node_acquire_mean_s: float
    node_acquire_cv: float
    image_gb: float
    image_pull_gb_s: float
    image_extract_gb_s: float
    weights_gb: float
    weights_on_node: bool
    cache_weights: bool
    load_s: float
    compile_s: float
    cuda_graph_s: float
    warmup_s: float
    readiness_delay_s: float
    wake_s: float

    def describe(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def size_class(params_b: float, cfg: ProvisioningConfig) -> str:
    if cfg.size_class != "auto":
        return cfg.size_class
    return "70b" if params_b > 20 else "8b"


def resolve(cfg: ProvisioningConfig, params_b: float, weights_gb: float,
            wake_s: float | None = None) -> ColdStart:
    """``cfg`` with its ``None`` fields filled from the size class of a ``params_b`` model whose
    checkpoint is ``weights_gb``."""
    d = CLASS_DEFAULTS[size_class(params_b, cfg)]

    def get(name: str) -> float:
        v = getattr(cfg, name)
        out = d[name] if v is None else v
        assert out is not None
        return float(out)

    return ColdStart(
        node_acquire_mean_s=get("node_acquire_mean_s"), node_acquire_cv=cfg.node_acquire_cv,
        image_gb=get("image_gb"), image_pull_gb_s=get("image_pull_gb_s"),
        image_extract_gb_s=get("image_extract_gb_s"),
        weights_gb=float(cfg.weights_gb if cfg.weights_gb is not None else weights_gb),
        weights_on_node=cfg.weights_cached_on_node, cache_weights=cfg.cache_weights_on_node,
        load_s=get("load_s"), compile_s=get("compile_s"), cuda_graph_s=get("cuda_graph_s"),
        warmup_s=get("warmup_s"), readiness_delay_s=get("readiness_delay_s"),
        wake_s=float(wake_s) if wake_s is not None else get("wake_s"))


# --------------------------------------------------------------------------------------------
# Shared storage: processor sharing of one bandwidth among concurrent loads
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Flow:
    remaining: float
    done: simpy.Event
    rate: float = 0.0


class SharedStorage:
    """Weight storage of total bandwidth ``total_gb_s`` shared equally by the loads in progress
    (each gets min(total / N, ``per_load_gb_s``)), re-evaluated whenever a load starts or ends."""

    def __init__(self, env: Environment, total_gb_s: float,
                 per_load_gb_s: float | None = None) -> None:
        self.env = env
        self.total = total_gb_s * 1e9
        self.cap = per_load_gb_s * 1e9 if per_load_gb_s is not None else math.inf
        self.flows: list[_Flow] = []
        self._last = 0.0
        self._version = 0
        self.bytes_done = 0.0
        self.max_concurrent = 0

    def fetch(self, nbytes: float) -> tuple[_Flow, simpy.Event]:
        """Start a load of ``nbytes``; the event fires when it is done."""
        self._advance()
        f = _Flow(float(nbytes), self.env.event())
        if f.remaining <= 0:
            f.done.succeed()
            return f, f.done
        self.flows.append(f)
        self.max_concurrent = max(self.max_concurrent, len(self.flows))
        self._reschedule()
        return f, f.done

    def cancel(self, f: _Flow) -> None:
        if f in self.flows:
            self._advance()
            self.flows.remove(f)
            self._reschedule()

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last
        if dt > 0:
            for f in self.flows:
                moved = f.rate * dt
                f.remaining -= moved
                self.bytes_done += moved
        self._last = now

    def _reschedule(self) -> None:
        self._version += 1
        if not self.flows:
            return
        rate = min(self.total / len(self.flows), self.cap)
        for f in self.flows:
            f.rate = rate
        t = max(min(f.remaining for f in self.flows) / rate, 0.0)
        v = self._version
        self.env.timeout(t).callbacks.append(lambda _e: self._tick(v))

    def _tick(self, version: int) -> None:
        if version != self._version:
            return
        self._advance()
        done = [f for f in self.flows if f.remaining <= 1e-6 * max(self.total, 1.0)]
        for f in done:
            self.flows.remove(f)
            f.done.succeed()
        self._reschedule()


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Node:
    """A cloud machine holding up to ``slots`` replicas of one pool shape."""

    id: int
    shape: tuple[str, int]
    slots: int
    used: int = 0
    image: simpy.Process | None = None
    weights: simpy.Process | None = None
    weights_cached: bool = False


class NodePool:
    """Where nodes come from: acquisition delay, capacity limit, stock-outs."""

    def __init__(self, env: Environment, cfg: ProvisioningConfig,
                 rng: np.random.Generator) -> None:
        self.env = env
        self.cfg = cfg
        self.rng = rng
        self.nodes: list[Node] = []
        self.held = 0
        self.in_flight = 0
        self.waiters: list[simpy.Event] = []
        self.stockouts = 0
        self.capacity_waits = 0
        self._next = 0

    def _delay(self, mean: float, cv: float) -> float:
        if mean <= 0:
            return 0.0
        if cv <= 0:
            return mean
        s2 = math.log1p(cv * cv)
        return float(self.rng.lognormal(math.log(mean) - s2 / 2, math.sqrt(s2)))

    def acquire(self, shape: tuple[str, int], timing: ColdStart
                ) -> Generator[simpy.Event, Any, Node]:
        """A slot on a node of ``shape`` (gpu, tp): a free one on a held node, else a new node."""
        for n in self.nodes:
            if n.shape == shape and n.used < n.slots:
                n.used += 1
                return n
        cap = self.cfg.node_capacity
        while True:
            waited = False
            while cap is not None and self.held + self.in_flight >= cap:
                if not waited:
                    self.capacity_waits += 1
                    waited = True
                ev = self.env.event()
                self.waiters.append(ev)
                try:
                    yield ev
                except simpy.Interrupt:
                    if ev in self.waiters:
                        self.waiters.remove(ev)
                    elif ev.triggered:
                        self._wake_waiters()  # woken but cancelled: pass the turn on
                    raise
            self.in_flight += 1
            try:
                yield self.env.timeout(self._delay(timing.node_acquire_mean_s,
                                                   timing.node_acquire_cv))
            except simpy.Interrupt:
                self.in_flight -= 1
                self._wake_waiters()  # the request was withdrawn: its capacity is free
                raise
            self.in_flight -= 1
            if self.cfg.stockout_probability > 0 \
                    and self.rng.random() < self.cfg.stockout_probability:
                self.stockouts += 1
                self._wake_waiters()
                yield self.env.timeout(self.cfg.stockout_retry_s)
                continue
            node = Node(self._next, shape, self.cfg.replicas_per_node, used=1)
            self._next += 1
            self.nodes.append(node)
            self.held += 1
            return node

    def release(self, node: Node) -> None:
        node.used -= 1
        if node.used > 0:
            return
        for p in (node.image, node.weights):
            if p is not None and p.is_alive:
                p.interrupt()
        self.nodes.remove(node)
        self.held -= 1
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        if self.waiters:
            ev = self.waiters.pop(0)
            if not ev.triggered:
                ev.succeed()


# --------------------------------------------------------------------------------------------
# One pool's replica set
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Slot:
    """One replica of the set, from request to release."""

    key: int
    """Its lifetime row's key in the recorder (a replica id for replicas built with the fleet)."""
    state: str
    requested_s: float
    acquired_s: float = math.nan
    ready_s: float = math.nan
    replica: Replica | None = None
    node: Node | None = None
    process: simpy.Process | None = None
    to_sleep: bool = False
    """Filling the warm pool: sleeps when loaded instead of taking traffic."""
    cold: bool = True
    """Went (or goes) through the cold-start pipeline (False: built with the fleet, or woken)."""
    billed: bool = False
    not_ready_since: float = math.nan
    """While held but not serving: since when."""
    stage_s: dict[str, float] = field(default_factory=dict)


class ReplicaSet:
    """One pool's replicas as its Deployment controller keeps them (see the module docstring)."""

    def __init__(self, env: Environment, fleet: Fleet, pool: Pool, timing: ColdStart,
                 storage: SharedStorage, nodes: NodePool, warm_size: int, drain_timeout_s:
                 float | None, keys: Iterator[int],
                 on_change: Callable[[], None] | None = None) -> None:
        self.env = env
        self.fleet = fleet
        self.pool = pool
        self.timing = timing
        self.storage = storage
        self.nodes = nodes
        self.warm_size = warm_size
        self.drain_timeout_s = drain_timeout_s
        self.on_change = on_change
        self.slots: list[Slot] = []
        self.desired = 0
        self._keys = keys
        """Lifetime-row keys of new slots (negative, shared by the fleet's replica sets)."""
        # Statistics.
        self.cold_start_s: list[float] = []
        self.not_ready_replica_s = 0.0
        """Replica-seconds held (billed) while not serving: cold starts, sleeping, waking."""
        self.not_ready_gpu_s = 0.0
        self.wakes = 0
        self.drained = 0
        self.drain_killed = 0
        self.cancelled = 0
        self.stage_totals: dict[str, float] = {}
        for rep in pool.replicas:  # built with the fleet: ready at 0, billed from 0
            s = Slot(rep.id, READY, 0.0, 0.0, 0.0, replica=rep, cold=False, billed=True)
            self.slots.append(s)
        self.desired = len(self.slots)

    # ---- counts ----------------------------------------------------------------------------
    def count(self, *states: str) -> int:
        return sum(1 for s in self.slots if s.state in states)

    @property
    def current(self) -> int:
        """Replicas counted by the Deployment (ready or on their way; not sleeping, not draining)."""
        return sum(1 for s in self.slots if (s.state == READY or s.state in NOT_READY)
                   and not s.to_sleep)

    def ready_replicas(self) -> list[Replica]:
        return [s.replica for s in self.slots if s.state == READY and s.replica is not None]

    @property
    def held(self) -> int:
        """Replicas billed now (a node acquired, not yet released)."""
        return sum(1 for s in self.slots if s.billed)

    # ---- the controller's one verb ---------------------------------------------------------
    def add_ready_now(self, k: int) -> None:
        """At t = 0: ``k`` more replicas already serving (billed from 0), as if built with the
        fleet."""
        for _ in range(k):
            rep = self.fleet.new_replica(self.pool)
            self.fleet.recorder.replica_up(rep.id, self.pool.name, self.pool.model, self.pool.gpu,
                                           self.pool.tp, self.pool.region, self.pool.zone,
                                           self.env.now)
            self.fleet.attach_replica(rep)
            self.slots.append(Slot(rep.id, READY, 0.0, 0.0, 0.0, replica=rep, cold=False,
                                   billed=True))
        self.desired = self.current

    def start_warm_pool(self) -> None:
        """At t = 0: the warm pool is already loaded and asleep (billed from 0)."""
        for _ in range(self.warm_size):
            s = self._new_slot(SLEEPING)
            s.cold = False
            s.acquired_s = 0.0
            s.not_ready_since = 0.0
            s.billed = True
            self._acquired_row(s)

    def scale_to(self, n: int) -> None:
        """Make the replica count ``n``: wake, start, cancel or drain replicas."""
        self.desired = n
        cur = self.current
        if n > cur:
            need = n - cur
            for s in [s for s in self.slots if s.state == SLEEPING][:need]:
                self._wake(s)  # seconds
                need -= 1
            for s in [s for s in self.slots if s.to_sleep and s.state in NOT_READY][:need]:
                s.to_sleep = False  # a warm-pool refill on its way: further along than a new one
                need -= 1
            for _ in range(need):
                self._cold_start(to_sleep=False)
        elif n < cur:
            extra = cur - n
            pending = [s for s in self.slots if s.state in NOT_READY and not s.to_sleep]
            for s in sorted(pending, key=lambda s: -s.requested_s)[:extra]:
                self._cancel(s)
                extra -= 1
            ready = [s for s in self.slots if s.state == READY]
            for s in sorted(ready, key=lambda s: -s.requested_s)[:extra]:
                self._drain(s)
        self._refill()
        if self.on_change is not None:
            self.on_change()

    def _refill(self) -> None:
        have = sum(1 for s in self.slots if s.state == SLEEPING or (s.to_sleep and s.state
                                                                    in NOT_READY))
        for _ in range(self.warm_size - have):
            self._cold_start(to_sleep=True)

    # ---- slots -----------------------------------------------------------------------------
    def _new_slot(self, state: str) -> Slot:
        s = Slot(next(self._keys), state, self.env.now)
        self.slots.append(s)
        return s

    def _acquired_row(self, s: Slot) -> None:
        p = self.pool
        self.fleet.recorder.replica_acquired(s.key, p.name, p.model, p.gpu, p.tp, p.region,
                                             p.zone, s.acquired_s)

    def _cold_start(self, to_sleep: bool) -> Slot:
        s = self._new_slot(ACQUIRING)
        s.to_sleep = to_sleep
        s.process = self.env.process(self._pipeline(s))
        return s

    def _pipeline(self, s: Slot) -> Generator[simpy.Event, Any, None]:
        env = self.env
        t = self.timing
        flow = None
        try:
            t0 = env.now
            node = yield from self.nodes.acquire((self.pool.gpu, self.pool.tp), t)
            s.node = node
            s.acquired_s = env.now
            s.not_ready_since = env.now
            s.billed = True
            s.stage_s[ACQUIRING] = env.now - t0
            self._acquired_row(s)
            s.state = PULLING
            t0 = env.now
            if node.image is None:
                node.image = env.process(self._pull(t))
            if node.image.is_alive:
                yield node.image
            s.stage_s[PULLING] = env.now - t0
            s.state = FETCHING
            t0 = env.now
            if not (t.weights_on_node or node.weights_cached):
                if t.cache_weights:
                    if node.weights is None:
                        node.weights = env.process(self._fetch_for_node(node))
                    if node.weights.is_alive:
                        yield node.weights
                else:
                    flow, done = self.storage.fetch(t.weights_gb * 1e9)
                    yield done
                    flow = None
            s.stage_s[FETCHING] = env.now - t0
            for state, dt in ((LOADING, t.load_s), (COMPILING, t.compile_s),
                              (GRAPHS, t.cuda_graph_s), (WARMING, t.warmup_s),
                              (READINESS, t.readiness_delay_s)):
                s.state = state
                s.stage_s[state] = dt
                if dt > 0:
                    yield env.timeout(dt)
            for k, v in s.stage_s.items():
                self.stage_totals[k] = self.stage_totals.get(k, 0.0) + v
            self.cold_start_s.append(env.now - s.requested_s)
            s.process = None
            if s.to_sleep:
                s.state = SLEEPING
            else:
                self._ready(s)
        except simpy.Interrupt:
            if flow is not None:
                self.storage.cancel(flow)
            s.process = None
            self._release(s, END_CANCELLED)
        if self.on_change is not None:
            self.on_change()

    def _pull(self, t: ColdStart) -> Generator[simpy.Event, Any, None]:
        try:
            yield self.env.timeout(t.image_gb / t.image_pull_gb_s + t.image_gb
                                   / t.image_extract_gb_s)
        except simpy.Interrupt:
            return

    def _fetch_for_node(self, node: Node) -> Generator[simpy.Event, Any, None]:
        flow, done = self.storage.fetch(self.timing.weights_gb * 1e9)
        try:
            yield done
            node.weights_cached = True
        except simpy.Interrupt:
            self.storage.cancel(flow)

    def _ready(self, s: Slot) -> None:
        rep = self.fleet.new_replica(self.pool)
        s.replica = rep
        if math.isnan(s.ready_s):
            s.ready_s = self.env.now
        self.fleet.recorder.replica_ready(s.key, rep.id, self.env.now)
        if not math.isnan(s.not_ready_since):
            self._not_ready(self.env.now - s.not_ready_since)
            s.not_ready_since = math.nan
        s.state = READY
        self.fleet.attach_replica(rep)

    def _wake(self, s: Slot) -> None:
        s.state = WAKING
        s.requested_s = self.env.now
        self.wakes += 1
        s.process = self.env.process(self._waking(s))

    def _waking(self, s: Slot) -> Generator[simpy.Event, Any, None]:
        try:
            if self.timing.wake_s > 0:
                yield self.env.timeout(self.timing.wake_s)
            s.process = None
            self._ready(s)
        except simpy.Interrupt:
            s.process = None
            s.state = SLEEPING  # cancelled while waking: back to sleep
        if self.on_change is not None:
            self.on_change()

    def _cancel(self, s: Slot) -> None:
        self.cancelled += 1
        if s.process is not None and s.process.is_alive:
            s.process.interrupt()

    def _drain(self, s: Slot) -> None:
        s.state = DRAINING
        assert s.replica is not None
        self.fleet.drain_replica(s.replica)
        s.process = self.env.process(self._draining(s))

    def _draining(self, s: Slot) -> Generator[simpy.Event, Any, None]:
        rep = s.replica
        assert rep is not None
        t0 = self.env.now
        killed = False
        while not self.fleet.is_drained(rep):
            if self.drain_timeout_s is not None and self.env.now - t0 >= self.drain_timeout_s:
                self.fleet.crash_replica(rep, END_SCALE_DOWN)
                killed = True
                break
            yield self.env.timeout(1.0)
        self.drained += 1
        self.drain_killed += killed
        self.fleet.retire_replica(rep)
        s.replica = None
        s.process = None
        have = sum(1 for x in self.slots if x.state == SLEEPING or (x.to_sleep and x.state
                                                                    in NOT_READY))
        if not killed and have < self.warm_size:
            s.state = SLEEPING  # vLLM sleep mode: GPUs held, weights to CPU memory
            s.not_ready_since = self.env.now
        else:
            self._release(s, END_SCALE_DOWN)
        if self.on_change is not None:
            self.on_change()

    def _release(self, s: Slot, reason: str) -> None:
        now = self.env.now
        if s.billed:
            self.fleet.recorder.replica_down(s.key, now, reason)
            if not math.isnan(s.not_ready_since):
                self._not_ready(now - s.not_ready_since)
            s.billed = False
        if s.node is not None:
            self.nodes.release(s.node)
            s.node = None
        s.state = GONE
        self.slots.remove(s)

    def _not_ready(self, dt: float) -> None:
        self.not_ready_replica_s += dt
        self.not_ready_gpu_s += dt * self.pool.tp

    def close(self, now: float) -> None:
        """End of run: count the not-ready time still open."""
        for s in self.slots:
            if s.billed and not math.isnan(s.not_ready_since):
                self._not_ready(now - s.not_ready_since)
                s.not_ready_since = now


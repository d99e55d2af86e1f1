"""The autoscaler: what it sees (a scraped, averaged, stale view of the replicas), what it decides
(Kubernetes HPA arithmetic, a KEDA-style queue scaler, scheduled and predictive pre-warming), and the
fleet time series that shows the result.

What this models:

- **Metrics pipeline** (:class:`MetricsPipeline`): every ``scrape_interval_s`` Prometheus scrapes
  each ready replica's gauges — ``num_requests_waiting``, ``num_requests_running``,
  ``kv_cache_usage_perc``, the ``generation_tokens_total`` counter and the
  ``time_to_first_token_seconds`` observations — plus the router's held-request queue and the
  fleet's arrival counter. The autoscaler reads each signal *averaged over* ``window_s``
  (``avg_over_time``; counters as ``rate``): it acts on data up to a scrape interval old and a
  window wide, as in production. A replica with no scrape in the window reports nothing (HPA's
  "missing metrics").
- **Policies** (signals; one :class:`Policy` each, chosen through :data:`POLICIES`): ``pods``
  (HPA ``Pods`` metric, ``AverageValue`` target, :func:`hpa_replicas`), ``queue`` (KEDA queue
  scaler: ceil(queue / target), activation and scale to zero), ``schedule`` (a time table of
  floors, applied ``lead_s`` early) and ``forecast`` (the recent request rate extrapolated). With
  several signals the largest proposal wins, as the HPA does with several metrics.
- **HPA behavior** (:class:`HpaBehaviorState`): the controller's
  ``normalizeDesiredReplicasWithBehaviors`` — stabilization windows (the lowest recommendation of
  the scale-up window, the highest of the scale-down window), then rate policies (``Pods`` /
  ``Percent`` per ``periodSeconds``, ``selectPolicy`` Max / Min / Disabled), then min/max — every
  ``sync_period_s``. The result goes to the pool's :class:`simulator.cluster.provisioning.ReplicaSet`.
- **Fleet time series**: per pool and interval, desired / provisioning / waking / sleeping / ready /
  draining / billed replicas, queue, TTFT p90, timed-out attempts and $/h.

Leaves out: the HPA's CPU-only readiness heuristics (initial readiness delay), Prometheus adapter
query latency, KEDA's own HPA object for 1..N (its queue scaler is modelled with the same behavior
rules), scaling on several pools jointly (each pool decides alone).

Why one module (~760 lines): it follows the HPA controller's own pipeline in order — metrics
(:class:`MetricsPipeline`) → one proposal per signal (the policies) → behavior normalisation
(:class:`HpaBehaviorState`) → the pool's decision (:class:`PoolAutoscaler`) → the fleet-wide loop and
time series (:class:`Autoscaling`) — and those pieces share :class:`PoolView` and each pool's
state. The scenario section is already apart (``autoscale_spec.py``), so is provisioning
(``provisioning.py``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import simpy

from simulator.cluster.autoscale_spec import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    AutoscalingConfig,
    ForecastSignal,
    HpaBehavior,
    HpaRules,
    PodsSignal,
    PoolAutoscaling,
    ProvisioningConfig,
    QueueSignal,
    ScheduleSignal,
)
from simulator.cluster.provisioning import (
    CLASS_DEFAULTS,
    DRAINING,
    NOT_READY,
    READY,
    SLEEPING,
    WAKING,
    NodePool,
    ReplicaSet,
    SharedStorage,
    resolve,
    size_class,
)
from simulator.errors import ConfigError
from simulator.metrics import names
from simulator.prices import pool_prices
from simulator.simenv import Environment

if TYPE_CHECKING:
    from simulator.cluster.fleet import Fleet

# --------------------------------------------------------------------------------------------
# HPA arithmetic (pure functions; kubernetes pkg/controller/podautoscaler)
# --------------------------------------------------------------------------------------------


def hpa_replicas(current: int, values: Sequence[float], missing: int, target: float,
                 tolerance: float = 0.1) -> int:
    """Replicas a ``Pods`` metric with an ``AverageValue`` target asks for
    (``calcPlainMetricReplicas``): ``values`` are the reporting replicas' metric values, ``missing``
    the replicas counted by the Deployment that report none yet (still loading). No metrics at all:
    no change.

    Without missing replicas: ``ceil(len(values) × mean / target)`` unless within ``tolerance``.
    With missing ones, they count as 0 for a scale-up and as exactly the target for a scale-down,
    and the recomputed ratio must still point the same way and leave the tolerance band."""
    if not values:
        return current
    ratio = (sum(values) / len(values)) / target
    if missing == 0:
        if abs(ratio - 1.0) <= tolerance:
            return current
        return math.ceil(ratio * len(values) - 1e-9)
    fill = target if ratio < 1.0 else 0.0
    n = len(values) + missing
    new_ratio = (sum(values) + fill * missing) / (target * n)
    if abs(new_ratio - 1.0) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    new = math.ceil(new_ratio * n - 1e-9)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def external_replicas(current: int, total: float, target: float, tolerance: float = 0.1) -> int:
    """Replicas an ``External`` metric with an ``AverageValue`` target asks for (KEDA's scalers):
    ``ceil(total / target)``, unless ``total / (target × current)`` is within ``tolerance``."""
    if current > 0 and abs(total / (target * current) - 1.0) <= tolerance:
        return current
    return math.ceil(total / target - 1e-9)


def _rules(r: HpaRules, default: HpaRules) -> HpaRules:
    return HpaRules(
        stabilizationWindowSeconds=r.stabilizationWindowSeconds
        if r.stabilizationWindowSeconds is not None else default.stabilizationWindowSeconds,
        selectPolicy=r.selectPolicy,
        policies=r.policies if r.policies is not None else default.policies)


@dataclass
class HpaBehaviorState:
    """The HPA's memory for one target: past recommendations and scale events, applied by
    :meth:`normalize` exactly as ``normalizeDesiredReplicasWithBehaviors`` does."""

    behavior: HpaBehavior
    min_replicas: int
    max_replicas: int
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.up = _rules(self.behavior.scaleUp, DEFAULT_SCALE_UP)
        self.down = _rules(self.behavior.scaleDown, DEFAULT_SCALE_DOWN)

    def stabilize(self, now: float, current: int, desired: int) -> int:
        up_w = float(self.up.stabilizationWindowSeconds or 0)
        down_w = float(self.down.stabilizationWindowSeconds or 0)
        up_rec = down_rec = desired
        for t, r in self.recommendations:
            if t > now - up_w:
                up_rec = min(up_rec, r)
            if t > now - down_w:
                down_rec = max(down_rec, r)
        rec = max(current, up_rec)
        rec = min(rec, down_rec)
        keep = max(up_w, down_w)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep]
        self.recommendations.append((now, desired))
        return rec

    @staticmethod
    def _changed(events: list[tuple[float, int]], now: float, period: float) -> int:
        return sum(n for t, n in events if t > now - period)

    def _period_start(self, now: float, current: int, period: float) -> int:
        """Replicas at the start of a rate policy's period: the current count less the scale-ups
        and plus the scale-downs made within it (the HPA's ``getReplicasChangePerPeriod``)."""
        return (current - self._changed(self.up_events, now, period)
                + self._changed(self.down_events, now, period))

    def scale_up_limit(self, now: float, current: int) -> int:
        r = self.up
        if r.selectPolicy == "Disabled":
            return current
        pick = min if r.selectPolicy == "Min" else max
        out: int | None = None
        for p in r.policies or []:
            start = self._period_start(now, current, p.periodSeconds)
            prop = start + p.value if p.type == "Pods" \
                else math.ceil(start * (1 + p.value / 100) - 1e-9)
            out = prop if out is None else pick(out, prop)
        return current if out is None else out

    def scale_down_limit(self, now: float, current: int) -> int:
        r = self.down
        if r.selectPolicy == "Disabled":
            return current
        pick = max if r.selectPolicy == "Min" else min
        out: int | None = None
        for p in r.policies or []:
            start = self._period_start(now, current, p.periodSeconds)
            prop = start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
            out = prop if out is None else pick(out, prop)
        return current if out is None else out

    def normalize(self, now: float, current: int, desired: int) -> int:
        """Stabilize ``desired``, then limit it by the rate policies and min/max."""
        d = self.stabilize(now, current, desired)
        if d > current:
            lim = max(self.scale_up_limit(now, current), current)
            d = min(d, self.max_replicas, lim)
        elif d < current:
            lim = min(self.scale_down_limit(now, current), current)
            d = max(d, self.min_replicas, lim)
        return max(self.min_replicas, min(self.max_replicas, d))

    def record(self, now: float, before: int, after: int) -> None:
        if after > before:
            self.up_events.append((now, after - before))
        elif after < before:
            self.down_events.append((now, before - after))
        keep = 1800.0
        self.up_events = [e for e in self.up_events if e[0] > now - keep]
        self.down_events = [e for e in self.down_events if e[0] > now - keep]


# --------------------------------------------------------------------------------------------
# Metrics pipeline
# --------------------------------------------------------------------------------------------


@dataclass
class PoolView:
    """What the autoscaler of one pool reads at a sync: each reporting replica's window-averaged
    signals, the pool's queue, the fleet's request rate history."""

    now: float
    current: int
    per_replica: dict[str, list[float]]
    """Signal → one window-averaged value per reporting replica."""
    queue: float
    """Window-averaged waiting requests of the pool plus the router's held requests."""
    rates: list[tuple[float, float]]
    """(time, requests/s) of the fleet's arrivals, one per scrape interval."""
    in_flight: float = 0.0
    """Window-averaged ``queue`` plus the requests running on the pool's replicas."""


class MetricsPipeline:
    """Scrapes the pools' replicas every ``interval`` and answers window-averaged reads."""

    def __init__(self, env: Environment, fleet: Fleet, interval: float, window: float,
                 pools: dict[str, ReplicaSet]) -> None:
        self.env = env
        self.fleet = fleet
        self.interval = interval
        self.window = window
        self.sets = pools
        self.series: dict[int, deque[tuple[float, float, float, float, float]]] = {}
        """Replica id → (t, waiting, running, kv usage, generation tokens counter)."""
        self.queue: dict[str, deque[tuple[float, float]]] = {p: deque() for p in pools}
        self.in_flight: dict[str, deque[tuple[float, float]]] = {p: deque() for p in pools}
        self.arrivals: deque[tuple[float, int]] = deque()
        self.rates: deque[tuple[float, float]] = deque()
        """(mid-time, requests/s) between consecutive ``arrivals`` entries."""
        self.scrapes = 0

    def run(self) -> Generator[simpy.Event, Any, None]:
        while True:
            self.scrape()
            yield self.env.timeout(self.interval)

    def scrape(self) -> None:
        now = self.env.now
        self.scrapes += 1
        keep = now - self.window - self.interval
        gen = self.fleet.gen_tokens
        for name, rs in self.sets.items():
            waiting = 0.0
            n_running = 0.0
            for rep in rs.ready_replicas():
                sync = getattr(rep, "sync", None)
                if sync is not None:
                    sync()
                running = rep.scheduler.running
                counter = gen.get(rep.id, 0) + sum(r.num_output_tokens for r in running)
                w = rep.num_waiting
                waiting += w
                n_running += rep.num_running
                dq = self.series.setdefault(rep.id, deque())
                dq.append((now, float(w), float(rep.num_running), float(rep.kv_usage),
                           float(counter)))
                while dq and dq[0][0] < keep:
                    dq.popleft()
            g = rs.pool.group
            held = float(len(g.queue)) if g is not None and g.queue is not None else 0.0
            q = self.queue[name]
            q.append((now, waiting + held))
            while q and q[0][0] < keep:
                q.popleft()
            f = self.in_flight[name]
            f.append((now, waiting + held + n_running))
            while f and f[0][0] < keep:
                f.popleft()
        arr = self.arrivals
        n1 = self.fleet._next_cid
        if arr and now > arr[-1][0]:
            t0, n0 = arr[-1]
            self.rates.append(((now + t0) / 2, (n1 - n0) / (now - t0)))
        arr.append((now, n1))
        while len(arr) > 2 and arr[0][0] < now - 3600:
            arr.popleft()
        rates = self.rates
        while rates and rates[0][0] < arr[0][0]:  # a pair with a forgotten end
            rates.popleft()

    def _ttft_p90(self, pool: str, wanted: bool) -> float | None:
        """The pool's TTFT p90 over the window (None: no observation, or not ``wanted``)."""
        obs = self.fleet.ttft_obs or []
        t0 = self.env.now - self.window
        # Observations come in time order: drop those no window will reach again.
        old = 0
        while old < len(obs) and obs[old][0] < t0:
            old += 1
        if old:
            del obs[:old]
        if not wanted:
            return None
        vals = [v for t, p, v in reversed(obs[-5000:]) if p == pool]
        return float(np.percentile(vals, 90)) if vals else None

    def arrival_rate(self, now: float) -> float:
        """Client requests per second that reached the fleet over the last window (as scraped:
        from the oldest scrape in the window to now; 0 before the second scrape)."""
        t0 = now - self.window
        first = next(((t, n) for t, n in self.arrivals if t >= t0), None)
        if first is None or now <= first[0]:
            return 0.0
        return (self.fleet._next_cid - first[1]) / (now - first[0])

    def view(self, name: str, rs: ReplicaSet, ttft: bool = True) -> PoolView:
        """What the pool's autoscaler reads now (``ttft``: with the TTFT p90, which only a
        ``pods`` signal on ``time_to_first_token_p90_s`` reads)."""
        now = self.env.now
        t0 = now - self.window
        per: dict[str, list[float]] = {k: [] for k in (
            names.NUM_REQUESTS_WAITING, names.NUM_REQUESTS_RUNNING, names.KV_CACHE_USAGE_PERC,
            "generation_tokens_per_s")}
        for rep in rs.ready_replicas():
            dq = self.series.get(rep.id)
            pts = [x for x in dq if x[0] >= t0] if dq else []
            if not pts:
                continue
            per[names.NUM_REQUESTS_WAITING].append(sum(x[1] for x in pts) / len(pts))
            per[names.NUM_REQUESTS_RUNNING].append(sum(x[2] for x in pts) / len(pts))
            per[names.KV_CACHE_USAGE_PERC].append(sum(x[3] for x in pts) / len(pts))
            if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
                per["generation_tokens_per_s"].append(
                    (pts[-1][4] - pts[0][4]) / (pts[-1][0] - pts[0][0]))
        p90 = self._ttft_p90(rs.pool.name, ttft)
        n_rep = len(per[names.NUM_REQUESTS_WAITING])
        per["time_to_first_token_p90_s"] = [p90] * n_rep if p90 is not None else []
        q = [v for t, v in self.queue[name] if t >= t0]
        f = [v for t, v in self.in_flight[name] if t >= t0]
        return PoolView(now, rs.current, per, sum(q) / len(q) if q else 0.0, list(self.rates),
                        sum(f) / len(f) if f else 0.0)


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


class Policy(Protocol):
    def propose(self, v: PoolView) -> int | None:
        """Replicas this signal asks for now (None: no opinion)."""
        ...


class Pods:
    """HPA ``Pods`` metric (see :func:`hpa_replicas`)."""

    def __init__(self, cfg: PodsSignal, tolerance: float) -> None:
        self.cfg = cfg
        self.tol = tolerance

    def propose(self, v: PoolView) -> int | None:
        vals = v.per_replica.get(self.cfg.metric, [])
        if not vals:
            return None
        return hpa_replicas(v.current, vals, max(v.current - len(vals), 0), self.cfg.target,
                            self.tol)


class Queue:
    """KEDA queue scaler (scale-to-zero is handled by the controller, :class:`PoolAutoscaler`)."""

    def __init__(self, cfg: QueueSignal, tolerance: float) -> None:
        self.cfg = cfg
        self.tol = tolerance

    def value(self, v: PoolView) -> float:
        return v.in_flight if self.cfg.metric == "in_flight" else v.queue

    def propose(self, v: PoolView) -> int | None:
        return external_replicas(v.current, self.value(v), self.cfg.target, self.tol)

    def active(self, v: PoolView) -> bool:
        return self.value(v) > self.cfg.activation_threshold


class Schedule:
    """Pre-warming from a time table."""

    def __init__(self, cfg: ScheduleSignal, tolerance: float) -> None:
        self.entries = sorted(cfg.entries, key=lambda e: e.at_s)
        self.lead = cfg.lead_s

    def propose(self, v: PoolView) -> int | None:
        floor = None
        for e in self.entries:
            if e.at_s <= v.now + self.lead:
                floor = e.replicas
        return floor


class Forecast:
    """Pre-warming from the recent request rate, extrapolated linearly."""

    def __init__(self, cfg: ForecastSignal, tolerance: float) -> None:
        self.cfg = cfg

    def predict(self, v: PoolView) -> float | None:
        pts = [(t, r) for t, r in v.rates if t >= v.now - self.cfg.history_s]
        if not pts:
            return None
        if len(pts) < 3:
            return max(r for _, r in pts)
        t = np.array([p[0] for p in pts])
        r = np.array([p[1] for p in pts])
        slope, icpt = np.polyfit(t - v.now, r, 1)
        return float(max(icpt + slope * self.cfg.lookahead_s, r[-1], 0.0))

    def propose(self, v: PoolView) -> int | None:
        rate = self.predict(v)
        if rate is None:
            return None
        return math.ceil(rate / self.cfg.requests_per_s_per_replica - 1e-9)


POLICIES: dict[str, type[Pods] | type[Queue] | type[Schedule] | type[Forecast]] = {
    "pods": Pods,
    "queue": Queue,
    "schedule": Schedule,
    "forecast": Forecast,
}
"""Signal kind (``autoscaling.pools.<pool>.signals[].kind``) → policy class."""


# --------------------------------------------------------------------------------------------
# The controller of one pool
# --------------------------------------------------------------------------------------------


class PoolAutoscaler:
    """One pool's HPA (+ KEDA activation): every ``sync_period_s``, read the pipeline, combine the
    signals' proposals, normalize with the behavior, resize the replica set."""

    def __init__(self, env: Environment, name: str, cfg: PoolAutoscaling,
                 rs: ReplicaSet, pipeline: MetricsPipeline) -> None:
        self.env = env
        self.name = name
        self.cfg = cfg
        self.rs = rs
        self.pipeline = pipeline
        self.policies: list[Pods | Queue | Schedule | Forecast] = [
            POLICIES[s.kind](s, cfg.tolerance) for s in cfg.signals]  # type: ignore[arg-type]
        self.queues = [p for p in self.policies if isinstance(p, Queue)]
        self.reads_ttft = any(isinstance(s, PodsSignal) and s.metric == "time_to_first_token_p90_s"
                              for s in cfg.signals)
        """A signal reads the TTFT p90 (a percentile over thousands of requests per sync)."""
        self.hpa = HpaBehaviorState(cfg.behavior, max(cfg.min_replicas, 1), cfg.max_replicas)
        self.last_active = 0.0
        """KEDA: last time a queue signal was active (the cooldown counts from the start)."""
        self.scale_ups: list[tuple[float, int, int, int]] = []
        """(time, from, to, replicas still loading then) of each scale-up."""
        self.scale_downs: list[tuple[float, int, int]] = []
        self.to_zero: list[tuple[float, int, float, int]] = []
        """(time, from, requests/s arriving over the last window, requests running) of each
        scale-down to zero replicas."""

    def run(self) -> Generator[simpy.Event, Any, None]:
        # NOTE: the first sync happens one period after the start, when the pipeline has data.
        while True:
            yield self.env.timeout(self.cfg.sync_period_s)
            self.sync()

    def sync(self) -> None:
        now = self.env.now
        v = self.pipeline.view(self.name, self.rs, self.reads_ttft)
        cur = v.current
        if self.queues and any(q.active(v) for q in self.queues):
            self.last_active = now
        if cur == 0:
            # KEDA: activation takes the target from zero to one (or the schedule's floor).
            floor = max((p.propose(v) or 0 for p in self.policies
                         if isinstance(p, Schedule | Forecast)), default=0)
            want = 1 if self.queues and now - self.last_active < 1e-9 else 0
            want = max(want, min(floor, self.cfg.max_replicas), self.cfg.min_replicas)
            if want > 0:
                self._apply(now, cur, want)
            return
        props = [p for p in (pol.propose(v) for pol in self.policies) if p is not None]
        raw = max(props) if props else cur
        desired = self.hpa.normalize(now, cur, raw)
        if self.cfg.min_replicas == 0 and self.queues \
                and now - self.last_active >= max(q.cfg.cooldown_period_s for q in self.queues):
            desired = 0  # KEDA cooldown: idle long enough, back to zero
        self._apply(now, cur, desired)

    def _apply(self, now: float, cur: int, desired: int) -> None:
        if desired != cur:
            self.hpa.record(now, cur, desired)
            if desired > cur:
                self.scale_ups.append((now, cur, desired, self.rs.count(*NOT_READY)))
            else:
                self.scale_downs.append((now, cur, desired))
                if desired == 0:
                    running = sum(r.num_running for r in self.rs.ready_replicas())
                    self.to_zero.append((now, cur, self.pipeline.arrival_rate(now), running))
        self.rs.scale_to(desired)

    def zero_under_traffic(self) -> list[dict[str, Any]]:
        """Scale-downs to zero while requests were arriving (or running): what a KEDA scaler on
        a waiting-only metric does when one replica keeps up — the queue stays at zero, so the
        cooldown runs out under traffic. Each with when the pool next left zero (the cold start
        it forced), None if it never did."""
        out = []
        for t, frm, rate, running in self.to_zero:
            if rate <= 0 and running <= 0:
                continue
            back = next((u[0] for u in self.scale_ups if u[0] > t and u[1] == 0), None)
            out.append({"pool": self.name, "at_s": t, "from_replicas": frm,
                        "arriving_per_s": rate, "running": running, "back_at_s": back})
        return out


# --------------------------------------------------------------------------------------------
# Wiring, time series, summary
# --------------------------------------------------------------------------------------------


class Autoscaling:
    """Every autoscaled pool of one run: replica sets, controllers, pipeline, time series."""

    def __init__(self, env: Environment, fleet: Fleet, cfg: AutoscalingConfig,
                 prov: ProvisioningConfig, rng: np.random.Generator) -> None:
        self.env = env
        self.fleet = fleet
        self.cfg = cfg
        by_name = {p.name: p for p in fleet.pools}
        unknown = sorted(set(cfg.pools) - set(by_name))
        if unknown:
            raise ConfigError(f"autoscaling.pools: no pool(s) {unknown}; pools: {sorted(by_name)} "
                              f"(a fleet without fleet.pools has one pool named 'default')")
        # NOTE: one shared weight storage for the whole fleet; its default bandwidth is that of
        # the first autoscaled pool's size class.
        first = by_name[next(iter(cfg.pools))].deployment.model
        d = CLASS_DEFAULTS[size_class(first.total_params_b, prov)]
        total = prov.storage_gb_s if prov.storage_gb_s is not None else d["storage_gb_s"]
        per = prov.per_load_gb_s if prov.per_load_gb_s is not None else d["per_load_gb_s"]
        assert total is not None
        self.storage = SharedStorage(env, float(total), float(per) if per is not None else None)
        self.nodes = NodePool(env, prov, rng)
        self.sets: dict[str, ReplicaSet] = {}
        self.controllers: list[PoolAutoscaler] = []
        self.timing: dict[str, Any] = {}
        keys = itertools.count(-1, -1)
        fleet.ttft_obs = []
        for name, pc in cfg.pools.items():
            pool = by_name[name]
            dep = pool.deployment
            model = dep.model
            weights_gb = model.weight_bytes(dep.weight_dtype) / 1e9
            timing = resolve(prov, model.total_params_b, weights_gb, pc.warm_pool.wake_s)
            self.timing[name] = timing
            if len(pool.replicas) > pc.max_replicas:
                raise ConfigError(f"autoscaling.pools.{name}.max_replicas: {pc.max_replicas} is "
                                  f"below the pool's {len(pool.replicas)} initial replicas; raise "
                                  f"it or lower the pool's replicas")
            rs = ReplicaSet(env, fleet, pool, timing, self.storage, self.nodes,
                            pc.warm_pool.size, prov.drain_timeout_s, keys)
            self.sets[name] = rs
            if pool.group is not None:
                fleet.hold_when_empty.add(pool.group)
        self.pipeline = MetricsPipeline(env, fleet, cfg.scrape_interval_s, cfg.window_s, self.sets)
        for name, pc in cfg.pools.items():
            self.controllers.append(PoolAutoscaler(env, name, pc, self.sets[name], self.pipeline))
        self.rows: list[tuple[Any, ...]] = []
        self._desired_peak: dict[str, int] = {}

    def start(self) -> None:
        env = self.env
        for name, rs in self.sets.items():
            pc = self.cfg.pools[name]
            n0 = len(rs.slots)
            if n0 < pc.min_replicas:
                # NOTE: a fleet at its minimum is already running when the run starts (a minimum
                # below the pool's replicas would otherwise begin with a cold start at t = 0).
                rs.add_ready_now(pc.min_replicas - n0)
            rs.start_warm_pool()
            n = min(pc.max_replicas, max(pc.min_replicas, n0))
            if n != rs.current:
                rs.scale_to(n)
            else:
                rs.desired = n
        env.process(self.pipeline.run())
        for c in self.controllers:
            env.process(c.run())
        env.process(self._sample())

    # ---- time series -------------------------------------------------------------------------
    def _sample(self) -> Generator[simpy.Event, Any, None]:
        while True:
            self.sample_now()
            yield self.env.timeout(self.cfg.timeseries_interval_s)

    def sample_now(self) -> None:
        now = self.env.now
        for name, rs in self.sets.items():
            waiting = sum(r.num_waiting for r in rs.ready_replicas())
            g = rs.pool.group
            held_q = len(g.queue) if g is not None and g.queue is not None else 0
            self.rows.append((
                now, name, rs.desired, rs.count(*(NOT_READY - {WAKING})), rs.count(WAKING),
                rs.count(SLEEPING), rs.count(READY), rs.count(DRAINING), rs.held, rs.pool.tp,
                waiting + held_q))

    def timeseries(self, requests: pd.DataFrame, attempts: pd.DataFrame,
                   replicas: pd.DataFrame, cost: Any, end_s: float) -> pd.DataFrame:
        """``Results.extra["fleet_timeseries"]``: one row per interval end per autoscaled pool."""
        cols = ["time_s", "pool", "desired", "provisioning", "waking", "sleeping", "ready",
                "draining", "held", "tp", "queue"]
        if not self.rows or self.rows[-1][0] < end_s:
            self.sample_now()
        df = pd.DataFrame.from_records(self.rows, columns=cols)
        dt = self.cfg.timeseries_interval_s
        ttft = np.full(len(df), np.nan)
        tout = np.zeros(len(df), dtype=np.int64)
        first_pool = next(iter(self.sets))
        have_req = len(requests) and "first_token_s" in requests.columns
        # NOTE: each interval (t − dt, t] is a slice of the pool's requests sorted by first-token
        # time (attempts by end time): one sort per pool, not one scan of every row per interval.
        firsts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        ends: dict[str, np.ndarray] = {}
        if have_req:
            f_all = requests["first_token_s"].to_numpy(dtype=float)
            v_all = requests["ttft_s"].to_numpy(dtype=float)
            req_pool = requests["pool"]
        if len(attempts):
            timed_out = (attempts["outcome"] == names.TIMED_OUT).to_numpy(dtype=bool)
            e_all = attempts["end_s"].to_numpy(dtype=float)
            att_pool = attempts["pool"]
        for i, (t, pool) in enumerate(zip(df["time_s"], df["pool"], strict=True)):
            lo_t = t - dt
            if have_req:
                got = firsts.get(pool)
                if got is None:
                    sel = (req_pool == pool).to_numpy(dtype=bool) & ~np.isnan(f_all)
                    order = np.argsort(f_all[sel], kind="stable")
                    got = firsts[pool] = (f_all[sel][order], v_all[sel][order])
                f, v = got
                m = v[np.searchsorted(f, lo_t, side="right"):np.searchsorted(f, t, side="right")]
                m = m[~np.isnan(m)]
                if len(m):
                    ttft[i] = float(np.percentile(m, 90))
            if len(attempts):
                e = ends.get(pool)
                if e is None:
                    own = ((att_pool == pool) | ((att_pool == "") & (pool == first_pool))).to_numpy(
                        dtype=bool) & timed_out & ~np.isnan(e_all)
                    e = ends[pool] = np.sort(e_all[own])
                tout[i] = int(np.searchsorted(e, t, side="right")
                              - np.searchsorted(e, lo_t, side="right"))
        df["ttft_p90_s"] = ttft
        df["timed_out"] = tout
        df["usd_per_hour"] = self._usd_per_hour(df, replicas, cost)
        return df.drop(columns=["tp"])

    def _usd_per_hour(self, df: pd.DataFrame, replicas: pd.DataFrame, cost: Any) -> np.ndarray:
        out = np.full(len(df), np.nan)
        if not len(replicas):
            return out
        try:
            prices = pool_prices(replicas, cost, self.fleet.cfg.pools)
        except ConfigError:
            return out
        start = replicas["start_s"].to_numpy(float)
        end = replicas["end_s"].to_numpy(float)
        tp = replicas["tp"].to_numpy(float)
        pool = replicas["pool"].astype(str).to_numpy()
        last = float(end.max())
        for i, (t, p) in enumerate(zip(df["time_s"], df["pool"], strict=True)):
            t = min(float(t), last - 1e-9)  # the run's last instant: still held
            m = (pool == p) & (start <= t) & (end > t)
            pp = prices.get(str(p))
            out[i] = pp.usd_per_hour(float(tp[m].sum())) if pp is not None else math.nan
        return out

    # ---- summary -----------------------------------------------------------------------------
    def summary(self, ts: pd.DataFrame, end_s: float) -> dict[str, Any]:
        """The ``autoscaling`` block of the run's summary."""
        per: dict[str, Any] = {}
        tot_cold: list[float] = []
        for c in self.controllers:
            rs = c.rs
            rs.close(end_s)
            tot_cold += rs.cold_start_s
            t = ts[ts["pool"] == c.name] if len(ts) else ts
            loading_waves = sum(1 for _, _, _, loading in c.scale_ups if loading > 0)
            per[c.name] = {
                "scale_up_events": len(c.scale_ups),
                "scale_up_waves_while_loading": loading_waves,
                "scale_down_events": len(c.scale_downs),
                "peak_desired": int(max([x[2] for x in c.scale_ups] + [rs.desired, 0])),
                "peak_replicas": int(t["held"].max()) if len(t) else rs.held,
                "peak_ready": int(t["ready"].max()) if len(t) else 0,
                "final_replicas": rs.held,
                "cold_starts": len(rs.cold_start_s),
                "cold_start_s": {
                    "mean": float(np.mean(rs.cold_start_s)) if rs.cold_start_s else None,
                    "max": float(np.max(rs.cold_start_s)) if rs.cold_start_s else None},
                "stage_s_mean": {k: v / len(rs.cold_start_s) for k, v in rs.stage_totals.items()}
                if rs.cold_start_s else {},
                "provisioning_replica_s": rs.not_ready_replica_s,
                "provisioning_gpu_hours": rs.not_ready_gpu_s / 3600.0,
                "wakes": rs.wakes,
                "drained": rs.drained,
                "drain_killed": rs.drain_killed,
                "cancelled": rs.cancelled,
                "timing": self.timing[c.name].describe(),
                "scale_to_zero_events": len(c.to_zero),
                "scale_to_zero_under_traffic": c.zero_under_traffic(),
            }
        pools = list(per.values())
        under = [e for p in pools for e in p["scale_to_zero_under_traffic"]]
        return {
            "scale_up_events": sum(p["scale_up_events"] for p in pools),
            "scale_up_waves_while_loading": sum(p["scale_up_waves_while_loading"] for p in pools),
            "scale_down_events": sum(p["scale_down_events"] for p in pools),
            "peak_replicas": sum(p["peak_replicas"] for p in pools),
            "cold_starts": len(tot_cold),
            "cold_start_s": {"mean": float(np.mean(tot_cold)) if tot_cold else None,
                             "max": float(np.max(tot_cold)) if tot_cold else None},
            "provisioning_replica_s": sum(p["provisioning_replica_s"] for p in pools),
            "gpu_hours_not_ready": sum(p["provisioning_gpu_hours"] for p in pools),
            "stockouts": self.nodes.stockouts,
            "capacity_waits": self.nodes.capacity_waits,
            "max_concurrent_weight_loads": self.storage.max_concurrent,
            "scale_to_zero_under_traffic": sorted(under, key=lambda e: e["at_s"]),
            "pools": per,
        }


def start_autoscaling(env: Environment, fleet: Fleet, cfg: AutoscalingConfig | None,
                      prov: ProvisioningConfig, rng: np.random.Generator) -> Autoscaling | None:
    """Start the autoscalers the scenario asks for (None: a static fleet, nothing runs)."""
    if cfg is None:
        return None
    a = Autoscaling(env, fleet, cfg, prov, rng)
    a.start()
    return a


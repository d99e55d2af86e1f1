"""The gauge scraper: what a Prometheus scrape of every vLLM replica's ``/metrics`` sees each
``metrics.sample_interval_s`` — running and waiting requests and KV-cache usage (vLLM's
``num_requests_running``, ``num_requests_waiting``, ``kv_cache_usage_perc``: :mod:`names`) — plus
the router's outstanding count of the replica, written as one plain row per replica into the
recorder (:meth:`simulator.metrics.recorder.Recorder.sample`), the ``timeseries`` frame.

A dead replica is still scraped, as zeros (its outstanding attempts still count); a replica the
autoscaler removed is not. It knows nothing of the cluster's classes: it reads any replica with
the attributes of :class:`ScrapedReplica` (the fleet's ``Replica``).

Leaves out: scrape jitter and failed scrapes. The router's own, possibly stale, view of the same
gauges (``router.metrics_staleness_s``) is the fleet's (:mod:`simulator.cluster.fleet`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import simpy

from simulator.simenv import Environment


class ScrapedReplica(Protocol):
    """What the scrape reads of a replica."""

    @property
    def id(self) -> int: ...
    @property
    def alive(self) -> bool: ...
    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def kv_usage(self) -> float: ...


class Outstanding(Protocol):
    """The router's count of attempts on a replica (``ReplicaState.outstanding``)."""

    @property
    def outstanding(self) -> int: ...


def replica_gauges(env: Environment, sample: Callable[[tuple[Any, ...]], None],
                   replicas: Sequence[ScrapedReplica], states: Sequence[Outstanding],
                   retired: AbstractSet[int], interval: float
                   ) -> Generator[simpy.Event, Any, None]:
    """The scrape process: a row ``(time, replica, running, waiting, kv_usage, outstanding)`` per
    replica (``states[replica.id]``) every ``interval`` seconds, from t = 0. ``replicas``,
    ``states`` and ``retired`` are read afresh each scrape (an autoscaler adds and removes
    replicas during the run)."""
    while True:
        now = env._now
        for rep in replicas:
            if rep.alive:
                sample((now, rep.id, rep.num_running, rep.num_waiting, rep.kv_usage,
                        states[rep.id].outstanding))
            elif retired and rep.id in retired:
                continue
            else:
                sample((now, rep.id, 0, 0, 0.0, states[rep.id].outstanding))
        yield env.timeout(interval)

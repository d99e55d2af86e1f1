"""Routing policies choose replicas the way their names say; the router sees only what a real one
sees (its own counts, scraped gauges with staleness, health)."""

from __future__ import annotations

import numpy as np

from simulator import simulate
from simulator.cluster.router import (
    ROUTERS,
    LeastKv,
    LeastOutstanding,
    PowerOfTwo,
    PrefixAffinity,
    Random,
    ReplicaState,
    RoundRobin,
)
from simulator.engine.request import Request
from simulator.metrics.recorder import Recorder
from simulator.run import build_fleet, resolve_pools
from simulator.simenv import Environment
from tests.cluster.helpers import scenario
from tests.conftest import small_scenario


def states(outstanding: list[int], kv: list[float] | None = None) -> list[ReplicaState]:
    """The router's view of real replicas (a fleet built from a scenario, not run)."""
    sc = scenario(fleet={"replicas": len(outstanding)})
    fleet = build_fleet(sc, Environment(), Recorder(), resolve_pools(sc),
                        np.random.SeedSequence(0))
    out = fleet.states
    for i, s in enumerate(out):
        s.outstanding = outstanding[i]
        if kv is not None:
            s.kv_usage = kv[i]
    return out


def req(prefix: tuple[int, ...] = ()) -> Request:
    return Request(0, 100, 10, prefix_hashes=prefix)


def test_mapping_names_every_policy():
    assert set(ROUTERS) == {"round_robin", "random", "power_of_two", "least_outstanding",
                            "least_kv", "prefix_affinity"}


def test_round_robin_cycles():
    s = states([5, 0, 0])
    rr = RoundRobin(s)
    assert [rr.choose(req(), s).id for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_least_outstanding_picks_the_emptiest_lowest_index_on_ties():
    lo = LeastOutstanding()
    assert lo.choose(req(), states([3, 1, 1, 2])).id == 1
    assert lo.choose(req(), states([0, 0])).id == 0


def test_least_kv_reads_the_scraped_usage_then_outstanding():
    assert LeastKv().choose(req(), states([0, 5, 1], kv=[0.9, 0.1, 0.1])).id == 2


def test_random_and_power_of_two_are_seeded_and_p2c_prefers_the_less_loaded():
    s = states([0] * 8)
    r1, r2 = Random(s, rng=np.random.default_rng(1)), Random(s, rng=np.random.default_rng(1))
    a = [r1.choose(req(), s).id for _ in range(50)]
    assert a == [r2.choose(req(), s).id for _ in range(50)] and len(set(a)) > 4
    loaded = states([9, 9, 9, 0])
    p2c = PowerOfTwo(loaded, rng=np.random.default_rng(2))
    picks = [p2c.choose(req(), loaded).id for _ in range(400)]
    # Replica 3 wins every sample it is in: P = 1 - (3/4 · 2/3) = 1/2.
    assert 0.4 < picks.count(3) / 400 < 0.6


def test_prefix_affinity_is_sticky_per_prefix_spreads_prefixes_and_respects_the_load_bound():
    s = states([0] * 4)
    pa = PrefixAffinity(s, prefix_blocks=2, load_bound=1.25, virtual_nodes=64)
    homes = {p: pa.choose(req((p, p + 1, p + 2)), s).id for p in range(0, 4000, 100)}
    assert len(set(homes.values())) == 4  # different prefixes land on different replicas
    assert all(pa.choose(req((p, p + 1, 999)), s).id == h for p, h in homes.items())  # sticky
    # Only the leading prefix_blocks count; skip_blocks ignores a system prompt shared by all.
    skip = PrefixAffinity(s, prefix_blocks=2, prefix_skip_blocks=3)
    shared = (7, 8, 9)
    got = {skip.choose(req((*shared, p, p + 1)), s).id for p in range(0, 4000, 100)}
    assert len(got) == 4
    # Its home replica over the bound ⌈1.25 · (total + 1) / n⌉ → the next one on the ring.
    p, home = next(iter(homes.items()))
    busy = states([0, 0, 0, 0])
    busy[home].outstanding = 10
    assert pa.choose(req((p, p + 1)), busy).id != home
    # No shared prefix: least outstanding.
    assert pa.choose(req(), states([2, 1, 0, 3])).id == 2


def test_fleet_spreads_requests_over_replicas():
    for kind in ROUTERS:
        res = simulate(small_scenario(fleet={"replicas": 3, "router": {"kind": kind}},
                                      workload={"num_requests": 150}))
        counts = res.requests["replica"].value_counts()
        assert len(counts) == 3 and counts.min() > 0.2 * len(res.requests), kind


def test_random_routing_is_deterministic_per_seed():
    a = simulate(scenario(fleet={"replicas": 3, "router": {"kind": "random"}}, seed=3))
    b = simulate(scenario(fleet={"replicas": 3, "router": {"kind": "random"}}, seed=3))
    assert a.requests["replica"].tolist() == b.requests["replica"].tolist()


def test_least_kv_on_stale_gauges_balances_worse_than_on_live_ones():
    """Between scrapes the router sees every replica as loaded as at the last scrape, so least_kv
    keeps choosing the replica that looked emptiest; live gauges (staleness 0, an oracle) do not."""

    def spread(staleness: float) -> float:
        sc = scenario(fleet={"replicas": 4, "router": {"kind": "least_kv",
                                                       "metrics_staleness_s": staleness}},
                      workload={"num_requests": 200, "arrival": {"kind": "poisson", "rate": 40}})
        share = simulate(sc).requests["replica"].value_counts(normalize=True)
        return float(share.max() - share.min())

    assert spread(2.0) > spread(0.0) + 0.15

"""Routing policies choose replicas the way their names say."""

from __future__ import annotations

from simulator import simulate
from simulator.cluster.router import ROUTERS, LeastOutstanding, RoundRobin
from tests.conftest import small_scenario


def test_round_robin_cycles():
    rr = RoundRobin()
    assert [rr.choose([5, 0, 0]) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_least_outstanding_picks_the_emptiest_lowest_index_on_ties():
    lo = LeastOutstanding()
    assert lo.choose([3, 1, 1, 2]) == 1
    assert lo.choose([0, 0]) == 0


def test_mapping_names_every_policy():
    assert set(ROUTERS) == {"round_robin", "least_outstanding"}


def test_fleet_spreads_requests_over_replicas():
    for kind in ROUTERS:
        res = simulate(small_scenario(fleet={"replicas": 3, "router": {"kind": kind}}))
        counts = res.requests["replica"].value_counts()
        assert len(counts) == 3 and counts.min() > 0.25 * len(res.requests)

"""The gateway: auth (401), validation (400), per-tenant token buckets and quotas (429), load
shedding, priority classes, weighted fair sharing, added latency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator import simulate
from simulator.cluster.gateway import DAY_S, FairQueue, Gateway, TokenBucket
from simulator.cluster.request import Attempt, ClientRequest, Stage
from simulator.cluster.spec import GatewayConfig
from simulator.engine.request import Request
from simulator.metrics import names
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic

_ids = itertools.count()


def att(tenant: str = "t", prompt: int = 100, priority: int = 0, out: int = 10) -> Attempt:
    """An attempt held at the router, as the gateway sees it."""
    spec = RequestSpec(prompt, out, priority=priority, tenant=tenant)
    creq = ClientRequest(next(_ids), spec, 0.0, "default", None, True)
    r = Request(creq.request_id, prompt, out, priority=priority)
    a = Attempt(creq, 0, r, 0.0, tenant, out)
    a.stage = Stage.QUEUED
    creq.attempts.append(a)
    return a


def test_token_bucket_refills_to_one_minute_and_may_go_negative():
    b = TokenBucket(60, now=0.0)
    assert b.has(60, 0.0) and not b.has(61, 0.0)
    b.take(60)
    assert not b.has(1, 0.5) and b.has(1, 1.0)
    assert b.has(60, 1000.0) and not b.has(61, 1000.0)  # capped at one minute's worth
    b.take(100)
    assert b.level == -40


def test_tokens_per_minute_charges_the_estimate_and_reconciles_the_actual_output():
    gw = Gateway(GatewayConfig(output_estimate_tokens=256,
                               tenants={"t": {"tokens_per_min": 1000}}), lambda: 0)
    a = att(prompt=100)
    assert gw.admit(a, 0.0) is None and a.charged_tokens == 356
    assert gw.tenants["t"].tokens.level == 1000 - 356
    # It was scheduled and generated 10 tokens: 246 of the estimate come back.
    a.req.scheduled_time, a.req.num_output_tokens = 0.0, 10
    gw.settle(a, 0.0)
    assert gw.tenants["t"].tokens.level == pytest.approx(1000 - 110)
    # A long answer costs more than estimated: the bucket goes into debt.
    b = att(prompt=100)
    gw.admit(b, 0.0)
    b.req.scheduled_time, b.req.num_output_tokens = 0.0, 2000
    gw.settle(b, 0.0)
    assert gw.tenants["t"].tokens.level == pytest.approx(1000 - 110 - 2100)
    assert gw.admit(att(prompt=10), 1.0) == names.R_RATE_TOKENS


def test_daily_quota_is_spent_then_reset_the_next_day():
    gw = Gateway(GatewayConfig(output_estimate_tokens=0,
                               tenants={"t": {"daily_tokens": 1000}}), lambda: 0)
    for _ in range(10):
        a = att(prompt=100)
        assert gw.admit(a, 10.0) is None
        a.req.scheduled_time = 10.0
        gw.settle(a, 10.0)
    assert gw.admit(att(prompt=100), 20.0) == names.R_QUOTA
    assert gw.admit(att(prompt=100), DAY_S + 1) is None


def test_auth_maps_keys_to_tenants_and_refuses_unknown_keys_with_401_never_retried(monkeypatch):
    specs = [RequestSpec(100, 20, tenant="a", api_key="key-a"),
             RequestSpec(100, 20, tenant="b", api_key="stolen"),
             RequestSpec(100, 20, tenant="c", api_key=None),
             RequestSpec(100, 20, tenant="claims-b", api_key="key-b")]
    sc = scenario(gateway={"auth": True, "api_keys": {"key-a": "a", "key-b": "b"},
                           "tenants": {"b": {"requests_per_min": 1}}},
                  clients={"retry": {"max_attempts": 3}})
    res = simulate_traffic(monkeypatch, sc, traffic([(0.1 * i, s) for i, s in enumerate(specs)]))
    df = res.requests.set_index("request_id")
    assert df.loc[0, "outcome"] == names.COMPLETED
    assert df.loc[1, "reason"] == df.loc[2, "reason"] == names.R_UNAUTHORIZED
    assert (df.loc[[1, 2], "attempts"] == 1).all()  # 401 is not retried
    assert res.summary["requests"]["rejected"] == 2
    assert res.summary["fleet"]["reasons"][names.R_UNAUTHORIZED] == 2
    # The key decides the tenant: "claims-b" is charged as b (its bucket of 1/min is unused so far).
    att3 = res.extra["attempts"].set_index("request_id").loc[3]
    assert att3["tenant"] == "b" and att3["outcome"] == names.COMPLETED


def test_requests_per_minute_bucket_limits_a_tenant_and_not_the_others(monkeypatch):
    items = [(0.1 * i, RequestSpec(50, 5, tenant="heavy" if i % 2 else "light"))
             for i in range(400)]  # 5 req/s each for 40 s
    sc = scenario(gateway={"tenants": {"heavy": {"requests_per_min": 60}}})
    df = simulate_traffic(monkeypatch, sc, traffic(items)).requests
    heavy = df[df["tenant"] == "heavy"]
    ok = (heavy["outcome"] == names.COMPLETED).sum()
    # 60 in the first burst, then 1/s for ~40 s.
    assert 90 <= ok <= 110
    assert (heavy.loc[heavy["outcome"] == names.REJECTED, "reason"] == names.R_RATE_REQUESTS).all()
    assert (df.loc[df["tenant"] == "light", "outcome"] == names.COMPLETED).all()


def test_load_shedding_answers_429_and_spares_the_exempt_priority_class(monkeypatch):
    items = [(0.005 * i, RequestSpec(200, 300, tenant="vip" if i % 4 == 0 else "std"))
             for i in range(800)]
    sc = scenario(engine={"max_num_seqs": 16},
                  fleet={"router": {"metrics_staleness_s": 0.2}},
                  gateway={"shed_when_waiting": 20, "shed_exempt_priority": 0,
                           "tenants": {"vip": {"priority": 0}, "std": {"priority": 1}}})
    df = simulate_traffic(monkeypatch, sc, traffic(items)).requests
    std = df[df["tenant"] == "std"]
    assert (std["reason"] == names.R_SHED).sum() > 200
    assert (df.loc[df["tenant"] == "vip", "outcome"] == names.COMPLETED).all()


def test_priority_class_from_the_gateway_orders_the_engine_queue(monkeypatch):
    items = [(0.0, RequestSpec(500, 200, tenant="batch" if i % 2 else "vip")) for i in range(400)]
    sc = scenario(engine={"max_num_seqs": 32, "scheduling_policy": "priority"},
                  gateway={"tenants": {"vip": {"priority": 0}, "batch": {"priority": 5}}})
    df = simulate_traffic(monkeypatch, sc, traffic(items)).requests
    ttft = df.groupby("tenant")["ttft_s"].mean()
    assert ttft["vip"] < 0.5 * ttft["batch"]
    assert set(df.loc[df["tenant"] == "vip", "priority"]) == {0}


def test_vtc_fair_queue_serves_the_tenant_with_the_least_service_and_lifts_idle_ones():
    q = FairQueue("vtc", weight=lambda t: 2.0 if t == "gold" else 1.0, w_in=1.0, w_out=2.0)
    for _ in range(5):
        q.push(att("heavy", prompt=1000))
    q.push(att("light", prompt=100))
    q.push(att("light", prompt=100))
    order = []
    while len(q):
        x = q.pop()
        order.append(x.tenant)
        q.dispatched(x.tenant, x.req.prompt_len)  # the service each one gets when dispatched
    # Light's two requests are not stuck behind heavy's five: after one 1000-token heavy request
    # the light tenant has the smaller counter twice.
    assert order == ["heavy", "light", "light", "heavy", "heavy", "heavy", "heavy"]
    # A tenant arriving after idling is lifted to the smallest backlogged counter (no banked credit).
    q.push(att("heavy", prompt=10))
    q.push(att("late", prompt=10))
    assert q.counter["late"] == pytest.approx(q.counter["heavy"]) == 5000
    # Weight: the same service costs a weight-2 tenant half as much.
    q.served("gold", 100)
    q.served("heavy", 100)
    assert q.counter["gold"] == pytest.approx(100.0)
    # FCFS keeps priority class, then arrival order; cancelled entries are dropped lazily.
    f = FairQueue("fcfs", weight=lambda t: 1.0)
    a, b, c = att(priority=1), att(priority=0), att(priority=1)
    for x in (a, b, c):
        f.push(x)
    b.stage = Stage.ENDED
    f.discard(b)
    assert len(f) == 2 and f.pop() is a and f.pop() is c and f.pop() is None


def test_gateway_latency_adds_to_every_request():
    base = scenario(workload={"num_requests": 100, "arrival": {"kind": "poisson", "rate": 2}})
    slow = base.model_copy(update={"gateway": GatewayConfig(latency_s=0.05)})
    a, b = simulate(base).requests, simulate(slow).requests
    d = (b["ttft_s"] - a["ttft_s"]).to_numpy()
    assert np.median(d) == pytest.approx(0.05, abs=0.005)

"""Topology and routing around pools: several models, tenant routes and pinning, dedicated pools,
queue-or-shed at saturation, graceful degradation (fallback model, output cap), regions with
network latency and spill-over."""

from __future__ import annotations

import pytest

from simulator import simulate
from simulator.errors import ConfigError
from simulator.metrics import names
from simulator.run import resolve_deployment, resolve_pools
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic


def test_several_models_in_one_fleet_with_tenant_routes(monkeypatch):
    pools = [{"name": "small", "replicas": 2},
             {"name": "big", "model": "Llama-3.1-70B", "weight_dtype": "fp8", "tp": 2,
              "served_model": "llama-70b", "engine": {"max_num_seqs": 64}}]
    sc = scenario(fleet={"pools": pools, "routes": {"acme": "llama-70b"}})
    dep = resolve_pools(sc)
    assert [p.deployment.model.name for p in dep] == ["Llama-3.1-8B", "Llama-3.1-70B"]
    assert dep[1].deployment.tp == 2 and dep[1].scenario.engine.max_num_seqs == 64
    items = [(0.05 * i, RequestSpec(300, 50, tenant="acme" if i % 3 == 0 else "other"))
             for i in range(90)]
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    df = res.requests
    assert (df.loc[df["tenant"] == "acme", "pool"] == "big").all()
    assert (df.loc[df["tenant"] == "acme", "model"] == "llama-70b").all()
    assert (df.loc[df["tenant"] == "other", "pool"] == "small").all()
    assert set(df.loc[df["pool"] == "small", "replica"]) == {0, 1}
    assert set(res.extra["deployments"]) == {"small", "big"}
    assert res.summary["deployment"]["model"] == "Llama-3.1-8B"
    lives = res.extra["replicas"]
    assert lives.groupby("pool")["tp"].first().to_dict() == {"big": 2, "small": 1}
    assert set(res.summary["fleet"]["by_pool"]) == {"big", "small"}


def test_single_pool_resolution_is_the_classic_one():
    sc = scenario(fleet={"replicas": 3})
    [rp] = resolve_pools(sc)
    assert rp.config.name == "default" and rp.config.replicas == 3 and rp.scenario is sc
    assert rp.deployment.describe() == resolve_deployment(sc).describe()


def test_tenant_pinning_and_dedicated_pools(monkeypatch):
    pools = [{"name": "shared", "replicas": 3, "pin": {"lora-x": [2]}},
             {"name": "premium", "replicas": 1, "tenants": ["gold"]}]
    sc = scenario(fleet={"pools": pools, "region_aware": False})
    tenants = ["lora-x", "gold", "other"]
    items = [(0.02 * i, RequestSpec(200, 40, tenant=tenants[i % 3])) for i in range(150)]
    df = simulate_traffic(monkeypatch, sc, traffic(items)).requests
    assert set(df.loc[df["tenant"] == "lora-x", "replica"]) == {2}
    assert (df.loc[df["tenant"] != "gold", "pool"] == "shared").all()
    assert set(df.loc[df["tenant"] == "gold", "pool"]) == {"shared", "premium"}


@pytest.mark.parametrize("when", ["queue", "shed"])
def test_saturated_replicas_queue_at_the_router_or_shed(monkeypatch, when: str):
    items = [(0.0, RequestSpec(200, 100)) for _ in range(100)]
    sc = scenario(fleet={"replicas": 2, "router": {"max_outstanding_per_replica": 10,
                                                   "when_saturated": when}})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    if when == "queue":
        assert r["completed"] == 100 and res.summary["fleet"]["router_queue_max"] == 80
        # Never more than 10 in flight per replica.
        assert res.timeseries["in_system"].max() <= 10
    else:
        assert r["completed"] == 20 and r["rejected"] == 80
        assert res.summary["fleet"]["reasons"] == {names.R_SATURATED: 80}
    bounded = simulate_traffic(monkeypatch, sc.model_copy(update={"fleet": sc.fleet.model_copy(
        update={"router": sc.fleet.router.model_copy(update={"when_saturated": "queue",
                                                             "max_queue": 30})})}),
        traffic(items))
    assert bounded.summary["fleet"]["reasons"] == {names.R_QUEUE_FULL: 50}


def test_fallback_to_a_smaller_model_when_the_primary_is_overloaded(monkeypatch):
    pools = [{"name": "large", "served_model": "chat-large", "replicas": 1,
              "engine": {"max_num_seqs": 8}},
             {"name": "small", "served_model": "chat-small", "replicas": 1}]
    items = [(0.002 * i, RequestSpec(400, 200)) for i in range(300)]

    def run(degrade):
        sc = scenario(fleet={"pools": pools, "degrade": degrade,
                             "router": {"metrics_staleness_s": 0.1}})
        return simulate_traffic(monkeypatch, sc, traffic(items))

    plain = run([])
    assert (plain.requests["pool"] == "large").all()
    deg = run([{"primary": "chat-large", "fallback": "chat-small", "when_waiting_per_replica": 8}])
    share = (deg.requests["pool"] == "small").mean()
    assert 0.3 < share < 0.99
    assert deg.summary["ttft_ms"]["p99"] < 0.5 * plain.summary["ttft_ms"]["p99"]


def test_output_cap_under_load_shortens_answers_only_when_loaded(monkeypatch):
    burst = [(0.0, RequestSpec(300, 400)) for _ in range(200)]
    quiet = [(5.0 * i, RequestSpec(300, 400)) for i in range(3)]
    # An instantaneous front end: the burst reaches the scheduler's queue, which the router reads,
    # at once (an API server would hold it in its tokenizer first).
    sc = scenario(engine={"max_num_seqs": 32, "api_server": {"enabled": False}},
                  fleet={"router": {"metrics_staleness_s": 0.0,
                                    "output_cap": {"when_waiting_per_replica": 20,
                                                   "max_tokens": 64}}})
    df = simulate_traffic(monkeypatch, sc, traffic(burst)).requests
    capped = df[df["capped"]]
    assert len(capped) > 100 and (capped["output_tokens"] == 64).all()
    assert (df.loc[~df["capped"], "output_tokens"] == 400).all()
    calm = simulate_traffic(monkeypatch, sc, traffic(quiet)).requests
    assert not calm["capped"].any() and (calm["output_tokens"] == 400).all()


REGIONS = {"pools": [{"name": "us", "region": "us"}, {"name": "eu", "region": "eu"}],
           "regions": [{"name": "us", "client_share": 3, "client_rtt_s": 0.02},
                       {"name": "eu", "client_share": 1, "client_rtt_s": 0.04}],
           "inter_region_rtt_s": 0.1}


def test_regions_add_client_latency_and_route_locally():
    wl = {"num_requests": 200, "arrival": {"kind": "poisson", "rate": 4}}
    res = simulate(scenario(workload=wl, fleet=REGIONS))
    df = res.requests
    assert (df["pool"] == df["region"]).all()
    assert 0.6 < (df["region"] == "us").mean() < 0.9
    near = simulate(scenario(workload=wl, fleet={
        **REGIONS, "regions": [{**r, "client_rtt_s": 0.0} for r in REGIONS["regions"]]})).requests
    d = (df["ttft_s"] - near["ttft_s"]).groupby(df["region"]).median()
    assert d["us"] == pytest.approx(0.02, abs=0.003) and d["eu"] == pytest.approx(0.04, abs=0.003)


def test_region_spill_over_when_the_local_pool_is_saturated_pays_the_inter_region_rtt():
    wl = {"num_requests": 400, "arrival": {"kind": "poisson", "rate": 60}}
    res = simulate(scenario(workload=wl, fleet={**REGIONS, "router": {
        "max_outstanding_per_replica": 24}}))
    df = res.requests
    spilled = df[(df["region"] == "us") & (df["pool"] == "eu")]
    assert len(spilled) > 40  # at routing time and from the router's queue
    # A spilled request pays the client's and the inter-region round trips.
    assert (spilled["ttft_s"] > 0.02 + 0.1).all()
    assert (df.loc[df["pool"] == df["region"], "ttft_s"] > 0.02).all()
    agnostic = simulate(scenario(workload=wl, fleet={**REGIONS, "region_aware": False})).requests
    assert ((agnostic["region"] == "us") & (agnostic["pool"] == "eu")).mean() > 0.25


def test_fleet_config_errors_say_what_to_fix():
    with pytest.raises(ConfigError, match="replicas of each pool"):
        scenario(fleet={"replicas": 2, "pools": [{"name": "a"}]})
    with pytest.raises(ConfigError, match="must name a pool with role decode"):
        scenario(fleet={"pools": [{"name": "p", "role": "prefill", "decode_pool": "x"}]})
    with pytest.raises(ConfigError, match="not the decode_pool of any"):
        scenario(fleet={"pools": [{"name": "a"}, {"name": "d", "role": "decode"}]})
    with pytest.raises(ConfigError, match="no pool serves 'nope'"):
        simulate(scenario(fleet={"routes": {"t": "nope"}}))
    with pytest.raises(ConfigError, match=r"fleet.pools\[0\] \(a\).engine.max_num_seqs"):
        simulate(scenario(fleet={"pools": [{"name": "a", "engine": {"max_num_seqs": 0}}]}))
    with pytest.raises(ConfigError, match=r"fleet.pools\[0\] \(a\): fleet.tp"):
        simulate(scenario(fleet={"pools": [{"name": "a", "model": "Llama-3.1-405B",
                                            "weight_dtype": "bf16"}]}))
    with pytest.raises(ConfigError, match="differ in tp"):
        simulate(scenario(fleet={"aggregate": True, "pools": [
            {"name": "p", "role": "prefill", "decode_pool": "d", "tp": 2},
            {"name": "d", "role": "decode"}]}))


# ---- same-model pools in one region (issue 22) ----------------------------------------------

MIXED = {"pools": [{"name": "h100", "gpu": "H100-SXM", "replicas": 2},
                   {"name": "h200", "gpu": "H200-SXM", "replicas": 2}]}
MIXED_WL = {"num_requests": 1500, "arrival": {"kind": "poisson", "rate": 45}}


def _by_pool(res) -> dict[str, int]:
    return {k: v["completed"] for k, v in res.summary["fleet"]["by_pool"].items()}


def test_same_model_pools_in_one_region_all_serve_and_cut_latency():
    # Before: one routing group per pool, the first took every request (by_pool h200: 0).
    sc = scenario(seed=4, workload=MIXED_WL, engine={"max_num_seqs": 64}, fleet=MIXED)
    res = simulate(sc)
    got = _by_pool(res)
    assert got["h100"] > 400 and got["h200"] > 400
    # The H200s are faster, so least-outstanding sends them more.
    assert got["h200"] > got["h100"]
    ordered = simulate(scenario(seed=4, workload=MIXED_WL, engine={"max_num_seqs": 64},
                                fleet={**MIXED, "pool_preference": "order"}))
    assert _by_pool(ordered) == {"h100": 1500}
    assert res.summary["ttft_ms"]["p90"] < ordered.summary["ttft_ms"]["p90"]
    # region_aware false gives the same split: within one region the two are the same group.
    agnostic = simulate(scenario(seed=4, workload=MIXED_WL, engine={"max_num_seqs": 64},
                                 fleet={**MIXED, "region_aware": False}))
    assert _by_pool(agnostic) == got


def test_two_zones_of_one_region_both_serve_and_a_zone_loss_leaves_the_other():
    pools = [{"name": "za", "zone": "a", "replicas": 2}, {"name": "zb", "zone": "b", "replicas": 2}]
    wl = {"num_requests": 1200, "arrival": {"kind": "poisson", "rate": 70}}
    res = simulate(scenario(workload=wl, fleet={"pools": pools}))
    got = _by_pool(res)
    assert min(got.values()) > 0.35 * 1200
    lost = simulate(scenario(workload=wl, fleet={"pools": pools},
                             faults={"events": [{"kind": "zone_loss", "at_s": 5.0, "zone": "a"}]}))
    late = lost.requests[lost.requests["arrival_s"] > 8.0]
    assert (late.loc[late["outcome"] == names.COMPLETED, "pool"] == "zb").all()


def test_order_preference_spills_to_the_next_pool_when_the_first_is_saturated():
    pools = [{"name": "reserved", "replicas": 1}, {"name": "spot", "replicas": 1}]
    wl = {"num_requests": 600, "arrival": {"kind": "poisson", "rate": 40}}
    res = simulate(scenario(workload=wl, fleet={"pools": pools, "pool_preference": "order",
                                                "router": {"max_outstanding_per_replica": 8}}))
    got = _by_pool(res)
    assert got["reserved"] > got["spot"] > 0


def test_routing_weights_give_a_heavier_pool_more_requests_in_flight(monkeypatch):
    pools = [{"name": "small", "replicas": 1}, {"name": "big", "replicas": 1, "weight": 3}]
    items = [(0.0, RequestSpec(200, 400)) for _ in range(80)]
    res = simulate_traffic(monkeypatch, scenario(fleet={"pools": pools}), traffic(items))
    got = res.requests["pool"].value_counts().to_dict()
    assert got == {"big": 60, "small": 20}
    plain = simulate_traffic(monkeypatch, scenario(fleet={"pools": [
        {**p, "weight": 1} for p in pools]}), traffic(items))
    assert plain.requests["pool"].value_counts().to_dict() == {"big": 40, "small": 40}

"""The fleet scenarios show what they exist to show (direction and rough size of each effect).

Each runs the shipped file and the comparison its header names, through ``--set``-style overrides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from simulator import load_scenario, simulate
from simulator.metrics import names
from simulator.run import Results

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def run(name: str, *overrides: str) -> Results:
    return simulate(load_scenario(SCENARIOS / f"{name}.yaml", list(overrides)))


def goodput(df: pd.DataFrame, t0: float, t1: float) -> float:
    """Completed requests per second finishing in [t0, t1)."""
    fin = df.loc[df["outcome"] == names.COMPLETED, "finish_s"]
    return float(((fin >= t0) & (fin < t1)).sum()) / (t1 - t0)


def test_retry_storm_collapses_goodput_and_backoff_with_shedding_recovers_it():
    short = ("workload.duration_s=110",)
    storm = run("retry-storm", *short)
    calm = run("retry-storm", *short, "clients.retry.backoff.kind=exponential",
               "clients.retry.budget.ratio=0.1", "gateway.shed_when_waiting=32")
    s, c = storm.requests, calm.requests
    # Before the surge (15 req/s offered) both serve everything.
    assert abs(goodput(s, 10, 30) - goodput(c, 10, 30)) < 1.0 and goodput(c, 10, 30) > 13
    # After the surge the storm keeps going: goodput collapses while the mitigated fleet serves
    # what is offered.
    assert goodput(c, 70, 110) > 12
    assert goodput(s, 70, 110) < 0.5 * goodput(c, 70, 110)
    att = storm.extra["attempts"]
    late = att[att["start_s"] >= 70]
    assert len(late) / 40 > 2.5 * 15  # attempts/s far above the 15 req/s users send
    assert storm.summary["fleet"]["retries"] > 5 * calm.summary["fleet"]["retries"]
    assert calm.summary["fleet"]["reasons"].get(names.R_SHED, 0) > 0
    assert storm.summary["requests"]["timed_out"] > 5 * max(calm.summary["requests"]["timed_out"], 1)


def test_prefix_affinity_raises_the_hit_rate_and_lowers_ttft_over_round_robin():
    few = "workload.num_requests=800"
    pa = run("prefix-affinity", few).summary
    rr = run("prefix-affinity", few, "fleet.router.kind=round_robin").summary
    assert pa["prefix_cache_hit_rate"] > rr["prefix_cache_hit_rate"] + 0.1
    assert pa["ttft_ms"]["mean"] < 0.85 * rr["ttft_ms"]["mean"]
    assert pa["ttft_ms"]["p50"] < rr["ttft_ms"]["p50"]


def test_fair_share_protects_light_tenants_from_a_heavy_one():
    short = "workload.duration_s=40"
    vtc = run("multi-tenant-fairness", short).requests
    fcfs = run("multi-tenant-fairness", short, "gateway.fairness=fcfs").requests

    def p99(df: pd.DataFrame, light: bool) -> float:
        done = df[(df["outcome"] == names.COMPLETED) & (df["tenant"].str.startswith("light") == light)]
        return float(np.percentile(done["ttft_s"], 99))

    assert p99(vtc, True) < 1.0
    assert p99(fcfs, True) > 5 * p99(vtc, True)
    # The heavy tenant is slowed, not starved.
    assert (vtc.loc[vtc["tenant"] == "heavy", "outcome"] == names.COMPLETED).sum() > 300
    assert set(vtc["tenant"]) == {"heavy", "light-a", "light-b", "light-c"}


def test_disaggregation_trades_ttft_for_smooth_decoding_on_the_same_gpus():
    few = "workload.num_requests=400"
    dis = run("disagg-vs-agg", few)
    agg = run("disagg-vs-agg", few, "fleet.aggregate=true")
    gpus = [r.extra["replicas"]["tp"].sum() for r in (dis, agg)]
    assert gpus[0] == gpus[1] == 4
    d, a = dis.summary, agg.summary
    assert d["ttft_ms"]["mean"] > a["ttft_ms"]["mean"]        # transfer + the decode step
    assert d["itl_ms"]["p99"] < 0.5 * a["itl_ms"]["p99"]       # no prefill stalls in decode
    assert d["fleet"]["kv_transfer"]["transfers"] == 400
    tcp = run("disagg-vs-agg", few, "fleet.kv_transfer.bandwidth_gb_s=1").summary
    assert tcp["ttft_ms"]["mean"] > 3 * a["ttft_ms"]["mean"]   # on a slow link it loses


def test_replica_failure_detection_delay_black_hole_and_circuit_breaking():
    shipped = run("replica-failure")
    att = shipped.extra["attempts"]
    unreachable = att[att["reason"] == names.R_UNREACHABLE]
    crashed = att[att["reason"] == names.R_CRASHED]
    assert len(crashed) > 5 and (crashed["end_s"] == 20).all()
    # Until 3 failed probes (5 s apart) mark it down, the dead replica draws traffic and fails it.
    assert len(unreachable) > 200
    assert unreachable["end_s"].min() >= 20 and unreachable["end_s"].max() <= 35
    assert shipped.summary["requests"]["failed"] > 50
    # It comes back at 40 s and takes traffic again after a good probe.
    df = shipped.requests
    assert ((df["replica"] == 1) & (df["arrival_s"] > 46)).sum() > 50
    lives = shipped.extra["replicas"]
    assert lives.loc[lives["replica"] == 1, "end_reason"].tolist() == [names.END_CRASH,
                                                                        names.END_RUN]
    # Circuit breaking closes the black hole; the retries then save every request.
    cb = run("replica-failure", "fleet.router.eject_after_failures=5")
    assert cb.summary["requests"]["failed"] == 0
    cb_att = cb.extra["attempts"]
    assert (cb_att["reason"] == names.R_UNREACHABLE).sum() <= 5
    assert cb.summary["fleet"]["retries"] >= len(crashed)


def test_mixed_fleet_every_pool_serves_and_beats_filling_pools_in_order():
    mixed = run("mixed-fleet")
    ordered = run("mixed-fleet", "fleet.pool_preference=order")
    served = {k: v["completed"] for k, v in mixed.summary["fleet"]["by_pool"].items()}
    assert set(served) == {"h100", "h200", "h100-spot"} and min(served.values()) > 1000
    assert served["h200"] > served["h100"]  # the faster GPUs take more
    assert set(ordered.summary["fleet"]["by_pool"]) == {"h100"}
    assert mixed.summary["ttft_ms"]["p90"] < 0.2 * ordered.summary["ttft_ms"]["p90"]
    assert mixed.summary["slo"]["met"] and not ordered.summary["slo"]["met"]
    # The spot pool is priced at its own quote; the spend rate is the pools' sum.
    c = mixed.summary["cost"]
    assert c["by_pool"]["h100-spot"]["usd_per_gpu_hour"] < c["by_pool"]["h100"]["usd_per_gpu_hour"]
    assert c["usd_per_hour"] == sum(b["usd_per_hour"] for b in c["by_pool"].values())

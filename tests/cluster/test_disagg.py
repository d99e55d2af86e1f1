"""Prefill/decode disaggregation: the KV link shares its bandwidth, transfers carry prompt × KV bytes
per token, decode admission waits for blocks, and the same GPUs can run aggregated."""

from __future__ import annotations

import pytest

from simulator.cluster.disagg import Link
from simulator.metrics import names
from simulator.profiles import load_model
from simulator.simenv import Environment
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic

PD = [{"name": "prefill", "role": "prefill", "decode_pool": "decode", "replicas": 1},
      {"name": "decode", "role": "decode", "replicas": 1}]


def test_link_shares_bandwidth_among_concurrent_transfers_and_adds_latency():
    env = Environment()
    link = Link(env, bandwidth_bytes_s=100.0, latency_s=0.5)
    done: dict[str, float] = {}

    def at(t: float, name: str, nbytes: float):
        yield env.timeout(t)
        link.start(nbytes, lambda: done.__setitem__(name, env.now))

    env.process(at(0.0, "a", 100))
    env.process(at(0.0, "b", 100))
    env.process(at(1.0, "c", 50))   # a, b have 50 left each: three share 100 B/s
    x = [None]

    def cancel_d():
        yield env.timeout(0.0)
        x[0] = link.start(1000, lambda: done.__setitem__("d", env.now))
        yield env.timeout(0.1)
        link.cancel(x[0])
    env.process(cancel_d())
    env.run()
    # 0–0.1 s: a, b, d share (33.3 B/s each); d cancelled → a, b at 50 B/s until 1 s: 51.67 B left
    # each. Then a, b, c at 33.3 B/s: c (50 B) is done at 2.5 s, a and b 0.033 s later; + latency.
    assert done["c"] == pytest.approx(2.5 + 0.5)
    assert done["a"] == pytest.approx(done["b"]) == pytest.approx(2.5 + (5 / 3) / 50 + 0.5)
    assert "d" not in done


def test_transfers_move_prompt_times_kv_bytes_and_decode_makes_the_first_token(monkeypatch):
    items = [(0.1 * i, RequestSpec(2000 + 10 * i, 50)) for i in range(40)]
    sc = scenario(fleet={"pools": PD})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    df = res.requests
    assert (df["outcome"] == names.COMPLETED).all() and (df["pool"] == "decode").all()
    assert (df["output_tokens"] == 50).all() and set(df["replica"]) == {1}
    per_tok = load_model("Llama-3.1-8B").kv_bytes_per_token("bf16", 1)
    kv = res.summary["fleet"]["kv_transfer"]
    assert kv["transfers"] == 40
    assert kv["gb"] == pytest.approx(sum(s.prompt_len for _, s in items) * per_tok / 1e9)
    # ~270 MB at 50 GB/s ≈ 5.4 ms + 0.5 ms latency.
    assert 5.5 < kv["mean_ms"] < 7.5
    agg = simulate_traffic(monkeypatch, scenario(fleet={"pools": PD, "aggregate": True}),
                           traffic(items))
    assert (agg.requests["pool"] == "prefill").all()
    assert "kv_transfer" not in agg.summary["fleet"]
    assert set(agg.requests["replica"]) == {0, 1}  # the decode GPU joined the merged pool
    assert res.summary["ttft_ms"]["mean"] > agg.summary["ttft_ms"]["mean"]


def test_a_slow_link_makes_disaggregation_lose(monkeypatch):
    items = [(0.25 * i, RequestSpec(6000, 20)) for i in range(20)]

    def ttft(bw: float) -> float:
        sc = scenario(fleet={"pools": PD, "kv_transfer": {"bandwidth_gb_s": bw}})
        return simulate_traffic(monkeypatch, sc, traffic(items)).summary["ttft_ms"]["mean"]

    # 6000 × 128 KiB ≈ 786 MB: ~16 ms at 50 GB/s, ~0.8 s over TCP at 1 GB/s.
    assert ttft(1.0) > ttft(50.0) + 700


def test_decode_admission_waits_for_free_kv_blocks(monkeypatch):
    pools = [PD[0], {**PD[1], "engine": {"gpu_memory_utilization": 0.3}}]
    sc = scenario(engine={"max_model_len": 16384}, fleet={"pools": pools},
                  metrics={"record_steps": True, "sample_interval_s": 0.05})
    items = [(0.0, RequestSpec(8000, 400)) for _ in range(30)]
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    assert res.summary["requests"]["completed"] == 30
    dec = res.timeseries[res.timeseries["replica"] == 1]
    assert dec[names.NUM_REQUESTS_WAITING].max() > 0  # prefilled requests held for blocks
    steps = res.steps[res.steps["replica"] == 1]
    assert steps["kv_cache_usage_perc"].max() <= 1.0
    # Each decode replica holds only as many 8k contexts as fit: decode batches stay small.
    assert steps["num_seqs"].max() < 10


def test_xpyd_shapes_and_a_prefill_crash_mid_transfer_conserves_and_frees(monkeypatch):
    pools = [{**PD[0], "replicas": 3}, {**PD[1], "replicas": 1}]
    sc = scenario(fleet={"pools": pools, "kv_transfer": {"bandwidth_gb_s": 0.5}},
                  faults={"events": [{"kind": "crash", "at_s": 2.0, "pool": "prefill",
                                      "replica": 0}]},
                  metrics={"sample_interval_s": 0.1})
    items = [(0.1 * i, RequestSpec(3000, 30)) for i in range(60)]
    items.append((60.0, RequestSpec(10, 2)))  # keeps the run going past the others
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    assert r["failed"] > 0 and r["arrived"] == r["completed"] + r["failed"] + r["rejected"]
    # Once the others have ended the decode replica holds no blocks: abandoned transfers let go.
    last = res.requests["end_s"].iloc[:60].max()
    assert last < 59
    ts = res.timeseries
    idle = ts[(ts["replica"] == 3) & (ts["time_s"] > last) & (ts["time_s"] < 60)]
    assert len(idle) and (idle[names.KV_CACHE_USAGE_PERC] == 0).all()


def test_disagg_requests_honour_client_timeouts_in_every_stage(monkeypatch):
    sc = scenario(fleet={"pools": PD, "kv_transfer": {"bandwidth_gb_s": 0.2}},
                  clients={"timeout_s": 1.5}, metrics={"sample_interval_s": 0.25})
    items = [(0.05 * i, RequestSpec(4000, 100)) for i in range(40)]
    items.append((20.0, RequestSpec(10, 2)))
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    assert res.summary["requests"]["timed_out"] > 10
    idle = res.timeseries[(res.timeseries["time_s"] > 15) & (res.timeseries["time_s"] < 20)]
    assert (idle[names.KV_CACHE_USAGE_PERC] == 0).all()


def test_decode_replica_idles_while_transfers_hold_every_free_block():
    # Over a 1 GB/s link the decode replicas' free blocks end up reserved for KV still on the wire
    # while a preempted request waits to recompute: the engine must sleep until a transfer lands
    # (as vLLM's scheduler idles), not declare the request unschedulable.
    from pathlib import Path

    from simulator import load_scenario, simulate

    path = Path(__file__).resolve().parents[2] / "scenarios" / "disagg-vs-agg.yaml"
    res = simulate(load_scenario(path, ["fleet.kv_transfer.bandwidth_gb_s=1"]))
    s = res.summary
    assert s["preemptions"] > 0
    assert s["requests"]["completed"] == s["requests"]["arrived"] == 800

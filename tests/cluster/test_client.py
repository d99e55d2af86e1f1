"""Clients: timeouts abort the server's work and free its KV blocks; retries (immediate or backoff,
within a budget); sessions end on a failed turn; closed-loop users wait for the final outcome."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate
from simulator.config import FixedLength
from simulator.metrics import names
from simulator.workload.generator import RequestSpec, Session
from tests.cluster.helpers import scenario, simulate_traffic, traffic


def test_timeout_aborts_the_request_and_frees_its_kv_blocks(monkeypatch):
    items = [(0.0, RequestSpec(1000, 4000)) for _ in range(8)]
    items.append((5.0, RequestSpec(10, 2)))  # keeps the run going past the aborts
    sc = scenario(clients={"timeout_s": 2.0}, metrics={"record_steps": True,
                                                       "sample_interval_s": 0.5})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    df = res.requests.iloc[:8]
    assert (df["outcome"] == names.TIMED_OUT).all() and (df["reason"] == names.R_TIMEOUT).all()
    assert np.allclose(df["end_s"], 2.0)
    # The engine stops at the abort: no step until the next request, every block free again.
    st = res.steps["start_s"]
    assert not ((st >= 2.0) & (st < 5.0)).any()
    idle = res.timeseries[(res.timeseries["time_s"] > 2.0) & (res.timeseries["time_s"] < 5.0)]
    assert len(idle) and (idle[names.KV_CACHE_USAGE_PERC] == 0).all()
    assert (idle[names.NUM_REQUESTS_RUNNING] == 0).all()
    r = res.summary["requests"]
    assert r["arrived"] == 9 and r["timed_out"] == 8 and r["completed"] == 1


def test_first_token_timeout_gives_up_only_without_a_first_token(monkeypatch):
    items = [(0.0, RequestSpec(7000, 50)) for _ in range(40)]  # a long queue of long prompts
    sc = scenario(engine={"max_num_batched_tokens": 8192}, clients={"first_token_timeout_s": 1.0})
    df = simulate_traffic(monkeypatch, sc, traffic(items)).requests
    gave_up = df[df["outcome"] == names.TIMED_OUT]
    assert len(gave_up) > 5 and (gave_up["reason"] == names.R_FIRST_TOKEN_TIMEOUT).all()
    done = df[df["outcome"] == names.COMPLETED]
    assert len(done) >= 3 and (done["ttft_s"] <= 1.0).all()


def _attempt_gaps(res) -> list[float]:
    a = res.extra["attempts"].sort_values(["request_id", "attempt"])
    first = a[a["request_id"] == 0]
    return (first["start_s"].to_numpy()[1:] - first["end_s"].to_numpy()[:-1]).tolist()


def test_immediate_retries_vs_exponential_backoff(monkeypatch):
    items = [(0.0, RequestSpec(100, 10))]
    shed_all = {"default_tenant": {"requests_per_min": 0.001}}  # bucket of 0.001: always 429

    def run(backoff):
        sc = scenario(gateway=shed_all,
                      clients={"retry": {"max_attempts": 4, "backoff": backoff}})
        return simulate_traffic(monkeypatch, sc, traffic(items))

    imm = run({"kind": "immediate"})
    assert _attempt_gaps(imm) == [0.0, 0.0, 0.0]
    exp = run({"kind": "exponential", "base_s": 1.0, "multiplier": 2.0, "jitter": "none"})
    assert _attempt_gaps(exp) == pytest.approx([1.0, 2.0, 4.0])
    r = exp.requests.iloc[0]
    assert r["outcome"] == names.REJECTED and r["attempts"] == 4
    assert r["reason"] == names.R_RATE_REQUESTS
    jit = run({"kind": "exponential", "base_s": 1.0, "jitter": "full"})
    gaps = _attempt_gaps(jit)
    assert all(0 <= g <= w for g, w in zip(gaps, [1.0, 2.0, 4.0], strict=True))
    assert gaps != [1.0, 2.0, 4.0]


def test_retry_budget_caps_retries_fleet_wide(monkeypatch):
    items = [(0.01 * i, RequestSpec(100, 10)) for i in range(50)]
    sc = scenario(gateway={"default_tenant": {"requests_per_min": 0.001}},
                  clients={"retry": {"max_attempts": 5, "backoff": {"kind": "immediate"},
                                     "budget": {"ratio": 0.1, "min_per_s": 0.0, "burst": 2}}})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    retries = res.summary["fleet"]["retries"]
    # 2 banked + 0.1 per request (capped at 2): far below the 200 retries it would take otherwise.
    assert 2 <= retries <= 2 + 0.1 * 50 + 1
    assert res.summary["fleet"]["retries_denied_by_budget"] > 30


def test_retries_are_counted_once_per_request_and_conserve(monkeypatch):
    items = [(0.0, RequestSpec(2000, 3000)) for _ in range(30)]
    sc = scenario(engine={"max_num_seqs": 8}, clients={"timeout_s": 3.0, "retry": {
        "max_attempts": 3, "backoff": {"kind": "exponential", "base_s": 0.1}}})
    res = simulate_traffic(monkeypatch, sc, traffic(items))
    r = res.summary["requests"]
    assert r["arrived"] == 30 == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
        + r["in_flight"]
    att = res.extra["attempts"]
    assert len(att) == res.requests["attempts"].sum() > 30
    last = att.sort_values("attempt").groupby("request_id").last()
    assert (last["outcome"].astype(str) == res.requests.set_index("request_id")["outcome"]
            .astype(str).loc[last.index]).all()


def _session(start: float, turns: int, sid: int) -> Session:
    def make_turn(k: int) -> RequestSpec:
        # Turn k's prompt is the context of turns < k plus 64 new tokens; all of it is shareable
        # with later turns (as the workload's sessions mark it).
        prefix = tuple(10_000 * (sid + 1) + j for j in range(4 * (k + 1)))
        return RequestSpec(64 * (k + 1), 20, prefix, tenant=f"user{sid}", session_id=sid, turn=k)
    return Session(start, turns, [0.5] * turns, make_turn)


def test_session_turns_reuse_their_context_and_a_failed_turn_ends_the_session(monkeypatch):
    sessions = [_session(0.0, 5, 0), _session(0.1, 5, 1)]
    # user1 may send 2 requests (bucket of 2/min): its third turn is refused → session over.
    sc = scenario(gateway={"tenants": {"user1": {"requests_per_min": 2}}})
    res = simulate_traffic(monkeypatch, sc, traffic([], sessions=sessions))
    df = res.requests
    u0, u1 = df[df["tenant"] == "user0"], df[df["tenant"] == "user1"]
    assert len(u0) == 5 and (u0["outcome"] == names.COMPLETED).all()
    assert (u0["cached_tokens"].iloc[1:] >= 48).all()  # later turns hit the earlier context
    assert len(u1) == 3 and u1["outcome"].tolist()[-1] == names.REJECTED


def test_closed_loop_users_wait_for_the_final_outcome_after_retries():
    sc = scenario(workload={"num_requests": 40, "arrival": {"kind": "closed_loop",
                                                            "concurrency": 1}},
                  clients={"timeout_s": 1.0, "retry": {"max_attempts": 2}})
    df = simulate(sc).requests.sort_values("arrival_s")
    assert (df["attempts"] > 1).any()
    # One user: the next request is sent only once the previous one has ended for good.
    assert (df["arrival_s"].to_numpy()[1:] >= df["end_s"].to_numpy()[:-1] - 1e-9).all()


def test_closed_loop_ramp_up_starts_client_i_at_i_over_n_of_the_ramp():
    arrival = {"kind": "closed_loop", "concurrency": 4, "ramp_up_s": 0.2}
    # An instantaneous front end (its serial tokenisation would split the lock-step wave:
    # tests/cluster/test_frontend.py).
    sc = scenario(workload={"num_requests": 12, "arrival": arrival},
                  engine={"api_server": {"enabled": False}})
    sc = sc.model_copy(update={"workload": sc.workload.model_copy(update={
        "input_len": FixedLength(value=512), "output_len": FixedLength(value=64)})})
    df = simulate(sc).requests.sort_values("arrival_s")
    assert (df["outcome"] == names.COMPLETED).all()
    # The first four requests are the four clients' first: at 0, 0.05, 0.1 and 0.15 s.
    assert df["arrival_s"].to_numpy()[:4].tolist() == pytest.approx([0.0, 0.05, 0.1, 0.15])
    # Without a ramp they all start at 0 and, identical, stay in lock-step: every wave's four
    # prefills share a step, so each wave's TTFTs are equal; the ramp spreads them apart.
    sc0 = sc.model_copy(update={"workload": sc.workload.model_copy(update={
        "arrival": sc.workload.arrival.model_copy(update={"ramp_up_s": 0.0})})})
    df0 = simulate(sc0).requests.sort_values("request_id")
    assert (df0["arrival_s"].to_numpy()[:4] == 0.0).all()
    assert df0["ttft_s"].iloc[4:8].nunique() == 1
    assert df["ttft_s"].iloc[4:8].mean() < df0["ttft_s"].iloc[4:8].mean()

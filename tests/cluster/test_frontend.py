"""The API server in front of the engine core (simulator.cluster.frontend)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate
from simulator.cluster.frontend import APIServer
from simulator.cluster.spec import APIServerConfig
from simulator.config import scenario_from_dict
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario, simulate_traffic, traffic

API = {"enabled": True, "request_s": 0.001, "tokenize_s_per_token": 1e-6, "output_s": 50e-6}


def test_input_lane_is_first_come_first_served_per_process():
    api = APIServer(APIServerConfig(request_s=0.001, tokenize_s_per_token=1e-6,
                                    api_server_count=2))
    # Two processes, round robin: requests 0 and 2 share process 0, 1 and 3 process 1.
    t = [api.admit(0.0, 1000) for _ in range(4)]
    assert t == pytest.approx([0.002, 0.002, 0.004, 0.004])
    # An idle lane starts at the arrival.
    assert api.admit(1.0, 0) == pytest.approx(1.001)


def test_output_lane_spreads_a_step_and_backs_up_when_saturated():
    api = APIServer(APIServerConfig(output_s=0.001))
    firsts = [api.first_token(1.0) for _ in range(3)]
    assert firsts == pytest.approx([1.001, 1.002, 1.003])
    base, gap = api.step_end(1.0, 10, finished=2)
    # Finished requests follow the step's first tokens; the lane is busy for all 10 outputs.
    assert base + gap == pytest.approx(1.004) and base + 2 * gap == pytest.approx(1.005)
    # The next step ends before the lane is free: its outputs wait for it.
    assert api.first_token(1.005) == pytest.approx(1.011)


def _ttft(res):
    return res.requests["ttft_s"].to_numpy()


def test_a_lone_request_pays_tokenisation_and_its_output_turn(monkeypatch):
    spec = [(0.0, RequestSpec(2000, 10))]
    off = {"api_server": {"enabled": False}}
    base = simulate_traffic(monkeypatch, scenario(engine=off), traffic(spec))
    front = simulate_traffic(monkeypatch, scenario(engine={"api_server": API}), traffic(spec))
    extra = _ttft(front)[0] - _ttft(base)[0]
    # request_s + 2000 tokens × 1 µs before the engine, one output turn after it.
    assert extra == pytest.approx(0.001 + 0.002 + 50e-6, abs=1e-9)
    b, f = base.requests.iloc[0], front.requests.iloc[0]
    assert f["finish_s"] - b["finish_s"] == pytest.approx(extra, abs=1e-9)
    assert f["tpot_s"] == pytest.approx(b["tpot_s"])


def test_a_burst_is_tokenised_one_after_another(monkeypatch):
    specs = [(0.0, RequestSpec(4000, 5)) for _ in range(4)]
    res = simulate_traffic(monkeypatch, scenario(engine={"api_server": API}), traffic(specs))
    sched = np.sort(res.requests["scheduled_s"].to_numpy())
    # The first reaches the engine after its own 5 ms; the rest wait their turn in the lane
    # and join the next step.
    assert sched[0] == pytest.approx(0.005)
    assert (sched[1:] > sched[0]).all()


def test_off_is_the_instantaneous_front_end():
    free = {"enabled": True, "request_s": 0.0, "tokenize_s_per_token": 0.0, "output_s": 0.0}
    a = simulate(scenario(engine={"api_server": free}))
    b = simulate(scenario(engine={"api_server": {**API, "enabled": False}}))
    assert a.requests.equals(b.requests)


def test_the_default_scenario_has_an_api_server():
    on = simulate(scenario())
    off = simulate(scenario(engine={"api_server": {"enabled": False}}))
    assert on.summary["ttft_ms"]["mean"] > off.summary["ttft_ms"]["mean"]


def test_front_end_runs_conserve_and_are_deterministic():
    sc = scenario(engine={"api_server": API},
                  workload={"arrival": {"kind": "poisson", "rate": 40.0}})
    a, b = simulate(sc), simulate(sc)
    assert a.requests.equals(b.requests)
    r = a.summary["requests"]
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["in_flight"] == 200
    base = simulate(scenario(workload={"arrival": {"kind": "poisson", "rate": 40.0}},
                             engine={"api_server": {"enabled": False}}))
    assert a.summary["ttft_ms"]["mean"] > base.summary["ttft_ms"]["mean"]


def test_a_client_timeout_during_tokenisation_never_reaches_the_engine(monkeypatch):
    slow = {**API, "tokenize_s_per_token": 1e-3}  # 4 s to tokenise 4000 tokens
    sc = scenario(engine={"api_server": slow}, clients={"timeout_s": 1.0})
    res = simulate_traffic(monkeypatch, sc, traffic([(0.0, RequestSpec(4000, 5))]))
    row = res.requests.iloc[0]
    assert row["outcome"] == "timed_out"
    assert not row["scheduled_s"] >= 0  # never scheduled


def test_saturated_output_lane_slows_every_stream(monkeypatch):
    # 40 requests decoding together, 5 ms of API-server time per output: the lane needs
    # 200 ms per step, far more than the GPU's step, so the last token reaches the client late.
    specs = [(0.0, RequestSpec(100, 50)) for _ in range(40)]
    busy = {**API, "output_s": 5e-3}
    base = simulate_traffic(monkeypatch, scenario(engine={"api_server": {"enabled": False}}),
                            traffic(specs))
    front = simulate_traffic(monkeypatch, scenario(engine={"api_server": busy}), traffic(specs))
    assert front.requests["finish_s"].max() > base.requests["finish_s"].max() + 0.1
    assert front.summary["requests"]["completed"] == 40


def test_closed_loop_wave_is_split_by_the_lane():
    # Eight identical clients started together: with an instantaneous front end every wave
    # prefills in one step; the API server's serial tokenisation lets the first request of a wave
    # start a step of its own.
    wl = {"arrival": {"kind": "closed_loop", "concurrency": 8}, "num_requests": 24,
          "input_len": {"kind": "fixed", "value": 1024}, "output_len": {"kind": "fixed", "value": 64}}
    def sc(**engine):
        return scenario_from_dict({"engine": {"max_model_len": 8192, **engine}, "workload": wl,
                                   "metrics": {"record_steps": False}})

    plain = simulate(sc(api_server={"enabled": False}))
    front = simulate(sc(api_server=API))
    wave2 = slice(8, 16)

    def starts(res):
        req = res.requests.sort_values("request_id")
        return len(set(np.round(req["scheduled_s"].to_numpy()[wave2], 9)))

    assert starts(plain) == 1
    assert starts(front) >= 2


def test_a_saturated_lane_is_the_same_with_the_fast_path_on_and_off():
    # 300 sequences decoding together at 100 µs of API-server time each: the lane needs 30 ms a
    # step, more than the GPU's step, so it falls behind during the fast path's runs of decode
    # steps too.
    wl = {"arrival": {"kind": "closed_loop", "concurrency": 300}, "num_requests": 600,
          "input_len": {"kind": "fixed", "value": 64}, "output_len": {"kind": "fixed", "value": 200}}

    def run(fast: bool):
        return simulate(scenario_from_dict({
            "engine": {"max_model_len": 4096, "max_num_seqs": 512,
                       "api_server": {**API, "output_s": 100e-6}},
            "workload": wl, "sim": {"fast_path": fast}, "metrics": {"record_steps": False}}))

    on, off = run(True), run(False)
    assert on.summary["sim"]["run_ahead_steps"] > 0  # decode runs were taken
    cols = ["arrival_s", "first_token_s", "finish_s", "end_s"]
    assert np.array_equal(on.requests.sort_values("request_id")[cols].to_numpy(),
                          off.requests.sort_values("request_id")[cols].to_numpy())

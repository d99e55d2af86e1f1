"""Benchmark clients as they are: vllm bench serve's --max-concurrency semaphore over a request list
sent at --request-rate, aiperf's drained warm-up phase, --random-range-ratio lengths."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import simulate
from simulator.config import scenario_from_dict
from simulator.errors import ConfigError
from simulator.report.bench import bench_result
from simulator.simenv import Environment


def _sc(workload: dict, **engine) -> object:
    return scenario_from_dict({"workload": workload, "engine": {"max_model_len": 8192, **engine},
                               "metrics": {"record_steps": False}})


def _max_in_flight(req) -> int:
    ev = sorted([(a, 1) for a in req["arrival_s"]] + [(e, -1) for e in req["end_s"]])
    level = peak = 0
    for _, d in ev:
        level += d
        peak = max(peak, level)
    return peak


def test_max_concurrency_caps_in_flight_and_sends_the_waiting_in_order():
    wl = {"arrival": {"kind": "poisson", "rate": 200.0}, "num_requests": 60, "max_concurrency": 4,
          "input_len": {"kind": "fixed", "value": 300}, "output_len": {"kind": "fixed", "value": 50}}
    res = simulate(_sc(wl))
    req = res.requests.sort_values("request_id")
    assert res.summary["requests"]["completed"] == 60
    assert _max_in_flight(req) == 4
    # A request that waited for a slot is sent when one ends: at some request's end.
    ends = set(np.round(req["end_s"].to_numpy(), 12))
    late = req.iloc[4:]
    assert all(round(a, 12) in ends for a in late["arrival_s"])
    # Its TTFT counts from when it was sent, as vllm bench serve measures inside the semaphore.
    free = simulate(_sc({**wl, "max_concurrency": None}))
    assert res.summary["ttft_ms"]["mean"] < free.summary["ttft_ms"]["mean"]
    assert bench_result(res)["max_concurrency"] == 4


def test_infinite_rate_with_a_cap_is_a_closed_loop():
    # vllm bench serve --request-rate inf --max-concurrency 8 == 8 closed-loop clients, exactly.
    lens = {"input_len": {"kind": "fixed", "value": 500}, "output_len": {"kind": "fixed", "value": 64}}
    capped = simulate(_sc({"arrival": {"kind": "offline"}, "num_requests": 40,
                           "max_concurrency": 8, **lens}))
    closed = simulate(_sc({"arrival": {"kind": "closed_loop", "concurrency": 8},
                           "num_requests": 40, **lens}))
    cols = ["arrival_s", "first_token_s", "finish_s"]
    a = capped.requests.sort_values("request_id")[cols].to_numpy()
    b = closed.requests.sort_values("request_id")[cols].to_numpy()
    assert np.array_equal(a, b)


def test_warmup_phase_is_drained_then_measured_from_a_fresh_burst():
    c = 4
    wl = {"arrival": {"kind": "closed_loop", "concurrency": c, "warmup_requests": 2 * c},
          "num_requests": 3 * c,
          "input_len": {"kind": "fixed", "value": 2000}, "output_len": {"kind": "fixed", "value": 20}}
    res = simulate(_sc(wl))
    req = res.requests.sort_values("request_id")
    s = res.summary
    assert s["requests"]["arrived"] == 5 * c and s["requests"]["completed"] == 5 * c
    assert s["requests"]["measured"] == 3 * c
    warm, meas = req.iloc[:2 * c], req.iloc[2 * c:]
    start = s["window_s"]["start"]
    # The measured phase starts once every warm-up response is back, all clients at once.
    assert start == pytest.approx(warm["end_s"].max())
    assert (meas["arrival_s"].iloc[:c] == start).all()
    assert (warm["arrival_s"] < start).all()
    # Its statistics are the measured requests' only.
    assert s["ttft_ms"]["mean"] == pytest.approx(meas["ttft_s"].mean() * 1000)


def test_uniform_lengths_mirror_random_range_ratio():
    wl = {"arrival": {"kind": "poisson", "rate": 20.0}, "num_requests": 400,
          "input_len": {"kind": "uniform", "min": 512, "max": 1536},
          "output_len": {"kind": "uniform", "min": 64, "max": 64}}
    req = simulate(_sc(wl)).requests
    lens = req["prompt_tokens"].to_numpy() if "prompt_tokens" in req else req["input_tokens"].to_numpy()
    assert lens.min() >= 512 and lens.max() <= 1536
    assert abs(lens.mean() - 1024) < 40
    assert (req["output_tokens"] == 64).all()
    with pytest.raises(ConfigError, match="max"):
        _sc({**wl, "input_len": {"kind": "uniform", "min": 10, "max": 5}})


def test_max_concurrency_is_refused_where_it_means_nothing():
    with pytest.raises(ConfigError, match=r"closed loop use arrival\.concurrency"):
        _sc({"arrival": {"kind": "closed_loop", "concurrency": 4}, "num_requests": 10,
             "max_concurrency": 2})


@pytest.mark.parametrize("until", [None, 2.9])
def test_open_loop_sender_makes_the_same_events_as_the_open_loop_process(until):
    """The compiled open-loop sender and the SimPy process it replaces: the same sends at the same
    times, in the same order against other events at tied times (event ids), and the same number
    of event ids taken (everything scheduled after them keeps its order)."""

    from simulator.cluster.client import OpenLoopSender, open_loop
    from simulator.workload.generator import OpenLoopStream, RequestSpec

    def play(compiled: bool) -> tuple[list[tuple[float, str]], int]:
        env = Environment(initial_time=0.0)
        log: list[tuple[float, str]] = []

        def ticker():
            for t in (0.0, 1.0, 1.0, 2.5, 3.0, 4.0):
                if t > env.now:
                    yield env.timeout(t - env.now)
                log.append((env.now, f"tick {t}"))

        env.process(ticker())
        times = [0.0, 0.0, 1.0, 1.0, 2.5, 3.0, 3.5]
        # Real specs: the compiled engine checks the types (prompt length k names request k).
        specs = [RequestSpec(k + 1, 1) for k in range(len(times))]
        stream = OpenLoopStream(times=iter(times), specs=iter(specs))
        send = lambda spec: log.append((env.now, f"send {spec.prompt_len - 1}"))  # noqa: E731
        if compiled:
            OpenLoopSender(env, stream, send, until)
        else:
            env.process(open_loop(env, stream, send, until))
        env.process(ticker())
        env.run(until=10.0)
        return log, env.num_events

    assert play(True) == play(False)
    log, _ = play(True)
    assert [e for _, e in log if e.startswith("send")][-1] == ("send 4" if until else "send 6")


"""Workloads end to end through :func:`simulator.run.simulate`: sessions hit the prefix cache, a
user's trace file replays exactly, tenants reach the requests."""

from __future__ import annotations

from pathlib import Path

from simulator import simulate
from simulator.config import scenario_from_dict


def _run(workload: dict, **over):
    data = {"seed": 1, "engine": {"max_model_len": 8192}, "workload": workload, **over}
    return simulate(scenario_from_dict(data))


def test_sessions_hit_the_prefix_cache():
    wl = {"arrival": {"kind": "poisson", "rate": 4}, "system_prompt_tokens": 256,
          "input_len": {"kind": "lognormal", "mean": 300, "cv": 1, "max": 1500},
          "output_len": {"kind": "lognormal", "mean": 100, "cv": 1, "max": 500},
          "sessions": {"turns_mean": 5, "think_time_s": 2}, "num_requests": 400}
    res = _run(wl)
    r = res.summary["requests"]
    assert r["arrived"] == 400 and r["completed"] == 400
    assert res.summary["prefix_cache_hit_rate"] > 0.5
    without = _run({**wl, "sessions": None})
    assert without.summary["prefix_cache_hit_rate"] < res.summary["prefix_cache_hit_rate"] - 0.2


def test_user_trace_replays_every_request(tmp_path: Path):
    p = tmp_path / "log.csv"
    rows = [f"{0.05 * i:.2f},{100 + i},{1 + i % 7}" for i in range(200)]
    p.write_text("timestamp,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    res = _run({"arrival": {"kind": "trace", "file": str(p), "time_scale": 2},
                "num_requests": None})
    req = res.requests.sort_values("arrival_s")
    assert len(req) == 200 and res.summary["requests"]["completed"] == 200
    got = req["input_tokens"].tolist()
    assert got == [100 + i for i in range(200)]
    assert abs(req["arrival_s"].iloc[-1] - 0.05 * 199 / 2) < 1e-9

"""The planner finds the optimum a brute force finds, prunes only what cannot win, and writes its
outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config import scenario_from_dict
from simulator.errors import ConfigError
from simulator.plan import (
    PlanSpec,
    analytic_bounds,
    load_plan_spec,
    pareto_mask,
    plan,
    save_plan,
    slo_verdict,
)
from simulator.run import resolve_deployment, simulate

WORKLOAD = {"num_requests": 300, "arrival": {"kind": "poisson", "rate": 25},
            "input_len": {"kind": "lognormal", "mean": 1500, "cv": 0.8, "min": 16, "max": 6000},
            "output_len": {"kind": "lognormal", "mean": 150, "cv": 0.8, "min": 1, "max": 1024}}
SLO = {"ttft_p90_ms": 250, "tpot_p90_ms": 20}
GPUS, TPS, REPLICAS = ["H100-SXM", "MI300X"], [1, 2], range(1, 4)


def spec_dict() -> dict:
    return {"name": "small", "overrides": {"workload": WORKLOAD, "engine.max_model_len": 8192},
            "slo": SLO, "search": {"gpus": GPUS, "tps": TPS,
                                   "replicas": {"min": 1, "max": max(REPLICAS)}}}


@pytest.fixture(scope="module")
def planned():
    return plan(PlanSpec.model_validate(spec_dict()), Path.cwd(), progress=False)


@pytest.fixture(scope="module")
def brute():
    """Every (GPU, TP, replicas) of the grid simulated."""
    out = {}
    for gpu, tp, r in itertools.product(GPUS, TPS, REPLICAS):
        sc = scenario_from_dict({"fleet": {"gpu": gpu, "tp": tp, "replicas": r},
                                 "engine": {"max_model_len": 8192}, "workload": WORKLOAD,
                                 "slo": SLO})
        s = simulate(sc).summary
        out[(gpu, tp, r)] = (slo_verdict([s])[0], s["cost"]["usd_per_hour"], s["ttft_ms"]["p90"])
    return out


def test_plan_finds_the_brute_force_optimum(planned, brute):
    meeting = {k: v for k, v in brute.items() if v[0]}
    want = min(meeting, key=lambda k: (meeting[k][1], meeting[k][2]))
    best = planned.best
    assert best is not None
    assert (best["gpu"], best["tp"], best["replicas"]) == want
    assert best["usd_per_hour"] == pytest.approx(meeting[want][1])
    # And per GPU type, side by side.
    for gpu in GPUS:
        mine = {k: v for k, v in meeting.items() if k[0] == gpu}
        w = min(mine, key=lambda k: (mine[k][1], mine[k][2]))
        got = planned.best_per_gpu[gpu]
        assert got is not None and (got["gpu"], got["tp"], got["replicas"]) == w
    # It simulated fewer configurations than the brute force did.
    assert planned.simulations < len(brute)


def test_pruning_is_sound(planned, brute):
    df = planned.candidates
    for _, r in df[df["status"] == "pruned"].iterrows():
        if r["reason"].startswith("overloaded"):
            # This and every smaller replica count must miss the SLO.
            for n in range(1, int(r["replicas"]) + 1):
                assert not brute[(r["gpu"], int(r["tp"]), n)][0], (r["gpu"], r["tp"], n)
        elif r["reason"].startswith("costs more"):
            assert r["usd_per_hour"] > planned.best_per_gpu[r["gpu"]]["usd_per_hour"]
    sim = df[df["status"] == "simulated"]
    for _, r in sim.iterrows():
        assert bool(r["met"]) == brute[(r["gpu"], int(r["tp"]), int(r["replicas"]))][0]


def test_capacity_bound_is_above_what_a_replica_achieves():
    # An offline batch saturates one replica: its completion rate cannot beat the bound.
    sc = scenario_from_dict({"engine": {"max_model_len": 8192},
                             "workload": {**WORKLOAD, "num_requests": 400}})
    b = analytic_bounds(sc, resolve_deployment(sc))
    assert b.capacity_rps is not None and b.offered_rps == 25
    off = scenario_from_dict({"engine": {"max_model_len": 8192},
                              "workload": {**WORKLOAD, "num_requests": 400,
                                           "arrival": {"kind": "offline"}}})
    achieved = simulate(off).summary["throughput"]["requests_per_s"]
    assert b.capacity_rps >= achieved
    assert b.min_replicas() == int(25 // b.capacity_rps) + 1
    assert b.min_step_s is not None and b.min_step_s > 0


def test_pessimistic_bound_over_replications():
    def s(att: float) -> dict:
        return {"slo": {"targets": {"ttft_p90_ms": {"attainment": att}}, "tenants": {},
                        "attainment": att}}

    assert slo_verdict([s(0.95)])[0] is True
    # Mean 0.907 ≥ 0.9, but the lower end of the 95% interval is below it.
    assert slo_verdict([s(0.95), s(0.85), s(0.92)])[0] is False
    assert slo_verdict([s(0.95), s(0.96), s(0.955)])[0] is True


def test_pareto_mask():
    df = pd.DataFrame({"status": ["simulated"] * 4 + ["pruned"],
                       "usd_per_hour": [1.0, 2.0, 2.0, 3.0, 0.5],
                       "ttft_ms.p90": [100.0, 50.0, 60.0, 10.0, None]})
    assert list(pareto_mask(df, "ttft_ms.p90")) == [True, True, False, True, False]


def test_plan_command_writes_its_outputs(tmp_path: Path):
    d = spec_dict()
    d["search"] = {"gpus": ["H100-SXM", "H200-SXM"], "tps": [1, 8], "replicas": {"max": 3}}
    d["overrides"]["model"] = {"name": "Llama-3.1-8B"}
    d["overrides"]["workload"] = {**WORKLOAD, "num_requests": 120, "arrival":
                                  {"kind": "poisson", "rate": 10}}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(d))
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["plan", str(spec), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "answer:" in r.output
    p = json.loads((out / "plan.json").read_text())
    assert p["best"]["gpu"] == "H100-SXM" and p["best"]["replicas"] == 1
    assert (out / "pareto.png").stat().st_size > 5000
    assert (out / "best" / "summary.json").is_file()
    cands = pd.read_csv(out / "candidates.csv")
    assert {"gpu", "tp", "replicas", "usd_per_hour", "status", "reason", "pareto"} <= set(cands)


def test_plan_spec_errors_are_one_line(tmp_path: Path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("search:\n  gpus: [H100-SXM]\n  replicas: {min: 4, max: 2}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: search.replicas: replicas.max"):
        load_plan_spec(spec)
    spec.write_text("search: {gpus: [H100-SXM], replicas: {max: 1}}\n")
    r = CliRunner().invoke(app, ["plan", str(spec), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "needs an slo" in r.output


def test_save_plan_roundtrip(planned, tmp_path: Path):
    save_plan(planned, tmp_path)
    p = json.loads((tmp_path / "plan.json").read_text())
    assert p["best"]["usd_per_hour"] == planned.best["usd_per_hour"]
    assert "not searched" in p["disaggregation"]


def test_disaggregated_candidates_are_searched_and_ranked_with_the_rest():
    spec = PlanSpec.model_validate({
        "overrides": {"engine.max_model_len": 16384, "workload": {
            "num_requests": 150, "arrival": {"kind": "poisson", "rate": 8},
            "input_len": {"kind": "lognormal", "mean": 3000, "cv": 0.6, "min": 256, "max": 12000},
            "output_len": {"kind": "lognormal", "mean": 300, "cv": 0.8, "min": 16, "max": 2048}}},
        "slo": {"ttft_p90_ms": 400, "tpot_p90_ms": 10}, "pareto_metric": "tpot_ms.p90",
        "search": {"gpus": ["H100-SXM"], "replicas": {"max": 4},
                   "disaggregation": {"prefill": [1, 2], "decode": [1, 2, 3]}}})
    res = plan(spec, Path.cwd(), progress=False)
    df = res.candidates
    sim = df[df["status"] == "simulated"]
    dis = sim[sim["mode"] != "aggregated"]
    assert len(dis) >= 2 and (dis["prefill"] + dis["decode"] == dis["replicas"]).all()
    assert (sim["usd_per_hour"] == sim["replicas"] * 3.99).all()
    # The answer is the cheapest simulated configuration meeting the SLO (latency breaks ties),
    # whichever mode it is.
    ok = sim[sim["met"].astype(bool)]
    want = ok.sort_values(["usd_per_hour", "tpot_ms.p90"]).iloc[0]
    assert res.best is not None
    assert (res.best["mode"], res.best["replicas"]) == (want["mode"], want["replicas"])
    assert res.to_json()["disaggregation"] == "searched (xPyD)"


DISAGG_BASE = {
    "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16"},
    "fleet": {"gpu": "H100-SXM", "pools": [
        {"name": "prefill", "role": "prefill", "decode_pool": "decode", "replicas": 2},
        {"name": "decode", "role": "decode", "replicas": 2}]},
    "engine": {"max_model_len": 16384},
    "workload": {"num_requests": 150, "arrival": {"kind": "poisson", "rate": 8},
                 "input_len": {"kind": "lognormal", "mean": 3000, "cv": 0.6, "min": 256,
                               "max": 12000},
                 "output_len": {"kind": "lognormal", "mean": 300, "cv": 0.8, "min": 16,
                                "max": 2048}},
    "metrics": {"record_steps": False}}


def test_a_base_with_pools_plans_with_disaggregation_and_the_feasible_frontier_comes_first(
        tmp_path: Path):
    # Before (#22): every candidate was "invalid: fleet.replicas is for single-pool fleets".
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(DISAGG_BASE))
    spec = {"base": "base.yaml", "slo": {"ttft_p90_ms": 400, "tpot_p90_ms": 12},
            "pareto_metric": "tpot_ms.p90",
            "search": {"gpus": ["H100-SXM"], "replicas": {"max": 3},
                       "knobs": {"engine.max_num_seqs": [64, 256]},
                       "disaggregation": {"prefill": [1], "decode": [1, 2]}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    res = plan(load_plan_spec(tmp_path / "spec.yaml"), tmp_path, progress=False)
    df = res.candidates
    sim = df[df["status"] == "simulated"]
    assert set(sim["mode"]) >= {"aggregated", "1P1D"}
    assert res.best is not None and "fleet.pools" in res.notes[0]
    # The frontier is that of the candidates meeting the SLO; the others have their own.
    assert df["pareto"].any() and df.loc[df["pareto"], "met"].astype(bool).all()
    assert not df.loc[df["pareto_infeasible"], "met"].astype(bool).any()
    r = CliRunner().invoke(app, ["plan", str(tmp_path / "spec.yaml"), "--out",
                                 str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    feasible = r.output.index("Pareto frontier of the candidates meeting the SLO")
    missing = r.output.index("NOT meeting the SLO")
    assert feasible < missing < r.output.index("answer:")
    # The knob that differs between otherwise identical rows is a column of the frontier table.
    assert "engine.max_num_seqs" in r.output[feasible:missing]


def test_a_base_whose_pools_serve_several_models_is_a_one_line_error(tmp_path: Path):
    base = {**DISAGG_BASE, "fleet": {"pools": [
        {"name": "a"}, {"name": "b", "served_model": "other"}]}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = PlanSpec.model_validate({"base": "base.yaml", "slo": {"ttft_p90_ms": 400},
                                    "search": {"gpus": ["H100-SXM"], "replicas": {"max": 1}}})
    with pytest.raises(ConfigError, match="serve 2 models"):
        plan(spec, tmp_path, progress=False)

"""Recorder: each client request and each attempt ends once; the frames keep the planner's columns;
fleet runs with every random choice on are reproducible bit for bit."""

from __future__ import annotations

import pytest
import simpy

from simulator import simulate
from simulator.cluster.request import Attempt, ClientRequest
from simulator.engine.request import Request
from simulator.metrics import names
from simulator.metrics.recorder import REPLICA_COLUMNS, Recorder
from simulator.workload.generator import RequestSpec
from tests.cluster.helpers import scenario


def _creq(rec: Recorder, i: int) -> ClientRequest:
    env = simpy.Environment()
    c = ClientRequest(i, RequestSpec(10, 2, tenant="t"), 0.0, "default", env.event(), False)
    rec.arrived(c)
    return c


def _attempt(rec: Recorder, c: ClientRequest, eid: int) -> Attempt:
    a = Attempt(c, len(c.attempts), Request(eid, 10, 2), 0.0, "t", 2)
    c.attempts.append(a)
    rec.attempt(a)
    return a


def test_ending_twice_raises_and_the_request_takes_its_last_attempts_outcome():
    rec = Recorder()
    c = _creq(rec, 0)
    a0 = _attempt(rec, c, 0)
    rec.attempt_end(a0, names.TIMED_OUT, names.R_TIMEOUT, 1.0)
    with pytest.raises(RuntimeError, match="ended twice"):
        rec.attempt_end(a0, names.COMPLETED, "", 2.0)
    a1 = _attempt(rec, c, 1)
    rec.check_conservation()  # in flight, one open attempt
    rec.attempt_end(a1, names.FAILED, names.R_CRASHED, 2.0)
    rec.end(c, names.COMPLETED, "", 2.0)  # inconsistent with its last attempt
    with pytest.raises(RuntimeError, match="conservation violated"):
        rec.check_conservation()
    with pytest.raises(RuntimeError, match="ended twice"):
        rec.end(c, names.FAILED, names.R_CRASHED, 2.0)


def test_counts_add_up_with_the_failed_outcome():
    rec = Recorder()
    for i, outcome in enumerate([names.COMPLETED, names.FAILED, names.REJECTED]):
        c = _creq(rec, i)
        a = _attempt(rec, c, i)
        rec.attempt_end(a, outcome, "", 1.0)
        rec.end(c, outcome, "", 1.0)
    _attempt(rec, _creq(rec, 3), 3)
    c = rec.counts()
    assert c["arrived"] == 4 and c[names.FAILED] == 1 and c[names.IN_FLIGHT] == 1
    rec.check_conservation()
    assert list(rec.replica_frame(5.0).columns) == REPLICA_COLUMNS


def test_request_rows_carry_the_planner_columns_and_itl_of_the_final_attempt_only():
    sc = scenario(workload={"num_requests": 60}, engine={"max_num_seqs": 4},
                  clients={"timeout_s": 3.0, "retry": {"max_attempts": 2}})
    res = simulate(sc)
    df = res.requests
    for col in ("tenant", "outcome", "ttft_s", "tpot_s", "e2e_s", "output_tokens", "input_tokens",
                "replica", "attempts", "pool", "model", "region", "reason", "end_s"):
        assert col in df.columns
    assert (df["attempts"] > 1).any()
    # ITL rows belong to the attempt that served each request: their mean matches the row's.
    per = res.itl.groupby("request_id")["itl_s"].mean()
    rows = df.set_index("request_id").loc[per.index, "itl_mean_s"]
    assert (abs(per - rows) < 1e-9).all()
    r = res.summary["requests"]
    assert r["arrived"] == r["completed"] + r["rejected"] + r["timed_out"] + r["failed"] \
        + r["in_flight"]
    assert res.summary["fleet"]["attempts"] == len(res.extra["attempts"]) == df["attempts"].sum()


def test_fleet_runs_with_every_random_choice_are_reproducible():
    sc = scenario(seed=11, fleet={"replicas": 3, "router": {"kind": "power_of_two"},
                                  "regions": [{"name": "default", "client_share": 2},
                                              {"name": "far", "client_share": 1,
                                               "client_rtt_s": 0.05}]},
                  workload={"num_requests": None, "duration_s": 20,
                            "arrival": {"kind": "poisson", "rate": 20}},
                  clients={"timeout_s": 4, "retry": {"max_attempts": 3}},
                  faults={"mtbf": {"mean_s": 15, "repair_s": 3}})
    a, b = simulate(sc), simulate(sc)
    assert a.requests.equals(b.requests)
    assert a.extra["attempts"].equals(b.extra["attempts"])
    assert a.extra["replicas"].equals(b.extra["replicas"])
    c = simulate(sc.model_copy(update={"seed": 12}))
    assert not c.requests["replica"].equals(a.requests["replica"])

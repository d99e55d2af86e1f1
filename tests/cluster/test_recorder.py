"""Recorder: the frames keep the planner's columns; rows kept in typed columns give the frames
``from_records`` would; fleet runs with every random choice on are reproducible bit for bit. (Each
client request and attempt ending once: tests/cluster/test_ledger.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator import simulate
from simulator.config import load_scenario
from simulator.metrics.recorder import _Table
from simulator.run import Results
from tests.cluster.helpers import scenario


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


def test_taking_rows_as_requests_end_keeps_the_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are taken as requests end and kept in typed columns a few rows at a time; with retries
    (engine ids differ from client ids) the frames are the same as when every object is kept to
    the end and its rows taken at once."""
    import simulator.cluster.ledger as ledger
    import simulator.metrics.recorder as recorder

    def run() -> Results:
        return simulate(load_scenario("scenarios/retry-storm.yaml",
                                      ["workload.duration_s=75", "metrics.record_steps=true"]))

    monkeypatch.setattr(ledger, "TAKE_AT_END", False)
    whole = run()
    monkeypatch.setattr(ledger, "TAKE_AT_END", True)
    monkeypatch.setattr(recorder, "FLUSH_ROWS", 5)  # many chunks of columns
    taken = run()
    for name in ("requests", "itl", "steps", "timeseries"):
        pd.testing.assert_frame_equal(getattr(whole, name), getattr(taken, name),
                                      check_exact=True)
    for name in ("attempts", "replicas"):
        pd.testing.assert_frame_equal(whole.extra[name], taken.extra[name], check_exact=True)
    assert whole.summary["fleet"]["retries"] > 0


@pytest.mark.parametrize("flush", [2, 4096])
def test_a_table_builds_the_frame_from_records_would(monkeypatch: pytest.MonkeyPatch,
                                                      flush: int) -> None:
    """Same values, dtypes, column order and row order as ``DataFrame.from_records``: a float
    column that only held ints is int64, NaN and bools and strings keep their types, rows not kept
    join at the end, the order column sorts them, and no rows give from_records' empty frame."""
    import simulator.metrics.recorder as recorder

    monkeypatch.setattr(recorder, "FLUSH_ROWS", flush)
    cols = ["id", "n", "t0", "t", "x", "name", "flag", "k"]
    rows = [(3, 10, 0, 0.5, np.nan, "a", False, -1), (1, 20, 0, 1, 2.5, "b", True, 7),
            (2, 30, 0, 2.25, 1.0, "", False, 7), (0, 40, 0, 3.0, 0.0, "a", True, -1)]
    table = _Table("qiddkkkk")
    for r in rows[:3]:
        table.add(r)
    got = table.frame(cols, [rows[3]], order_by=0)
    want = pd.DataFrame.from_records(sorted(rows), columns=cols)
    assert dict(got.dtypes) == dict(want.dtypes) and got["t0"].dtype == np.int64
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert table.column(0).tolist() == [3, 1, 2]  # insertion order; the extra row is not kept
    pd.testing.assert_frame_equal(table.frame(cols[:3]), pd.DataFrame.from_records(
        [r[:3] for r in rows[:3]], columns=cols[:3]), check_exact=True)
    empty = _Table("qd").frame(["a", "b"])
    pd.testing.assert_frame_equal(empty, pd.DataFrame.from_records([], columns=["a", "b"]))

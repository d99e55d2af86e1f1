"""The ``table`` step-time backend: schema errors, interpolation, clamping, and a scenario end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import simulate
from simulator.config import scenario_from_dict
from simulator.engine.request import Request
from simulator.engine.scheduler import StepPlan
from simulator.engine.step_time_table import TableStepTime
from simulator.errors import ConfigError

GRID = """\
# a small measured table: decode steps and one prefill size
num_tokens,num_seqs,avg_context,step_time_ms
1,1,0,10
1,1,1000,12
64,1,0,14
64,1,1000,16
64,64,0,20
64,64,1000,40
"""


def write(tmp_path: Path, text: str, name: str = "steps.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def plan(new_tokens: list[int], contexts: list[int]) -> StepPlan:
    reqs = [Request(i, 10_000, 10) for i in range(len(new_tokens))]
    return StepPlan(requests=reqs, num_new_tokens=new_tokens, context_lens=contexts)


def test_exact_points_and_linear_interpolation(tmp_path):
    t = TableStepTime.from_csv(write(tmp_path, GRID))
    assert t.axes == ("num_tokens", "num_seqs", "avg_context")
    assert t.at((1, 1, 0)) == pytest.approx(0.010)
    assert t.at((64, 64, 1000)) == pytest.approx(0.040)
    # Halfway along context at (64, 64): (20 + 40) / 2 ms.
    assert t.at((64, 64, 500)) == pytest.approx(0.030)
    # Halfway along tokens at 1 sequence, context 0: (10 + 14) / 2 ms.
    assert t.at((32.5, 1, 0)) == pytest.approx(0.012)
    # The plan's coordinates: 4 decodes (4 tokens, 4 seqs) at mean context 500.
    p = plan([1, 1, 1, 1], [400, 600, 500, 500])
    assert t.query(p) == (4.0, 4.0, 500.0)
    assert t.predict(p) == pytest.approx(t.at((4, 4, 500)))
    assert t.predict(StepPlan()) == 0.0


def test_unmeasured_corners_are_left_out_and_weights_renormalised(tmp_path):
    # (1 token, 64 seqs) cannot exist, so at (32.5, 32.5, 0) the three measured corners share the
    # weight: (1,1)=10 w .25, (64,1)=14 w .25, (64,64)=20 w .25 → mean 14.667 ms.
    t = TableStepTime.from_csv(write(tmp_path, GRID))
    assert t.at((32.5, 32.5, 0)) == pytest.approx((10 + 14 + 20) / 3 / 1000)


def test_extrapolation_clamps_to_the_edges(tmp_path):
    t = TableStepTime.from_csv(write(tmp_path, GRID))
    assert t.at((10_000, 64, 1000)) == pytest.approx(0.040)
    assert t.at((64, 64, 99_999)) == pytest.approx(0.040)
    assert t.at((0, 0, -5)) == pytest.approx(0.010)


def test_nearest_mode_and_table_without_context(tmp_path):
    t = TableStepTime.from_csv(write(tmp_path, GRID), interpolation="nearest")
    assert t.at((60, 60, 900)) == pytest.approx(0.040)
    t2 = TableStepTime.from_csv(write(tmp_path, "num_seqs,step_time_ms,num_tokens\n"
                                                "1,5,1\n1,9,1\n8,20,8\n", "b.csv"))
    assert t2.axes == ("num_tokens", "num_seqs")
    assert t2.at((1, 1)) == pytest.approx(0.007)  # repeat measurements → median
    # (4, 4): only the (1, 1) and (8, 8) corners were measured, weights (4/7)² and (3/7)².
    w1, w8 = (4 / 7) ** 2, (3 / 7) ** 2
    assert t2.predict(plan([1, 1, 1, 1], [10, 10, 10, 10])) == pytest.approx(
        (w1 * 0.007 + w8 * 0.020) / (w1 + w8))


@pytest.mark.parametrize("text, where, what", [
    ("num_tokens,num_seqs,step_time_ms\n4,2,abc\n", ":2:", "column 3 ('step_time_ms'): not a number"),
    ("num_tokens,num_seqs,step_time_ms,gpu\n4,2,1,h100\n", ":1:", "column 4 ('gpu'): unknown column"),
    ("num_tokens,step_time_ms\n4,1\n", ":1:", "missing column(s) num_seqs"),
    ("# c\nnum_tokens,num_seqs,step_time_ms\n4,8,1\n", ":3:",
     "column 2 ('num_seqs'): 8 sequences cannot share 4 tokens"),
    ("num_tokens,num_seqs,step_time_ms\n4.5,2,1\n", ":2:", "column 1 ('num_tokens'): must be an integer"),
    ("num_tokens,num_seqs,step_time_ms\n4,2,0\n", ":2:", "column 3 ('step_time_ms'): must be > 0"),
    ("num_tokens,num_seqs,step_time_ms,avg_context\n4,2,1,-3\n", ":2:",
     "column 4 ('avg_context'): must be ≥ 0"),
    ("num_tokens,num_seqs,step_time_ms\n4,2\n", ":2:", "expected 3 fields"),
    ("num_tokens,num_seqs,step_time_ms\n", ":1:", "no data rows"),
    ("num_tokens,num_seqs,step_time_ms\n4,2,inf\n", ":2:", "must be finite"),
])
def test_schema_errors_are_one_line_with_file_line_and_column(tmp_path, text, where, what):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        TableStepTime.from_csv(p)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"{p}{where}" in msg
    assert what in msg


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TableStepTime.from_csv(tmp_path / "nope.csv")


def table_scenario(tmp_path: Path, **step_time):
    return scenario_from_dict({
        "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16"},
        "fleet": {"gpu": "H100-SXM", "tp": 1},
        # An instantaneous front end: the four first prompts share the first step.
        "engine": {"max_model_len": 4096, "max_num_batched_tokens": 2048,
                   "api_server": {"enabled": False}},
        "step_time": {"backend": "table", "table_file": "steps.csv", **step_time},
        "workload": {"arrival": {"kind": "closed_loop", "concurrency": 4},
                     "input_len": {"kind": "fixed", "value": 100},
                     "output_len": {"kind": "fixed", "value": 11},
                     "num_requests": 8},
        "metrics": {"record_steps": True},
        "base_dir": str(tmp_path),
    })


def test_scenario_with_a_table_end_to_end(tmp_path):
    # Constant 5 ms decode steps, 20 ms for any step with a prefill chunk (≥ 100 tokens).
    write(tmp_path, "num_tokens,num_seqs,step_time_ms\n1,1,5\n4,4,5\n100,1,20\n400,4,20\n")
    res = simulate(table_scenario(tmp_path))
    steps = res.steps
    decode = steps[steps["num_prefill_tokens"] == 0]
    assert len(decode) > 0
    assert decode["duration_s"].to_numpy() == pytest.approx(0.005)
    first = steps.iloc[0]
    assert first["num_tokens"] == 400 and first["duration_s"] == pytest.approx(0.020)
    # Every request: TTFT = the 20 ms prefill step (the first wave), TPOT = 5 ms decode steps.
    req = res.requests
    assert req["output_tokens"].eq(11).all()
    assert req.loc[req["request_id"] < 4, "ttft_s"].to_numpy() == pytest.approx(0.020)
    assert req["tpot_s"].to_numpy() == pytest.approx(0.005)


def test_table_config_cross_checks(tmp_path):
    with pytest.raises(ConfigError, match="needs table_file"):
        scenario_from_dict({"step_time": {"backend": "table"}})
    with pytest.raises(ConfigError, match="no effect with backend 'table'"):
        scenario_from_dict({"step_time": {"backend": "table", "table_file": "x.csv",
                                          "overrides": {"gemm_efficiency": 0.5}}})
    with pytest.raises(ConfigError, match="only read by backend 'table'"):
        scenario_from_dict({"step_time": {"table_file": "x.csv"}})
    # A schema error in the table surfaces from simulate() as one line naming the file.
    write(tmp_path, "num_tokens,num_seqs,step_time_ms\n1,1,fast\n")
    with pytest.raises(ConfigError, match=r"steps\.csv:2: column 3"):
        simulate(table_scenario(tmp_path))

"""Whether a run stayed inside its calibration's measured regime (simulator.metrics.regime)."""

from __future__ import annotations

import pandas as pd

from simulator import load_scenario, simulate
from simulator.metrics.regime import describe, regime_summary

REGIME = {"running_seqs": [1, 128], "tokens_per_step": [1, 8192], "context": [128, 4224],
          "tp": [8], "source": "test"}


def _samples(running: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"t": range(len(running)), "num_requests_running": running})


def test_share_of_busy_samples_above_the_fitted_batch_and_engine_limits_beyond_it():
    s = regime_summary(_samples([0, 0, 64, 200, 300, 100]), calibration="X__vllm-1 (d)",
                       regime=REGIME, tp=1, max_num_batched_tokens=16384, max_model_len=2048)
    out = s["outside"]
    # Idle samples do not count: 2 of the 4 busy samples ran more than 128 sequences.
    assert out["running_seqs_share"] == 0.5 and out["running_seqs_max"] == 300
    assert out["tokens_per_step"] is True and out["context"] is False and out["tp"] is True
    assert "50% of busy time had > 128 running sequences" in s["note"]
    assert "tp=1 was not measured" in s["note"] and "X__vllm-1 was fitted on" in s["note"]


def test_inside_the_regime_says_so_and_no_regime_says_unvalidated():
    s = regime_summary(_samples([10, 20]), calibration="X (d)", regime=REGIME, tp=8,
                       max_num_batched_tokens=8192, max_model_len=4096)
    assert s["outside"] == {"running_seqs_share": 0.0, "running_seqs_max": 20.0,
                            "tokens_per_step": False, "context": False, "tp": False}
    assert s["note"].startswith("inside what X was fitted on")
    none = regime_summary(_samples([10]), calibration="prior", regime={}, tp=1,
                          max_num_batched_tokens=8192, max_model_len=4096)
    assert none["outside"] is None and "unvalidated" in none["note"]
    assert describe(REGIME) == ("1–128 running sequences, ≤ 8192 tokens per step, "
                                "context ≤ 4224, tp 8")


def test_a_run_reports_its_regime_the_same_with_and_without_step_rows():
    sc = load_scenario("scenarios/mi300x-70b-fp8.yaml",
                       overrides=["workload.num_requests=60", "metrics.record_steps=true"])
    on = simulate(sc).summary["regime"]
    off = simulate(sc.model_copy(update={"metrics": sc.metrics.model_copy(
        update={"record_steps": False})})).summary["regime"]
    assert on == off
    # Every shipped calibration records its regime: MI300X was fitted at TP8 only.
    assert on["fitted"]["tp"] == [8] and on["outside"]["tp"] is True
    assert on["fitted"]["running_seqs"][1] >= 1500

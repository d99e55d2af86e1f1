"""`--format vllm-bench` / `--save-bench`: vLLM's printed block and --save-result keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from simulator import load_scenario, simulate
from simulator.cli import app
from simulator.report.bench import bench_result, format_block

#: Keys of vllm/benchmarks/serve.py's result_json without --save-detailed (commit 009e6d4a),
#: with the default percentile 99 and E2EL added to the percentile metrics.
VLLM_KEYS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency", "duration", "completed", "failed",
    "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "output_throughput", "total_token_throughput", "latencies", "queue_times",
    "max_output_tokens_per_s", "max_concurrent_requests", "rtfx",
    *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
      for s in ("mean", "median", "std", "p99")),
}


def test_save_bench_keys_and_block(tmp_path: Path):
    f = tmp_path / "bench.json"
    r = CliRunner().invoke(app, ["run", "--set", "workload.num_requests=150", "--format",
                                 "vllm-bench", "--save-bench", str(f)])
    assert r.exit_code == 0, r.output
    d = json.loads(f.read_text())
    assert set(d) == VLLM_KEYS
    lines = r.output.splitlines()
    assert lines[0] == "=" * 12 + " Serving Benchmark Result " + "=" * 12
    for label in ("Successful requests:", "Request throughput (req/s):",
                  "Output token throughput (tok/s):", "Mean TTFT (ms):", "Median TPOT (ms):",
                  "P99 ITL (ms):", "Mean E2EL (ms):"):
        assert any(x.startswith(label) for x in lines), label
    # vLLM's layout: a 40-character label column, then the value
    succ = next(x for x in lines if x.startswith("Successful requests:"))
    assert succ[41:].strip() == str(d["completed"]) == "150"
    assert "Request rate configured (RPS):           10.00" in r.output


def test_bench_figures_agree_with_summary():
    res = simulate(load_scenario(None, ["workload.num_requests=200", "slo.ttft_p90_ms=100"]))
    b = bench_result(res)
    s = res.summary
    assert b["completed"] == s["requests"]["completed"]
    assert np.isclose(b["request_throughput"], s["throughput"]["requests_per_s"])
    assert np.isclose(b["output_throughput"], s["throughput"]["output_tokens_per_s"])
    assert np.isclose(b["mean_ttft_ms"], s["ttft_ms"]["mean"])
    assert np.isclose(b["median_ttft_ms"], s["ttft_ms"]["p50"])
    assert np.isclose(b["p99_e2el_ms"], s["e2e_ms"]["p99"])
    assert np.isclose(b["mean_itl_ms"], s["itl_ms"]["mean"])
    assert np.isclose(b["request_goodput"], s["slo"]["goodput_rps"])
    assert 1 <= b["max_concurrent_requests"] <= 200
    # the peak one-second bucket cannot be below the mean rate
    assert b["max_output_tokens_per_s"] >= b["output_throughput"]
    assert "Request goodput (req/s):" in format_block(b)


def test_bench_peak_tokens_without_itl_rows():
    a = bench_result(simulate(load_scenario(None, ["workload.num_requests=100"])))
    b = bench_result(simulate(load_scenario(None, ["workload.num_requests=100",
                                                   "metrics.record_itl=false"])))
    assert b["mean_itl_ms"] == 0.0  # no gaps recorded: vLLM's np.mean(itls or 0)
    assert abs(a["max_output_tokens_per_s"] - b["max_output_tokens_per_s"]) \
        <= 0.05 * a["max_output_tokens_per_s"]


def test_closed_loop_records_concurrency():
    res = simulate(load_scenario(None, ["workload.arrival={kind: closed_loop, concurrency: 4}",
                                        "workload.num_requests=40"]))
    b = bench_result(res)
    assert b["max_concurrency"] == 4 and b["request_rate"] == "inf"
    assert b["max_concurrent_requests"] <= 4
    assert "Maximum request concurrency:" in format_block(b)
    assert "Request rate configured" not in format_block(b)


def test_format_rejects_unknown_and_replications():
    r = CliRunner().invoke(app, ["run", "--format", "csv"])
    assert r.exit_code == 2 and "--format" in r.output
    r = CliRunner().invoke(app, ["run", "--format", "vllm-bench", "--replications", "2"])
    assert r.exit_code == 2

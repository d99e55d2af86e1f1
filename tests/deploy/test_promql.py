"""The PromQL forms on vLLM metrics the autoscaler can evaluate (simulator.deploy.promql)."""

from __future__ import annotations

import pytest

from simulator.deploy.promql import Query, format_query, parse_query
from simulator.errors import ConfigError


@pytest.mark.parametrize(("q", "want"), [
    ("sum(vllm:num_requests_waiting)", Query("num_requests_waiting", "sum", None)),
    ('sum(avg_over_time(vllm:num_requests_waiting{model_name="m"}[2m]))',
     Query("num_requests_waiting", "sum", 120.0, '{model_name="m"}')),
    ("avg(vllm:gpu_cache_usage_perc)", Query("kv_cache_usage_perc", "avg", None)),
    ("sum(rate(vllm:generation_tokens_total[30s]))", Query("generation_tokens_per_s", "sum", 30.0)),
    ("histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
     Query("time_to_first_token_p90_s", "quantile", 60.0)),
    ("sum(vllm:num_requests_running + vllm:num_requests_waiting)", Query("in_flight", "sum", None)),
    ("sum(vllm:num_requests_waiting) + sum(vllm:num_requests_running)",
     Query("in_flight", "sum", None)),
    ("histogram_quantile(0.9, sum(rate(vllm:time_to_first_token_seconds_bucket[1m])) by (le))",
     Query("time_to_first_token_p90_s", "quantile", 60.0)),
])
def test_accepted(q: str, want: Query) -> None:
    assert parse_query(q, "t") == want


@pytest.mark.parametrize(("q", "part"), [
    ("sum(vllm:num_requests_waiting) * 2", "*: arithmetic"),
    ("sum(vllm:num_requests_running) / count(vllm:num_requests_running)", "/: arithmetic"),
    ("sum by (pod) (vllm:num_requests_waiting)", "by (pod): returns one series per label set"),
    ("max(vllm:num_requests_waiting)", "max(…): aggregate over the pods"),
    ("vllm:num_requests_waiting", "vllm:num_requests_waiting: aggregate over the pods"),
    ("sum(rate(vllm:prompt_tokens_total[1m]))", "vllm:prompt_tokens_total: not a metric"),
    ("sum(rate(vllm:num_requests_waiting[1m]))", "rate() of a gauge"),
    ("sum(vllm:generation_tokens_total)", "a counter is read as rate"),
    ("sum(increase(vllm:generation_tokens_total[1m]))", "increase(…): not a function"),
    ("histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
     "quantile 0.99: the simulator's TTFT signal is the p90"),
    ("histogram_quantile(0.9, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1m])))",
     "vllm:e2e_request_latency_seconds_bucket: the simulator's latency signal"),
    ("sum(avg_over_time(vllm:num_requests_waiting[1x]))", "not a PromQL duration"),
    ("sum(vllm:num_requests_running + vllm:kv_cache_usage_perc)",
     "the one sum the simulator evaluates is running + waiting"),
    ("avg(vllm:num_requests_running + vllm:num_requests_waiting)",
     "the one sum the simulator evaluates is running + waiting"),
])
def test_refused_naming_the_part(q: str, part: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_query(q, "f.yaml: trigger")
    assert str(e.value).startswith("f.yaml: trigger")
    assert part in str(e.value)


@pytest.mark.parametrize("metric", ["num_requests_waiting", "num_requests_running",
                                    "kv_cache_usage_perc", "generation_tokens_per_s"])
def test_format_parses_back(metric: str) -> None:
    for agg in ("sum", "avg"):
        q = parse_query(format_query(metric, agg, 90.0, '{model_name="x"}'), "t")  # type: ignore[arg-type]
        assert (q.metric, q.aggregation, q.window_s) == (metric, agg, 90.0)
    q = parse_query(format_query("in_flight", "sum", 60.0, '{model_name="x"}'), "t")
    assert (q.metric, q.aggregation, q.window_s) == ("in_flight", "sum", 60.0)
    q = parse_query(format_query("time_to_first_token_p90_s", "avg", 60.0), "t")
    assert (q.metric, q.aggregation, q.window_s) == ("time_to_first_token_p90_s", "quantile", 60.0)

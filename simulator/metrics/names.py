"""Metric and column names in one place.

Gauge names follow vLLM's Prometheus metrics (``vllm:num_requests_running`` …) so a planner can hold a
simulated time series against a production dashboard.
"""

NUM_REQUESTS_RUNNING = "num_requests_running"
NUM_REQUESTS_WAITING = "num_requests_waiting"
KV_CACHE_USAGE_PERC = "kv_cache_usage_perc"
NUM_PREEMPTIONS = "num_preemptions_total"
PREFIX_CACHE_QUERIES = "prefix_cache_queries"
PREFIX_CACHE_HITS = "prefix_cache_hits"
TIME_TO_FIRST_TOKEN = "time_to_first_token_seconds"
INTER_TOKEN_LATENCY = "inter_token_latency_seconds"
E2E_REQUEST_LATENCY = "e2e_request_latency_seconds"

# Request outcomes: every request ends in exactly one of these (or is still in flight at the end).
COMPLETED = "completed"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
IN_FLIGHT = "in_flight"
OUTCOMES = (COMPLETED, REJECTED, TIMED_OUT, IN_FLIGHT)

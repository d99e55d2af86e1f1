"""Metric and column names in one place.

Gauge names follow vLLM's Prometheus metrics (``vllm:num_requests_running`` …) so a planner can hold a
simulated time series against a production dashboard.

Every name is ``Final``: the compiled engine (:mod:`simulator._native`) then uses the string itself,
not a lookup of this module's attribute, wherever it says ``names.COMPLETED``.
"""

from typing import Final

NUM_REQUESTS_RUNNING: Final = "num_requests_running"
NUM_REQUESTS_WAITING: Final = "num_requests_waiting"
KV_CACHE_USAGE_PERC: Final = "kv_cache_usage_perc"
NUM_PREEMPTIONS: Final = "num_preemptions_total"
PREFIX_CACHE_QUERIES: Final = "prefix_cache_queries"
PREFIX_CACHE_HITS: Final = "prefix_cache_hits"
TIME_TO_FIRST_TOKEN: Final = "time_to_first_token_seconds"
INTER_TOKEN_LATENCY: Final = "inter_token_latency_seconds"
E2E_REQUEST_LATENCY: Final = "e2e_request_latency_seconds"

# Request outcomes: every client request (and every attempt of it) ends in exactly one of these,
# or is still in flight at the end.
COMPLETED: Final = "completed"
REJECTED: Final = "rejected"
"""Refused with an HTTP status before being served (400, 401, 429, 503); the reason says which."""
TIMED_OUT: Final = "timed_out"
"""The client gave up (``clients.timeout_s`` / ``first_token_timeout_s``)."""
FAILED: Final = "failed"
"""Accepted, then lost with its replica (crash, preemption, zone loss): HTTP 502."""
IN_FLIGHT: Final = "in_flight"
OUTCOMES: Final = (COMPLETED, REJECTED, TIMED_OUT, FAILED, IN_FLIGHT)

# Reasons (the ``reason`` column): an HTTP status, then a short cause.
R_INVALID: Final = "400 prompt + max_tokens exceeds max_model_len"
R_UNAUTHORIZED: Final = "401 unknown API key"
R_RATE_REQUESTS: Final = "429 rate limit: requests per minute"
R_RATE_TOKENS: Final = "429 rate limit: tokens per minute"
R_QUOTA: Final = "429 daily token quota spent"
R_SHED: Final = "429 load shed: fleet queue over threshold"
R_SATURATED: Final = "429 all replicas saturated"
R_QUEUE_FULL: Final = "429 router queue full"
R_NO_REPLICA: Final = "503 no healthy replica"
R_UNREACHABLE: Final = "502 replica unreachable"
R_CRASHED: Final = "502 replica failed"
R_TIMEOUT: Final = "client timeout"
R_FIRST_TOKEN_TIMEOUT: Final = "client timeout: no first token"

# Replica lifetime end reasons (Results.extra["replicas"]).
END_RUN: Final = "run_end"
END_CRASH: Final = "crash"
END_PREEMPTED: Final = "spot_preemption"
END_ZONE: Final = "zone_loss"

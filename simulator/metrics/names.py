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

# Request outcomes: every client request (and every attempt of it) ends in exactly one of these,
# or is still in flight at the end.
COMPLETED = "completed"
REJECTED = "rejected"
"""Refused with an HTTP status before being served (400, 401, 429, 503); the reason says which."""
TIMED_OUT = "timed_out"
"""The client gave up (``clients.timeout_s`` / ``first_token_timeout_s``)."""
FAILED = "failed"
"""Accepted, then lost with its replica (crash, preemption, zone loss): HTTP 502."""
IN_FLIGHT = "in_flight"
OUTCOMES = (COMPLETED, REJECTED, TIMED_OUT, FAILED, IN_FLIGHT)

# Reasons (the ``reason`` column): an HTTP status, then a short cause.
R_INVALID = "400 prompt + max_tokens exceeds max_model_len"
R_UNAUTHORIZED = "401 unknown API key"
R_RATE_REQUESTS = "429 rate limit: requests per minute"
R_RATE_TOKENS = "429 rate limit: tokens per minute"
R_QUOTA = "429 daily token quota spent"
R_SHED = "429 load shed: fleet queue over threshold"
R_SATURATED = "429 all replicas saturated"
R_QUEUE_FULL = "429 router queue full"
R_NO_REPLICA = "503 no healthy replica"
R_UNREACHABLE = "502 replica unreachable"
R_CRASHED = "502 replica failed"
R_TIMEOUT = "client timeout"
R_FIRST_TOKEN_TIMEOUT = "client timeout: no first token"

# Replica lifetime end reasons (Results.extra["replicas"]).
END_RUN = "run_end"
END_CRASH = "crash"
END_PREEMPTED = "spot_preemption"
END_ZONE = "zone_loss"

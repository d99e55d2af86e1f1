"""Flat records of what happened, turned into DataFrames once, at the end.

What this models: the observability a real deployment has — per-request logs (arrival, first token,
finish, tokens, cache hits, preemptions, replica), per-step engine logs, and gauges scraped from each
replica at an interval (vLLM's Prometheus gauges). Rows are appended as plain tuples during the run
(cheap), and converted to pandas DataFrames only in :meth:`Recorder.frames`.

It also enforces conservation: every request ends exactly once — completed, rejected or timed out —
or is still in flight when the run stops; ending one twice is a bug and raises.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from simulator.engine.request import Request
from simulator.metrics import names

REQUEST_COLUMNS = [
    "request_id", "replica", "outcome", "reason", "arrival_s", "scheduled_s", "first_token_s",
    "finish_s", "input_tokens", "output_tokens", "cached_tokens", "preemptions", "priority",
    "itl_mean_s", "itl_max_s",
]
STEP_COLUMNS = [
    "replica", "start_s", "duration_s", "num_seqs", "num_tokens", "num_prefill_tokens",
    "num_decode_seqs", "num_new", "num_preempted", "num_waiting", "kv_cache_usage_perc",
]
SAMPLE_COLUMNS = [
    "time_s", "replica", names.NUM_REQUESTS_RUNNING, names.NUM_REQUESTS_WAITING,
    names.KV_CACHE_USAGE_PERC, "in_system",
]


@dataclass
class Recorder:
    record_steps: bool = True
    requests: list[Request] = field(default_factory=list)
    replica_of: dict[int, int] = field(default_factory=dict)
    outcome: dict[int, tuple[str, str]] = field(default_factory=dict)
    steps: list[tuple] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)
    itl_values: array = field(default_factory=lambda: array("d"))
    itl_owner: array = field(default_factory=lambda: array("q"))
    num_steps: int = 0

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, req: Request) -> None:
        self.requests.append(req)

    def routed(self, req: Request, replica: int) -> None:
        self.replica_of[req.request_id] = replica

    def end(self, req: Request, outcome: str, reason: str = "") -> None:
        """Record the request's one and only ending."""
        if req.request_id in self.outcome:
            raise RuntimeError(f"request {req.request_id} ended twice "
                               f"({self.outcome[req.request_id][0]} then {outcome})")
        self.outcome[req.request_id] = (outcome, reason)

    def token(self, req: Request, now: float) -> None:
        """A streamed output token reached the client at ``now``."""
        if req.first_token_time < 0:
            req.first_token_time = now
        else:
            gap = now - req.last_token_time
            req.itl_sum += gap
            if gap > req.itl_max:
                req.itl_max = gap
            self.itl_values.append(gap)
            self.itl_owner.append(req.request_id)
        req.last_token_time = now

    def step(self, row: tuple) -> None:
        self.num_steps += 1
        if self.record_steps:
            self.steps.append(row)

    def sample(self, row: tuple) -> None:
        self.samples.append(row)

    # ---- end of run ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(names.OUTCOMES, 0)
        for o, _ in self.outcome.values():
            c[o] += 1
        c[names.IN_FLIGHT] = len(self.requests) - len(self.outcome)
        c["arrived"] = len(self.requests)
        return c

    def check_conservation(self) -> None:
        c = self.counts()
        ended = c[names.COMPLETED] + c[names.REJECTED] + c[names.TIMED_OUT]
        if c["arrived"] != ended + c[names.IN_FLIGHT] or c[names.IN_FLIGHT] < 0:
            raise RuntimeError(f"conservation violated: {c}")
        ids = {r.request_id for r in self.requests}
        if len(ids) != len(self.requests) or not set(self.outcome) <= ids:
            raise RuntimeError("conservation violated: duplicate or unknown request ids")

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl) DataFrames."""
        rows = []
        for r in self.requests:
            outcome, reason = self.outcome.get(r.request_id, (names.IN_FLIGHT, ""))
            n_itl = r.num_output_tokens - 1
            rows.append((
                r.request_id, self.replica_of.get(r.request_id, -1), outcome, reason,
                r.arrival_time, _nan(r.scheduled_time), _nan(r.first_token_time),
                _nan(r.finish_time), r.prompt_len, r.num_output_tokens, max(r.num_cached_tokens, 0),
                r.num_preemptions, r.priority,
                r.itl_sum / n_itl if n_itl > 0 else np.nan, r.itl_max if n_itl > 0 else np.nan,
            ))
        req = pd.DataFrame.from_records(rows, columns=REQUEST_COLUMNS)
        req["outcome"] = req["outcome"].astype("category")
        req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
        req["e2e_s"] = req["finish_s"] - req["arrival_s"]
        req["queue_s"] = req["scheduled_s"] - req["arrival_s"]
        dec = req["output_tokens"] - 1
        req["tpot_s"] = (req["finish_s"] - req["first_token_s"]) / dec.where(dec > 0)
        steps = pd.DataFrame.from_records(self.steps, columns=STEP_COLUMNS)
        samples = pd.DataFrame.from_records(self.samples, columns=SAMPLE_COLUMNS)
        itl = pd.DataFrame({"request_id": np.frombuffer(self.itl_owner, dtype=np.int64),
                            "itl_s": np.frombuffer(self.itl_values, dtype=np.float64)})
        return req, steps, samples, itl


def _nan(t: float) -> float:
    return t if t >= 0 else np.nan

"""Flat records of what happened, turned into DataFrames once, at the end.

What this models: the observability a real deployment has — per-request logs (arrival, first token,
finish, tokens, cache hits, preemptions, replica, tenant, attempts), per-attempt logs, per-step engine
logs, gauges scraped from each replica at an interval (vLLM's Prometheus gauges) and the lifetime of
every replica. Rows are kept as plain objects/tuples during the run (cheap) and converted to pandas
DataFrames only at the end.

Counting (conservation). A *client request* is what a client asked for once; each try of it is an
*attempt* (the first send and every retry). Both end exactly once — ending one twice is a bug and
raises — or are still in flight when the run stops:

- an attempt ends ``completed``, ``rejected`` (an HTTP status before it was served: 400 invalid,
  401 unknown key, 429 rate limit / quota / shed / saturated, 503 no healthy replica),
  ``timed_out`` (its client gave up) or ``failed`` (502: its replica died under it);
- a client request ends with the outcome and reason of its *last* attempt, once its client stops
  trying (served, retries exhausted or not allowed, budget spent, or an unretryable status);
- ``arrived = completed + rejected + timed_out + failed + in_flight`` over client requests, checked
  by :meth:`Recorder.check_conservation` after every run.

Frames (the contract with the planner outputs, :mod:`simulator.metrics.summary`, :mod:`simulator.cost`):

- ``requests`` (``Results.requests``): one row per client request — ``request_id``, ``tenant``,
  ``outcome``, ``reason``, ``attempts``, ``arrival_s`` (first send), ``scheduled_s``,
  ``first_token_s``, ``finish_s``, ``end_s`` (when it ended for the client), ``ttft_s``, ``tpot_s``,
  ``e2e_s``, ``queue_s``, ``input_tokens``, ``output_tokens``, ``cached_tokens``, ``preemptions``,
  ``priority``, ``replica`` (global id, −1 if never routed), ``pool``, ``model`` (served model),
  ``region`` (the client's), ``capped`` (output cut under load), ``itl_mean_s``, ``itl_max_s``.
  Latencies are what the client saw: from its first send (retries and backoff included) to the
  tokens of the attempt that served it, network included.
- ``Results.extra["attempts"]``: one row per attempt — ``request_id``, ``attempt``, ``engine_id``,
  ``tenant``, ``pool``, ``replica``, ``start_s``, ``end_s``, ``outcome``, ``reason``,
  ``first_token_s``, ``output_tokens``, ``capped``.
- ``Results.extra["replicas"]``: one row per replica lifetime (a replica that crashes and comes
  back has two) — ``replica``, ``pool``, ``model``, ``gpu``, ``tp``, ``region``, ``zone``,
  ``start_s``, ``end_s``, ``end_reason`` (``run_end``, ``crash``, ``spot_preemption``,
  ``zone_loss``). GPU-hours = Σ (end_s − start_s) × tp / 3600.
- ``itl``: every inter-token gap of the attempt that served each request (``request_id`` = client id).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from simulator.cluster.request import Attempt, ClientRequest
from simulator.engine.request import Request
from simulator.metrics import names

REQUEST_COLUMNS = [
    "request_id", "replica", "outcome", "reason", "arrival_s", "scheduled_s", "first_token_s",
    "finish_s", "input_tokens", "output_tokens", "cached_tokens", "preemptions", "priority",
    "itl_mean_s", "itl_max_s", "tenant", "attempts", "pool", "model", "region", "capped", "end_s",
]
ATTEMPT_COLUMNS = [
    "request_id", "attempt", "engine_id", "tenant", "pool", "replica", "start_s", "end_s",
    "outcome", "reason", "first_token_s", "output_tokens", "capped",
]
STEP_COLUMNS = [
    "replica", "start_s", "duration_s", "num_seqs", "num_tokens", "num_prefill_tokens",
    "num_decode_seqs", "num_new", "num_preempted", "num_waiting", "kv_cache_usage_perc",
]
SAMPLE_COLUMNS = [
    "time_s", "replica", names.NUM_REQUESTS_RUNNING, names.NUM_REQUESTS_WAITING,
    names.KV_CACHE_USAGE_PERC, "in_system",
]
REPLICA_COLUMNS = [
    "replica", "pool", "model", "gpu", "tp", "region", "zone", "start_s", "end_s", "end_reason",
]


@dataclass
class Recorder:
    record_steps: bool = True
    requests: list[ClientRequest] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    steps: list[tuple] = field(default_factory=list)
    samples: list[tuple] = field(default_factory=list)
    itl_values: array = field(default_factory=lambda: array("d"))
    itl_owner: array = field(default_factory=lambda: array("q"))
    num_steps: int = 0
    pool_models: dict[str, str] = field(default_factory=dict)
    """Pool name → served model (for the ``model`` column)."""
    lifetimes: list[list[Any]] = field(default_factory=list)
    _open_life: dict[int, list[Any]] = field(default_factory=dict)
    _ended: int = 0
    _ids_match: bool = True
    """Every attempt is a first attempt whose engine id equals its client id (ITL needs no map)."""

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, creq: ClientRequest) -> None:
        self.requests.append(creq)

    def attempt(self, att: Attempt) -> None:
        """An attempt started (the first send or a retry)."""
        self.attempts.append(att)
        if att.index or att.req.request_id != att.creq.request_id:
            self._ids_match = False

    def attempt_end(self, att: Attempt, outcome: str, reason: str, now: float) -> None:
        """Record the attempt's one and only ending."""
        if att.outcome:
            raise RuntimeError(f"attempt {att.index} of request {att.creq.request_id} ended twice "
                               f"({att.outcome} then {outcome})")
        att.outcome, att.reason, att.end = outcome, reason, now

    def end(self, creq: ClientRequest, outcome: str, reason: str, now: float) -> None:
        """Record the client request's one and only ending."""
        if creq.outcome:
            raise RuntimeError(f"request {creq.request_id} ended twice "
                               f"({creq.outcome} then {outcome})")
        creq.outcome, creq.reason, creq.end = outcome, reason, now
        self._ended += 1

    def token(self, req: Request, now: float) -> None:
        """A streamed output token left the engine at ``now``."""
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

    def replica_up(self, replica: int, pool: str, model: str, gpu: str, tp: int, region: str,
                   zone: str, now: float) -> None:
        """A replica starts serving (at build, or back after a failure)."""
        row = [replica, pool, model, gpu, tp, region, zone, now, np.nan, ""]
        self._open_life[replica] = row
        self.lifetimes.append(row)

    def replica_down(self, replica: int, now: float, reason: str) -> None:
        row = self._open_life.pop(replica, None)
        if row is not None:
            row[8], row[9] = now, reason

    # ---- end of run ---------------------------------------------------------------------------
    @property
    def num_ended(self) -> int:
        return self._ended

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(names.OUTCOMES, 0)
        for r in self.requests:
            if r.outcome:
                c[r.outcome] += 1
        c[names.IN_FLIGHT] = len(self.requests) - self._ended
        c["arrived"] = len(self.requests)
        return c

    def check_conservation(self) -> None:
        """Every client request and every attempt ended exactly once or is in flight."""
        c = self.counts()
        ended = sum(c[o] for o in names.OUTCOMES if o != names.IN_FLIGHT)
        if c["arrived"] != ended + c[names.IN_FLIGHT] or c[names.IN_FLIGHT] < 0:
            raise RuntimeError(f"conservation violated: {c}")
        ids = {r.request_id for r in self.requests}
        if len(ids) != len(self.requests):
            raise RuntimeError("conservation violated: duplicate request ids")
        n_att = 0
        for r in self.requests:
            atts = r.attempts
            n_att += len(atts)
            open_atts = sum(1 for a in atts if not a.outcome)
            if r.outcome:
                if open_atts or not atts or (r.outcome, r.reason) != (atts[-1].outcome,
                                                                      atts[-1].reason):
                    raise RuntimeError(f"conservation violated: request {r.request_id} ended "
                                       f"{r.outcome} but its attempts say "
                                       f"{[(a.outcome, a.reason) for a in atts]}")
            elif open_atts > 1:
                raise RuntimeError(f"conservation violated: request {r.request_id} has "
                                   f"{open_atts} attempts in flight at once")
        if n_att != len(self.attempts):
            raise RuntimeError("conservation violated: attempts not attached to their request")

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl) DataFrames."""
        rows = []
        final: dict[int, int] = {}
        pool_models = self.pool_models
        for cr in self.requests:
            att = cr.attempts[-1] if cr.attempts else None
            outcome = cr.outcome or names.IN_FLIGHT
            spec = cr.spec
            if att is None:
                rows.append((cr.request_id, -1, outcome, cr.reason, cr.arrival, np.nan, np.nan,
                             np.nan, spec.prompt_len, 0, 0, 0, spec.priority, np.nan, np.nan,
                             spec.tenant, 0, "", "", cr.region, False, _nan(cr.end)))
                continue
            r = att.req
            final[r.request_id] = cr.request_id
            back = att.back_s
            n_itl = r.num_output_tokens - 1
            first = r.first_token_time + back if r.first_token_time >= 0 else np.nan
            finish = r.finish_time + back if r.finish_time >= 0 else np.nan
            rows.append((
                cr.request_id, att.replica_id, outcome, cr.reason, cr.arrival,
                _nan(r.scheduled_time), first, finish, r.prompt_len, r.num_output_tokens,
                max(r.num_cached_tokens, 0), r.num_preemptions, r.priority,
                r.itl_sum / n_itl if n_itl > 0 else np.nan, r.itl_max if n_itl > 0 else np.nan,
                spec.tenant, len(cr.attempts), att.pool, pool_models.get(att.pool, ""), cr.region,
                att.capped, _nan(cr.end),
            ))
        req = pd.DataFrame.from_records(rows, columns=REQUEST_COLUMNS)
        req["outcome"] = pd.Categorical(req["outcome"], categories=list(names.OUTCOMES))
        req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
        req["e2e_s"] = req["finish_s"] - req["arrival_s"]
        req["queue_s"] = req["scheduled_s"] - req["arrival_s"]
        dec = req["output_tokens"] - 1
        req["tpot_s"] = (req["finish_s"] - req["first_token_s"]) / dec.where(dec > 0)
        steps = pd.DataFrame.from_records(self.steps, columns=STEP_COLUMNS)
        samples = pd.DataFrame.from_records(self.samples, columns=SAMPLE_COLUMNS)
        owner = np.frombuffer(self.itl_owner, dtype=np.int64)
        values = np.frombuffer(self.itl_values, dtype=np.float64)
        if not self._ids_match:
            # NOTE: keep only the gaps of each request's final attempt, under the client's id.
            mapped = pd.Series(owner).map(final)
            keep = mapped.notna().to_numpy()
            owner = mapped.to_numpy()[keep].astype(np.int64)
            values = values[keep]
        itl = pd.DataFrame({"request_id": owner, "itl_s": values})
        return req, steps, samples, itl

    def attempt_frame(self) -> pd.DataFrame:
        rows = [(a.creq.request_id, a.index, a.req.request_id, a.tenant, a.pool, a.replica_id,
                 a.start, _nan(a.end), a.outcome or names.IN_FLIGHT, a.reason,
                 a.req.first_token_time + a.back_s if a.req.first_token_time >= 0 else np.nan,
                 a.req.num_output_tokens, a.capped) for a in self.attempts]
        df = pd.DataFrame.from_records(rows, columns=ATTEMPT_COLUMNS)
        df["outcome"] = pd.Categorical(df["outcome"], categories=list(names.OUTCOMES))
        return df

    def replica_frame(self, end_s: float) -> pd.DataFrame:
        """Replica lifetimes; those still up are closed at ``end_s`` with reason ``run_end``."""
        for rid in list(self._open_life):
            self.replica_down(rid, end_s, names.END_RUN)
        return pd.DataFrame.from_records([tuple(r) for r in self.lifetimes],
                                         columns=REPLICA_COLUMNS)


def _nan(t: float) -> float:
    return t if t >= 0 else np.nan


# --------------------------------------------------------------------------------------------
# Fleet summary (merged into summary["fleet"] by simulator.run)
# --------------------------------------------------------------------------------------------


def fleet_summary(requests: pd.DataFrame, attempts: pd.DataFrame, replicas: pd.DataFrame,
                  warmup_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the serving path did: attempts and retries, why requests were refused or lost, per pool
    and per model, replica lifetimes and GPU-hours. Only requests arriving after the warm-up count
    (replica figures cover the whole run)."""
    m = requests[requests["arrival_s"] >= warmup_s]
    a = attempts[attempts["request_id"].isin(m["request_id"])] if len(attempts) else attempts
    reasons = m.loc[m["reason"] != "", "reason"].value_counts().sort_index()
    att_reasons: dict[Any, Any] = (
        a.loc[a["reason"] != "", "reason"].value_counts().sort_index().to_dict() if len(a) else {})
    done = m[m["outcome"] == names.COMPLETED]
    by_pool: dict[str, Any] = {}
    for pool, g in done.groupby("pool", sort=True):
        by_pool[str(pool)] = {"completed": len(g),
                              "output_tokens": int(g["output_tokens"].sum())}
    gpu_h = 0.0
    down: dict[str, int] = {}
    if len(replicas):
        gpu_h = float(((replicas["end_s"] - replicas["start_s"]) * replicas["tp"]).sum() / 3600)
        for reason, n in replicas["end_reason"].value_counts().items():
            if reason != names.END_RUN:
                down[str(reason)] = int(n)
    n_req = max(len(m), 1)
    out: dict[str, Any] = {
        "attempts": len(a),
        "retries": int((a["attempt"] > 0).sum()) if len(a) else 0,
        "attempts_per_request": len(a) / n_req,
        "failed": int((m["outcome"] == names.FAILED).sum()),
        "reasons": {str(k): int(v) for k, v in reasons.items()},
        "attempt_reasons": {str(k): int(v) for k, v in att_reasons.items()},
        "capped": int(m["capped"].sum()),
        "by_pool": by_pool,
        "by_region": {str(k): int(v) for k, v in done["region"].value_counts().sort_index().items()},
        "replicas": {"lifetimes": len(replicas), "outages": down, "gpu_hours": gpu_h},
    }
    if extra:
        out.update(extra)
    return out

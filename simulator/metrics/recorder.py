"""Flat records of what happened, turned into DataFrames once, at the end.

What this models: the observability a real deployment has — per-request logs (arrival, first token,
finish, tokens, cache hits, preemptions, replica, tenant, attempts), per-attempt logs, per-step engine
logs, gauges scraped from each replica at an interval (vLLM's Prometheus gauges) and the lifetime of
every replica. Rows are kept as plain objects/tuples during the run (cheap) and converted to pandas
DataFrames only at the end; client requests that have ended are turned into their frame rows now and
then during the run (:meth:`Recorder.release`) and their objects dropped, so a long run keeps one
tuple per request rather than its Python objects. The frames are the same either way.

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
  ``zone_loss``, ``scale_down``, ``scale_down_before_ready``), ``ready_s`` (when it first served;
  later than ``start_s`` for an autoscaled replica, which is billed from node acquisition: NaN if it
  never served). GPU-hours = Σ (end_s − start_s) × tp / 3600.
- ``itl``: every inter-token gap of the attempt that served each request (``request_id`` = client id),
  ordered by request, each request's gaps in time order; empty with ``metrics.record_itl`` off.
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
    "ready_s",
]


RELEASE_EVERY = 20_000
"""Ended client requests between two :meth:`Recorder.release` calls during a run."""


@dataclass
class Recorder:
    record_steps: bool = True
    record_itl: bool = True
    """Keep every inter-token gap (the ``itl`` frame); off: only per-request ITL mean and max."""
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
    _rows: list[tuple] = field(default_factory=list)
    """Rows of the ``requests`` frame of client requests that have ended (their objects are
    released: a long run keeps one tuple per request, not its Python objects)."""
    _att_rows: list[tuple] = field(default_factory=list)
    """(attempt number, row of the attempts frame) of those requests' attempts."""
    _att_no: dict[int, int] = field(default_factory=dict)
    """id(attempt) → its number in start order, while its request has not ended."""
    _n_att: int = 0
    _outcomes: dict[str, int] = field(default_factory=dict)
    """Outcome → client requests released with it."""
    _final: dict[int, int] = field(default_factory=dict)
    """Engine id of a released request's last attempt → client id (only when ids differ)."""
    _identity_rows: int = 0
    """Released rows from before the ids first differed (engine id = client id)."""

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, creq: ClientRequest) -> None:
        self.requests.append(creq)

    def attempt(self, att: Attempt) -> None:
        """An attempt started (the first send or a retry)."""
        self.attempts.append(att)
        self._att_no[id(att)] = self._n_att
        self._n_att += 1
        if self._ids_match and (att.index or att.req.request_id != att.creq.request_id):
            self._ids_match = False
            self._identity_rows = len(self._rows)  # released so far: engine id = client id

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
        if not self._ended % RELEASE_EVERY:
            self.release()

    def release(self) -> None:
        """Turn the client requests that have ended (and are consistent with their attempts) into
        frame rows and drop the objects; called now and then during a long run and before the
        frames are built. The frames are the same as if every object had been kept."""
        keep: list[ClientRequest] = []
        rows = self._rows
        att_rows = self._att_rows
        att_no = self._att_no
        outcomes = self._outcomes
        for cr in self.requests:
            atts = cr.attempts
            if not cr.outcome or not atts or any(not a.outcome for a in atts) \
                    or (cr.outcome, cr.reason) != (atts[-1].outcome, atts[-1].reason):
                keep.append(cr)  # in flight (or inconsistent: check_conservation says so)
                continue
            rows.append(self._request_row(cr))
            if not self._ids_match:
                self._final[atts[-1].req.request_id] = cr.request_id
            for a in atts:
                att_rows.append((att_no.pop(id(a)), self._attempt_row(a)))
            outcomes[cr.outcome] = outcomes.get(cr.outcome, 0) + 1
        if len(keep) != len(self.requests):
            self.requests = keep
            live = set(map(id, keep))
            self.attempts = [a for a in self.attempts if id(a.creq) in live]

    def token(self, req: Request, now: float) -> None:
        """A streamed output token left the engine at ``now``."""
        if req.first_token_time < 0:
            req.first_token_time = now
        else:
            gap = now - req.last_token_time
            req.itl_sum += gap
            if gap > req.itl_max:
                req.itl_max = gap
            if self.record_itl:
                self.itl_values.append(gap)
                self.itl_owner.append(req.request_id)
        req.last_token_time = now

    def token_run(self, reqs: list[Request], ends: list[float]) -> None:
        """Each of ``reqs`` streamed one token at each time in ``ends`` (a run of decode steps of
        the replica's fast path): the same arithmetic as :meth:`token` per token, in the same
        order per request. Every request here has had its first token."""
        n = len(ends)
        if not n:
            return
        t0 = ends[0]
        common = [ends[k] - ends[k - 1] for k in range(1, n)]
        gmax = max(common) if common else -1.0
        tail = array("d", common)
        keep = self.record_itl
        values = self.itl_values
        owners = self.itl_owner
        last = ends[-1]
        for req in reqs:
            gap = t0 - req.last_token_time
            s = req.itl_sum + gap
            for g in common:
                s += g
            req.itl_sum = s
            m = req.itl_max
            if gap > m:
                m = gap
            if gmax > m:
                m = gmax
            req.itl_max = m
            req.last_token_time = last
            if keep:
                values.append(gap)
                values.extend(tail)
                owners.extend(array("q", (req.request_id,)) * n)

    def step(self, row: tuple) -> None:
        self.num_steps += 1
        if self.record_steps:
            self.steps.append(row)

    def sample(self, row: tuple) -> None:
        self.samples.append(row)

    def replica_up(self, replica: int, pool: str, model: str, gpu: str, tp: int, region: str,
                   zone: str, now: float) -> None:
        """A replica starts serving (at build, or back after a failure)."""
        row = [replica, pool, model, gpu, tp, region, zone, now, np.nan, "", now]
        self._open_life[replica] = row
        self.lifetimes.append(row)

    def replica_acquired(self, key: int, pool: str, model: str, gpu: str, tp: int, region: str,
                         zone: str, now: float) -> None:
        """An autoscaled replica's node was acquired (billing starts; it serves later, see
        :meth:`replica_ready`). ``key`` identifies the lifetime until it ends (``replica`` is −1
        until an engine is built)."""
        row = [-1, pool, model, gpu, tp, region, zone, now, np.nan, "", np.nan]
        self._open_life[key] = row
        self.lifetimes.append(row)

    def replica_ready(self, key: int, replica: int, now: float) -> None:
        """The lifetime ``key`` now serves as replica ``replica`` (first time: ``ready_s``)."""
        row = self._open_life.get(key)
        if row is not None:
            if row[0] < 0:
                row[0] = replica
            if row[10] != row[10]:  # NaN: first readiness
                row[10] = now

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
        for o, n in self._outcomes.items():
            c[o] += n
        for r in self.requests:
            if r.outcome:
                c[r.outcome] += 1
        arrived = len(self.requests) + len(self._rows)
        c[names.IN_FLIGHT] = arrived - self._ended
        c["arrived"] = arrived
        return c

    def check_conservation(self) -> None:
        """Every client request and every attempt ended exactly once or is in flight."""
        c = self.counts()
        ended = sum(c[o] for o in names.OUTCOMES if o != names.IN_FLIGHT)
        if c["arrived"] != ended + c[names.IN_FLIGHT] or c[names.IN_FLIGHT] < 0:
            raise RuntimeError(f"conservation violated: {c}")
        ids = np.fromiter((r[0] for r in self._rows), dtype=np.int64, count=len(self._rows))
        ids = np.concatenate([ids, np.array([r.request_id for r in self.requests], dtype=np.int64)])
        if len(np.unique(ids)) != len(ids):
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

    def _request_row(self, cr: ClientRequest) -> tuple:
        att = cr.attempts[-1] if cr.attempts else None
        outcome = cr.outcome or names.IN_FLIGHT
        spec = cr.spec
        if att is None:
            return (cr.request_id, -1, outcome, cr.reason, cr.arrival, np.nan, np.nan,
                    np.nan, spec.prompt_len, 0, 0, 0, spec.priority, np.nan, np.nan,
                    spec.tenant, 0, "", "", cr.region, False, _nan(cr.end))
        r = att.req
        back = att.back_s
        n_itl = r.num_output_tokens - 1
        first = r.first_token_time + back if r.first_token_time >= 0 else np.nan
        finish = r.finish_time + back if r.finish_time >= 0 else np.nan
        return (
            cr.request_id, att.replica_id, outcome, cr.reason, cr.arrival,
            _nan(r.scheduled_time), first, finish, r.prompt_len, r.num_output_tokens,
            max(r.num_cached_tokens, 0), r.num_preemptions, r.priority,
            r.itl_sum / n_itl if n_itl > 0 else np.nan, r.itl_max if n_itl > 0 else np.nan,
            spec.tenant, len(cr.attempts), att.pool, self.pool_models.get(att.pool, ""),
            cr.region, att.capped, _nan(cr.end),
        )

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl) DataFrames."""
        self.release()
        final = self._final
        rows = list(self._rows)
        for cr in self.requests:
            if cr.attempts:
                final[cr.attempts[-1].req.request_id] = cr.request_id
            rows.append(self._request_row(cr))
        # NOTE: client ids follow arrival order; released rows come in order of their ends.
        rows.sort(key=lambda row: row[0])
        if not self._ids_match:
            for row in self._rows[:self._identity_rows]:
                final[row[0]] = row[0]
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
        # NOTE: gaps are recorded per step, or per run of steps by the replica's decode fast path;
        # a stable sort by request gives one order (each request's gaps in time order) either way.
        order = np.argsort(owner, kind="stable")
        owner, values = owner[order], values[order]
        if not self._ids_match:
            # NOTE: keep only the gaps of each request's final attempt, under the client's id.
            mapped = pd.Series(owner).map(final)
            keep = mapped.notna().to_numpy()
            owner = mapped.to_numpy()[keep].astype(np.int64)
            values = values[keep]
        itl = pd.DataFrame({"request_id": owner, "itl_s": values})
        return req, steps, samples, itl

    @staticmethod
    def _attempt_row(a: Attempt) -> tuple:
        return (a.creq.request_id, a.index, a.req.request_id, a.tenant, a.pool, a.replica_id,
                a.start, _nan(a.end), a.outcome or names.IN_FLIGHT, a.reason,
                a.req.first_token_time + a.back_s if a.req.first_token_time >= 0 else np.nan,
                a.req.num_output_tokens, a.capped)

    def attempt_frame(self) -> pd.DataFrame:
        numbered = list(self._att_rows)
        numbered += [(self._att_no[id(a)], self._attempt_row(a)) for a in self.attempts]
        numbered.sort(key=lambda x: x[0])  # start order, as the attempts were made
        rows = [row for _, row in numbered]
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
            # NOTE: an autoscaler's scale-down ends a lifetime on purpose: not an outage.
            if reason != names.END_RUN and not str(reason).startswith("scale_down"):
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

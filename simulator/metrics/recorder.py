"""Flat records of what happened, turned into DataFrames once, at the end.

What this models: the observability a real deployment has — per-request logs (arrival, first token,
finish, tokens, cache hits, preemptions, replica, tenant, attempts), per-attempt logs, per-step engine
logs, gauges scraped from each replica at an interval (vLLM's Prometheus gauges) and the lifetime of
every replica. Each record is one flat row (a tuple), converted to pandas DataFrames only at the end.

The recorder takes plain values (row tuples, numbers) and knows the columns, not the classes of
the cluster: a client request is held as objects only while it is in flight, by the fleet's
:class:`simulator.cluster.ledger.RequestLog`, which hands its row and its attempts' rows here when it
ends (:meth:`Recorder.request_row`, :meth:`Recorder.attempt_row`) and the rows of those still in
flight when the frames are built.

How rows are kept (memory of long runs): rows — request, attempt, step and gauge rows alike — go
into a :class:`_Table`: the values of a few thousand rows at a time are moved into one typed array
per numeric column (8 bytes a float or id, 4 bytes a count) and one small integer per row that
indexes a table of the distinct combinations of its repeated values (outcome, reason, tenant, pool,
model, region, replica, …). A long run so keeps about 140 bytes per ended request (84 for its row,
56 for its attempt's) where tuples took about 670. The frames are built from these columns exactly
as ``DataFrame.from_records`` would build them from the tuples: same values, dtypes, column order
and row order. At the end of a run :meth:`Recorder.collect` builds them one table at a time,
freeing each table's columns as soon as its frame is built.

Counting (conservation): every client request and attempt ends exactly once or is in flight;
:mod:`simulator.cluster.ledger` says how and checks it after every run.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import sub
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionDtype

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

# How each column of a row is kept (see _Table): "q" a 64-bit integer, "i" a 32-bit count, "d" a
# float, "k" a repeated value (kept once per distinct combination of a row's "k" values).
_REQUEST_KEEP = "qkkkddddiiiikddkkkkkkd"
_ATTEMPT_KEEP = "qkqkkkddkkdik" + "q"  # + the attempt's number in start order (the frame's order)
_STEP_KEEP = "kddiiiiiiid"
_SAMPLE_KEEP = "dkiidi"

assert len(_REQUEST_KEEP) == len(REQUEST_COLUMNS) and len(_ATTEMPT_KEEP) == len(ATTEMPT_COLUMNS) + 1
assert len(_STEP_KEEP) == len(STEP_COLUMNS) and len(_SAMPLE_KEEP) == len(SAMPLE_COLUMNS)

FLUSH_ROWS = 4096
"""Rows a :class:`_Table` holds as plain values before moving them into its columns."""


_INT_ONLY = {int}


class _Table:
    """The rows of one frame, kept column by column.

    Rows arrive as tuples (the frame's columns in order, plus hidden trailing ones). Every
    :data:`FLUSH_ROWS` rows they move into one ``array`` per numeric column and, for the columns
    of repeated values, one ``int32`` code per row indexing the distinct combinations seen so far.
    :meth:`frame` builds what ``DataFrame.from_records`` builds from the tuples: the same values
    and dtypes (a float column that only ever held Python ints becomes ``int64``, as
    ``from_records`` infers it; the dtype of a column of repeated values is inferred from its
    distinct values, which have the same types as the whole column) and, with no rows, the same
    empty frame."""

    __slots__ = ("_codes", "_ints", "_kind_at", "_kinds", "_num", "_pend", "keep", "n", "pending",
                 "width")

    def __init__(self, keep: str) -> None:
        self.keep = keep
        self.width = len(keep)
        self._pend: list[Any] = []
        """Values of the rows not yet moved into the columns, row after row in one flat list
        (insertion order continues after the columns'). NOTE: not the row tuples themselves: a
        tuple kept until the flush is traversed by every pass of the cyclic GC meanwhile, and
        transposing thousands of them (``zip(*rows)``) made an iterator per row — several GC
        passes per flush (S3: ~6 % of the run). One ``extend`` per row; a column is a slice."""
        self.pending = 0
        """Rows not yet moved into the columns."""
        self.n = 0
        """Rows in the columns."""
        self._num = [(j, array(t)) for j, t in enumerate(keep) if t != "k"]
        self._kind_at = [j for j, t in enumerate(keep) if t == "k"]
        self._codes = array("i")
        self._kinds: dict[tuple, int] = {}
        self._ints = {j for j, t in enumerate(keep) if t == "d"}
        """Float columns whose values so far were all Python ints."""

    def __len__(self) -> int:
        return self.n + self.pending

    def add(self, row: tuple) -> None:
        if len(row) != self.width:
            raise ValueError(f"a row of {len(row)} values for a table of {self.width} columns")
        self._pend.extend(row)
        self.pending += 1
        if self.pending >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Move the pending rows into the columns."""
        n_rows = self.pending
        if not n_rows:
            return
        flat = self._pend
        w = self.width
        ints = self._ints
        for j, arr in self._num:
            col = flat[j::w]
            if j in ints and set(map(type, col)) != _INT_ONLY:
                ints.discard(j)
            # NOTE: numpy converts a column in one C loop, about twice as fast as array.extend,
            # which parses every element on its own; the bytes are the same.
            arr.frombytes(np.fromiter(col, dtype=arr.typecode, count=len(col)).tobytes())
        if self._kind_at:
            kinds = self._kinds
            keys = zip(*[flat[j::w] for j in self._kind_at], strict=True)
            self._codes.extend([kinds.setdefault(k, len(kinds)) for k in keys])
        self.n += n_rows
        self._pend = []
        self.pending = 0

    def drop(self) -> None:
        """Free the rows (their number stays; no frame can be built any more)."""
        self.flush()
        self._num = [(j, array(a.typecode)) for j, a in self._num]
        self._codes = array("i")
        self._kinds = {}
        self.keep = ""

    def column(self, j: int) -> np.ndarray:
        """Numeric column ``j`` of every row so far, in insertion order (a copy)."""
        self.flush()
        arr = next(a for i, a in self._num if i == j)
        return np.array(arr, dtype=np.dtype(arr.typecode))

    def frame(self, columns: list[str], extra: Iterable[tuple] = (), order_by: int | None = None,
              categories: dict[str, list[str]] | None = None) -> pd.DataFrame:
        """The frame of the kept rows followed by ``extra`` (rows not kept), sorted by column
        ``order_by`` (stable; None: insertion order); ``columns`` names the leading columns
        (trailing hidden ones are left out). A column named in ``categories`` (one of repeated
        values) becomes ``pd.Categorical(column, categories=...)``."""
        if not self.keep:
            raise RuntimeError("the recorder's rows were dropped (Recorder.close)")
        self.flush()
        more = _Table(self.keep)
        for row in extra:
            more.add(row)
        more.flush()
        n = self.n + more.n
        cats = categories or {}
        if not n:
            df = pd.DataFrame.from_records([], columns=columns)
            for name, c in cats.items():
                df[name] = pd.Categorical(df[name], categories=c)
            return df
        width = len(columns)
        raw: dict[int, np.ndarray] = {}
        for (j, arr), (_, arr2) in zip(self._num, more._num, strict=True):
            dt = np.dtype(arr.typecode)
            a = np.frombuffer(arr, dtype=dt) if arr else np.empty(0, dt)
            raw[j] = np.concatenate([a, np.frombuffer(arr2, dtype=dt)]) if arr2 else a
        codes = None
        if self._kind_at:
            codes = (np.frombuffer(self._codes, dtype=np.int32) if self._codes
                     else np.empty(0, np.int32))
            if more._codes:
                codes = np.concatenate(
                    [codes, np.frombuffer(more._codes, dtype=np.int32) + len(self._kinds)])
        order = np.argsort(raw[order_by], kind="stable") if order_by is not None else None
        out: dict[str, Any] = {}
        kind_cols: dict[str, Any] = {}
        if codes is not None:
            codes = codes[order] if order is not None else codes
            kinds = list(self._kinds) + list(more._kinds)
            kdf = pd.DataFrame.from_records(kinds, columns=[str(k) for k in self._kind_at])
            for pos, j in enumerate(self._kind_at):
                if j >= width:
                    continue
                name = columns[j]
                if name in cats:
                    # NOTE: straight to the categories' codes (no column of strings on the way).
                    listed = cats[name]
                    to_code = np.array([listed.index(k[pos]) if k[pos] in listed else -1
                                        for k in kinds], dtype=np.int64)
                    kind_cols[name] = pd.Categorical.from_codes(
                        to_code[codes], dtype=pd.CategoricalDtype(listed))
                    continue
                col = kdf[str(j)]
                kind_cols[name] = (col.array.take(codes) if isinstance(col.dtype, ExtensionDtype)
                                   else col.to_numpy().take(codes))
        for j, name in enumerate(columns):
            if name in kind_cols:
                out[name] = kind_cols[name]
                continue
            a = raw[j]
            # NOTE: always a copy (never a view of the arrays, which keep growing).
            a = a[order] if order is not None else a.copy()
            if a.dtype != np.float64 or (j in self._ints and j in more._ints):
                a = a.astype(np.int64, copy=False)
            out[name] = a
        return pd.DataFrame(out, copy=False)


@dataclass
class Recorder:
    record_steps: bool = True
    record_itl: bool = True
    """Keep every inter-token gap (the ``itl`` frame); off: only per-request ITL mean and max."""
    itl_values: array = field(default_factory=lambda: array("d"))
    itl_owner: array = field(default_factory=lambda: array("q"))
    num_steps: int = 0
    pool_models: dict[str, str] = field(default_factory=dict)
    """Pool name → served model (for the ``model`` column)."""
    pool_hidden_tokens: dict[str, int] = field(default_factory=dict)
    """Pool → the served model's ``hidden_output_tokens`` (its answers' first tokens no client
    sees; ``ttft_s`` counts to the first visible one)."""
    lifetimes: list[list[Any]] = field(default_factory=list)
    _open_life: dict[int, list[Any]] = field(default_factory=dict)
    _rows: _Table = field(default_factory=lambda: _Table(_REQUEST_KEEP))
    """Rows of the ``requests`` frame of client requests that have ended, in order of their ends."""
    _att_rows: _Table = field(default_factory=lambda: _Table(_ATTEMPT_KEEP))
    """Rows of the attempts frame of those requests' attempts (+ each one's number)."""
    _steps: _Table = field(default_factory=lambda: _Table(_STEP_KEEP))
    _samples: _Table = field(default_factory=lambda: _Table(_SAMPLE_KEEP))

    # ---- rows of client requests and attempts (plain values: simulator.cluster.ledger) -------
    def request_row(self, row: tuple) -> None:
        """The row of a client request that ended (:data:`REQUEST_COLUMNS`)."""
        self._rows.add(row)

    def attempt_row(self, row: tuple) -> None:
        """The row of one of its attempts (:data:`ATTEMPT_COLUMNS`, then the attempt's number in
        start order)."""
        self._att_rows.add(row)

    def requests_taken(self) -> int:
        """Client request rows recorded so far (they stay counted after :meth:`close`)."""
        return len(self._rows)

    def request_ids(self) -> np.ndarray:
        """Their ``request_id`` column, in the order they were recorded."""
        return self._rows.column(0)

    # ---- events -------------------------------------------------------------------------------
    def token(self, req: Request, now: float) -> None:
        """A streamed output token left the engine at ``now``."""
        if req.first_token_time < 0:
            req.first_token_time = now
        else:
            gap = now - req.last_token_time
            if gap > req.itl_max:
                req.itl_max = gap
            if self.record_itl:
                self.itl_values.append(gap)
                self.itl_owner.append(req.request_id)
        req.last_token_time = now

    def token_run(self, reqs: list[Request], ends: list[float]) -> None:
        """Each of ``reqs`` streamed one token at each time in ``ends`` (a run of decode steps of
        the replica's fast path): what :meth:`token` does per token, in the same order per
        request. Every request here has had its first token."""
        n = len(ends)
        if not n:
            return
        t0 = ends[0]
        last = ends[-1]
        keep = self.record_itl
        if keep:
            tail = array("d", map(sub, ends[1:], ends))  # the gaps after the first
            gmax = max(tail) if tail else -1.0
        else:
            tail = array("d")
            gmax = max(map(sub, ends[1:], ends)) if n > 1 else -1.0
        values = self.itl_values
        owners = self.itl_owner
        span = self.token_span
        for req in reqs:
            if keep:
                values.append(t0 - req.last_token_time)
                values.extend(tail)
                owners.extend(array("q", (req.request_id,)) * n)
            span(req, t0, last, gmax)

    def token_span(self, req: Request, first: float, last: float, gap_max: float) -> None:
        """:meth:`token_run` for one request when per-token gaps are not kept: its tokens were
        streamed from ``first`` to ``last`` with no gap between them above ``gap_max`` (−1: one
        token)."""
        gap = first - req.last_token_time
        m = req.itl_max
        if gap > m:
            m = gap
        if gap_max > m:
            m = gap_max
        req.itl_max = m
        req.last_token_time = last

    def step(self, row: tuple) -> None:
        self.num_steps += 1
        if self.record_steps:
            self._steps.add(row)

    def sample(self, row: tuple) -> None:
        self._samples.add(row)

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
    def frames(self, live: Iterable[tuple] = (), final: dict[int, int] | None = None,
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl) DataFrames; ``live``: rows of the client requests
        still in flight, ``final``: engine id of each request's last attempt → client id (None:
        they are the same), as :class:`simulator.cluster.ledger.RequestLog` gives them."""
        return (self._request_frame(live), self._steps.frame(STEP_COLUMNS),
                self._samples.frame(SAMPLE_COLUMNS), self._itl_frame(final))

    def collect(self, live: Iterable[tuple] = (), live_attempts: Iterable[tuple] = (),
                final: dict[int, int] | None = None,
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl, attempts) at the end of a run, each table's rows freed
        as soon as its frame is built (the lowest peak of memory); then :meth:`close`. The
        arguments are :meth:`frames`' and the rows of the attempts still in flight."""
        attempts = self.attempt_frame(live_attempts)
        self._att_rows.drop()
        requests = self._request_frame(live)
        self._rows.drop()
        steps = self._steps.frame(STEP_COLUMNS)
        self._steps.drop()
        samples = self._samples.frame(SAMPLE_COLUMNS)
        itl = self._itl_frame(final)
        self.close()
        return requests, steps, samples, itl, attempts

    def _request_frame(self, live: Iterable[tuple]) -> pd.DataFrame:
        # NOTE: client ids follow arrival order; taken rows come in order of their ends.
        req = self._rows.frame(REQUEST_COLUMNS, live, order_by=0,
                               categories={"outcome": list(names.OUTCOMES)})
        req["ttft_s"] = req["first_token_s"] - req["arrival_s"]
        hidden = {p: k for p, k in self.pool_hidden_tokens.items() if k}
        if hidden and len(req):
            # The first visible token: k inter-token times after the first one delivered (the
            # model's chat format opens with k tokens its parser streams to no one); an answer of
            # no more than k tokens shows its first text at its end.
            k = req["pool"].astype(object).map(hidden).fillna(0).to_numpy(dtype=float)
            vis = req["first_token_s"].to_numpy(dtype=float) + k * req["itl_mean_s"].fillna(
                0.0).to_numpy(dtype=float)
            short = (k > 0) & (req["output_tokens"].to_numpy() <= k)
            vis = np.where(short, req["finish_s"].to_numpy(dtype=float), vis)
            req["ttft_s"] = vis - req["arrival_s"]
        req["e2e_s"] = req["finish_s"] - req["arrival_s"]
        req["queue_s"] = req["scheduled_s"] - req["arrival_s"]
        dec = req["output_tokens"] - 1
        req["tpot_s"] = (req["finish_s"] - req["first_token_s"]) / dec.where(dec > 0)
        return req

    def _itl_frame(self, final: dict[int, int] | None) -> pd.DataFrame:
        """The ``itl`` frame; ``final`` maps engine ids to client ids (None: the same)."""
        owner = np.frombuffer(self.itl_owner, dtype=np.int64)
        values = np.frombuffer(self.itl_values, dtype=np.float64)
        # NOTE: gaps are recorded per step, or per run of steps by the replica's decode fast path;
        # a stable sort by request gives one order (each request's gaps in time order) either way.
        order = np.argsort(owner, kind="stable")
        owner, values = owner[order], values[order]
        if final is not None:
            # NOTE: keep only the gaps of each request's final attempt, under the client's id.
            mapped = pd.Series(owner).map(final)
            keep = mapped.notna().to_numpy()
            owner = mapped.to_numpy()[keep].astype(np.int64)
            values = values[keep]
        return pd.DataFrame({"request_id": owner, "itl_s": values})

    def attempt_frame(self, live: Iterable[tuple] = ()) -> pd.DataFrame:
        """One row per attempt, in the order the attempts were made (``live``: rows of those
        still in flight)."""
        return self._att_rows.frame(ATTEMPT_COLUMNS, live, order_by=len(ATTEMPT_COLUMNS),
                                    categories={"outcome": list(names.OUTCOMES)})

    def close(self) -> None:
        """The frames are built: drop the rows kept for them (most of a long run's memory).
        Counts stay; :meth:`frames` and :meth:`attempt_frame` can no longer be called."""
        for table in (self._rows, self._att_rows, self._steps, self._samples):
            table.drop()
        self.itl_values = array("d")
        self.itl_owner = array("q")

    def replica_frame(self, end_s: float) -> pd.DataFrame:
        """Replica lifetimes; those still up are closed at ``end_s`` with reason ``run_end``."""
        for rid in list(self._open_life):
            self.replica_down(rid, end_s, names.END_RUN)
        return pd.DataFrame.from_records([tuple(r) for r in self.lifetimes],
                                         columns=REPLICA_COLUMNS)

"""The fleet's log of client requests and attempts: each ends exactly once, and its rows go to the
recorder when it ends.

What this models: the request logs of a serving path (the gateway's access log, the client's
retries) and the accounting a load test does on them. A *client request* is what a client asked
for once; each try of it is an *attempt* (the first send and every retry). Both end exactly once —
ending one twice is a bug and raises — or are still in flight when the run stops:

- an attempt ends ``completed``, ``rejected`` (an HTTP status before it was served: 400 invalid,
  401 unknown key, 429 rate limit / quota / shed / saturated, 503 no healthy replica),
  ``timed_out`` (its client gave up) or ``failed`` (502: its replica died under it);
- a client request ends with the outcome and reason of its *last* attempt, once its client stops
  trying (served, retries exhausted or not allowed, budget spent, or an unretryable status);
- ``arrived = completed + rejected + timed_out + failed + in_flight`` over client requests, checked
  by :meth:`RequestLog.check_conservation` after every run.

A client request is held as objects (its :class:`~simulator.cluster.request.ClientRequest`, attempts
and engine requests) only while it is in flight; when it ends, its row and its attempts' rows — plain
values in the columns of :mod:`simulator.metrics.recorder` — are handed to the recorder and the
objects are dropped. The recorder knows the columns, not these classes.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pandas as pd

from simulator.cluster.request import Attempt, ClientRequest
from simulator.metrics import names
from simulator.metrics.recorder import Recorder

NAN: Final = math.nan
"""NaN for an unknown time (a C double in the compiled build; ``np.nan`` would be an attribute
lookup on numpy per use)."""

TAKE_AT_END = True
"""Take an ended client request's rows when it ends (False: keep its objects until the frames are
built, which gives the same frames; the tests compare both)."""


class RequestLog:
    """Client requests and attempts in flight, their endings, and conservation (module docstring)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.requests: dict[int, ClientRequest] = {}
        """Client requests whose rows are not taken yet (in flight), by ``id()``, in arrival
        order."""
        self.attempts: dict[int, Attempt] = {}
        """Their attempts, by ``id()``, in start order."""
        self._ended = 0
        self._ids_match = True
        """Every attempt is a first attempt whose engine id equals its client id (ITL needs no
        map)."""
        self._n_att = 0
        self._outcomes: dict[str, int] = {}
        """Outcome → client requests whose rows are taken, with it."""
        self._final: dict[int, int] = {}
        """Engine id of a taken request's last attempt → client id (only when ids differ)."""
        self._identity_rows = 0
        """Rows taken before the ids first differed (engine id = client id)."""

    # ---- events -------------------------------------------------------------------------------
    def arrived(self, creq: ClientRequest) -> None:
        self.requests[id(creq)] = creq

    def attempt(self, att: Attempt) -> None:
        """An attempt started (the first send or a retry)."""
        self.attempts[id(att)] = att
        att.seq = self._n_att
        self._n_att += 1
        if self._ids_match and (att.index or att.req.request_id != att.creq.request_id):
            self._ids_match = False
            self._identity_rows = self.recorder.requests_taken()  # engine id = client id

    def attempt_end(self, att: Attempt, outcome: str, reason: str, now: float) -> None:
        """Record the attempt's one and only ending."""
        if att.outcome:
            raise RuntimeError(f"attempt {att.index} of request {att.creq.request_id} ended twice "
                               f"({att.outcome} then {outcome})")
        att.outcome, att.reason, att.end = outcome, reason, now

    def end(self, creq: ClientRequest, outcome: str, reason: str, now: float) -> None:
        """Record the client request's one and only ending; take its rows now (its objects are
        dropped) when its attempts agree (otherwise :meth:`check_conservation` says so)."""
        if creq.outcome:
            raise RuntimeError(f"request {creq.request_id} ended twice "
                               f"({creq.outcome} then {outcome})")
        creq.outcome, creq.reason, creq.end = outcome, reason, now
        self._ended += 1
        atts = creq.attempts
        if TAKE_AT_END and atts and atts[-1].outcome == outcome and atts[-1].reason == reason \
                and (len(atts) == 1 or all(a.outcome for a in atts)):
            self._take(creq)

    def _take(self, cr: ClientRequest) -> None:
        """Move an ended client request (and its attempts) from objects to rows."""
        atts = cr.attempts
        rec = self.recorder
        rec.request_row(self._request_row(cr))
        if not self._ids_match:
            self._final[atts[-1].req.request_id] = cr.request_id
        live = self.attempts
        for a in atts:
            del live[id(a)]
            rec.attempt_row(self._attempt_row(a))
        outcomes = self._outcomes
        outcomes[cr.outcome] = outcomes.get(cr.outcome, 0) + 1
        del self.requests[id(cr)]
        # NOTE: its rows are taken; nothing reads its attempts after this. Cleared, the
        # request ⇄ attempt cycle is gone and its five objects are freed at once, not by the
        # cyclic GC's passes (S2: ~12 % of the run was such passes).
        atts.clear()

    def release(self) -> None:
        """Take the rows of client requests that ended but could not be taken then (their
        attempts ended later); called before the frames are built."""
        for cr in list(self.requests.values()):
            atts = cr.attempts
            if cr.outcome and atts and all(a.outcome for a in atts) \
                    and (cr.outcome, cr.reason) == (atts[-1].outcome, atts[-1].reason):
                self._take(cr)

    # ---- rows ---------------------------------------------------------------------------------
    def _request_row(self, cr: ClientRequest) -> tuple:
        """The ``requests`` row of ``cr`` (:data:`simulator.metrics.recorder.REQUEST_COLUMNS`)."""
        att = cr.attempts[-1] if cr.attempts else None
        outcome = cr.outcome or names.IN_FLIGHT
        spec = cr.spec
        if att is None:
            return (cr.request_id, -1, outcome, cr.reason, cr.arrival, NAN, NAN,
                    NAN, spec.prompt_len, 0, 0, 0, spec.priority, NAN, NAN,
                    spec.tenant, 0, "", "", cr.region, False, _nan(cr.end))
        r = att.req
        back = att.back_s
        n_itl = r.num_output_tokens - 1
        first = r.first_token_time + back if r.first_token_time >= 0 else NAN
        finish = r.finish_time + back if r.finish_time >= 0 else NAN
        # NOTE: the mean gap is (last token − first token) / gaps — the sum of the gaps, telescoped:
        # no running sum per token (a sum in token order would differ in the last bits).
        return (
            cr.request_id, att.replica_id, outcome, cr.reason, cr.arrival,
            _nan(r.scheduled_time), first, finish, r.prompt_len, r.num_output_tokens,
            max(r.num_cached_tokens, 0), r.num_preemptions, r.priority,
            (r.last_token_time - r.first_token_time) / n_itl if n_itl > 0 else NAN,
            r.itl_max if n_itl > 0 else NAN,
            spec.tenant, len(cr.attempts), att.pool, self.recorder.pool_models.get(att.pool, ""),
            cr.region, att.capped, _nan(cr.end),
        )

    @staticmethod
    def _attempt_row(a: Attempt) -> tuple:
        """The attempts row of ``a`` (:data:`simulator.metrics.recorder.ATTEMPT_COLUMNS`) and
        its number in start order."""
        return (a.creq.request_id, a.index, a.req.request_id, a.tenant, a.pool, a.replica_id,
                a.start, _nan(a.end), a.outcome or names.IN_FLIGHT, a.reason,
                a.req.first_token_time + a.back_s if a.req.first_token_time >= 0 else NAN,
                a.req.num_output_tokens, a.capped, a.seq)

    def _live_requests(self) -> tuple[list[tuple], dict[int, int] | None]:
        """Rows of the client requests still held, and the map of engine ids to client ids the
        ``itl`` frame needs (None: they are the same)."""
        self.release()
        final = self._final
        live = []
        for cr in self.requests.values():
            if cr.attempts:
                final[cr.attempts[-1].req.request_id] = cr.request_id
            live.append(self._request_row(cr))
        if self._ids_match:
            return live, None
        for i in self.recorder.request_ids()[:self._identity_rows].tolist():
            final[i] = i
        return live, final

    # ---- end of run ---------------------------------------------------------------------------
    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(requests, steps, samples, itl) DataFrames."""
        live, final = self._live_requests()
        return self.recorder.frames(live, final)

    def attempt_frame(self) -> pd.DataFrame:
        """One row per attempt, in the order the attempts were made."""
        return self.recorder.attempt_frame([self._attempt_row(a) for a in self.attempts.values()])

    def collect(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
                               pd.DataFrame]:
        """(requests, steps, samples, itl, attempts) at the end of a run (the recorder frees each
        table's rows as soon as its frame is built)."""
        self.release()
        attempts = [self._attempt_row(a) for a in self.attempts.values()]
        live, final = self._live_requests()
        return self.recorder.collect(live, attempts, final)

    @property
    def num_ended(self) -> int:
        return self._ended

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys(names.OUTCOMES, 0)
        for o, n in self._outcomes.items():
            c[o] += n
        for r in self.requests.values():
            if r.outcome:
                c[r.outcome] += 1
        arrived = len(self.requests) + self.recorder.requests_taken()
        c[names.IN_FLIGHT] = arrived - self._ended
        c["arrived"] = arrived
        return c

    def check_conservation(self) -> None:
        """Every client request and every attempt ended exactly once or is in flight."""
        c = self.counts()
        ended = sum(c[o] for o in names.OUTCOMES if o != names.IN_FLIGHT)
        if c["arrived"] != ended + c[names.IN_FLIGHT] or c[names.IN_FLIGHT] < 0:
            raise RuntimeError(f"conservation violated: {c}")
        live = self.requests.values()
        ids = np.concatenate([self.recorder.request_ids(),
                              np.array([r.request_id for r in live], dtype=np.int64)])
        # NOTE: sorted and compared with the neighbour: np.unique hashes integers since numpy 2.3,
        # ten times as slow (0.6 s for S3's million ids).
        ids.sort()
        if bool((ids[1:] == ids[:-1]).any()):
            raise RuntimeError("conservation violated: duplicate request ids")
        n_att = 0
        for r in live:
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


def _nan(t: float) -> float:
    return t if t >= 0 else NAN

"""The fleet's request log: each client request and each attempt ends once, counts add up, and an
ended request's rows go to the recorder as plain values (its objects are dropped)."""

from __future__ import annotations

import pytest

from simulator.cluster.ledger import RequestLog
from simulator.cluster.request import Attempt, ClientRequest
from simulator.engine.request import Request
from simulator.metrics import names
from simulator.metrics.recorder import REPLICA_COLUMNS, Recorder
from simulator.simenv import Environment
from simulator.workload.generator import RequestSpec


def _creq(log: RequestLog, i: int) -> ClientRequest:
    env = Environment()
    c = ClientRequest(i, RequestSpec(10, 2, tenant="t"), 0.0, "default", env.event(), False)
    log.arrived(c)
    return c


def _attempt(log: RequestLog, c: ClientRequest, eid: int) -> Attempt:
    a = Attempt(c, len(c.attempts), Request(eid, 10, 2), 0.0, "t", 2)
    c.attempts.append(a)
    log.attempt(a)
    return a


def test_ending_twice_raises_and_the_request_takes_its_last_attempts_outcome():
    log = RequestLog(Recorder())
    c = _creq(log, 0)
    a0 = _attempt(log, c, 0)
    log.attempt_end(a0, names.TIMED_OUT, names.R_TIMEOUT, 1.0)
    with pytest.raises(RuntimeError, match="ended twice"):
        log.attempt_end(a0, names.COMPLETED, "", 2.0)
    a1 = _attempt(log, c, 1)
    log.check_conservation()  # in flight, one open attempt
    log.attempt_end(a1, names.FAILED, names.R_CRASHED, 2.0)
    log.end(c, names.COMPLETED, "", 2.0)  # inconsistent with its last attempt
    with pytest.raises(RuntimeError, match="conservation violated"):
        log.check_conservation()
    with pytest.raises(RuntimeError, match="ended twice"):
        log.end(c, names.FAILED, names.R_CRASHED, 2.0)


def test_counts_add_up_with_the_failed_outcome():
    log = RequestLog(Recorder())
    for i, outcome in enumerate([names.COMPLETED, names.FAILED, names.REJECTED]):
        c = _creq(log, i)
        a = _attempt(log, c, i)
        log.attempt_end(a, outcome, "", 1.0)
        log.end(c, outcome, "", 1.0)
    _attempt(log, _creq(log, 3), 3)
    c = log.counts()
    assert c["arrived"] == 4 and c[names.FAILED] == 1 and c[names.IN_FLIGHT] == 1
    log.check_conservation()
    assert list(log.recorder.replica_frame(5.0).columns) == REPLICA_COLUMNS


def test_close_frees_the_rows_and_keeps_the_counts():
    log = RequestLog(Recorder())
    for i in range(3):
        c = _creq(log, i)
        a = _attempt(log, c, i)
        log.attempt_end(a, names.COMPLETED, "", 1.0)
        log.end(c, names.COMPLETED, "", 1.0)
    assert not log.requests and not log.attempts  # rows taken, objects dropped
    assert log.recorder.requests_taken() == 3 and log.recorder.request_ids().tolist() == [0, 1, 2]
    assert len(log.frames()[0]) == 3 and len(log.attempt_frame()) == 3
    log.recorder.close()
    assert log.counts()[names.COMPLETED] == 3 and log.counts()["arrived"] == 3
    with pytest.raises(RuntimeError, match="dropped"):
        log.frames()


def test_in_flight_requests_join_the_frames_and_retries_keep_the_final_attempts_gaps():
    log = RequestLog(Recorder())
    rec = log.recorder
    c = _creq(log, 0)
    a0 = _attempt(log, c, 10)  # engine id differs from the client id
    for t in (1.0, 1.5, 2.5):
        rec.token(a0.req, t)
    log.attempt_end(a0, names.TIMED_OUT, names.R_TIMEOUT, 3.0)
    a1 = _attempt(log, c, 11)
    for t in (4.0, 4.25, 4.75):
        rec.token(a1.req, t)
    log.attempt_end(a1, names.COMPLETED, "", 5.0)
    log.end(c, names.COMPLETED, "", 5.0)
    _attempt(log, _creq(log, 1), 12)  # still in flight when the frames are built
    requests, _steps, _samples, itl = log.frames()
    assert requests["request_id"].tolist() == [0, 1]
    assert requests["outcome"].astype(str).tolist() == [names.COMPLETED, names.IN_FLIGHT]
    assert requests["attempts"].tolist() == [2, 1]
    assert itl["request_id"].tolist() == [0, 0] and itl["itl_s"].tolist() == [0.25, 0.5]
    att = log.attempt_frame()
    assert att["engine_id"].tolist() == [10, 11, 12]
    assert att["outcome"].astype(str).tolist() == [names.TIMED_OUT, names.COMPLETED,
                                                   names.IN_FLIGHT]


def test_a_request_id_taken_twice_violates_conservation_and_taken_rows_drop_the_attempts():
    log = RequestLog(Recorder())
    for i in (5, 7, 5):  # the third reuses an id already taken
        c = _creq(log, i)
        a = _attempt(log, c, i)
        log.attempt_end(a, names.COMPLETED, "", 1.0)
        log.end(c, names.COMPLETED, "", 1.0)
        assert c.attempts == [] and a.creq is c  # rows taken: the request ⇄ attempt cycle is cut
        if i == 7:
            log.check_conservation()
    with pytest.raises(RuntimeError, match="duplicate request ids"):
        log.check_conservation()

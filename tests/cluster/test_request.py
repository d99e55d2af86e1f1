"""Client requests and attempts: their hand-written constructors (compiled with the engine,
simulator._native) set every field to the default its dataclass declares."""

from __future__ import annotations

from simulator.cluster.request import Attempt, ClientRequest
from simulator.engine.request import Request
from simulator.workload.generator import RequestSpec
from tests.engine.test_request import defaults_hold


def test_client_request_and_attempt_constructors_set_every_declared_default() -> None:
    spec = RequestSpec(10, 3, tenant="t")
    c = ClientRequest(4, spec, 2.0, "eu", None, True)
    defaults_hold(c, {"request_id": 4, "spec": spec, "arrival": 2.0, "region": "eu", "done": None,
                      "auto": True})
    r = Request(9, 10, 3)
    a = Attempt(c, 0, r, 2.5, "t", 3)
    defaults_hold(a, {"creq": c, "index": 0, "req": r, "start": 2.5, "tenant": "t",
                      "max_tokens": 3})

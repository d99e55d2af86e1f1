"""Clients that send requests: open-loop sources and closed-loop users.

What this models: a load generator or real users. Open loop: requests are sent at the workload's
arrival times whatever the responses do (vLLM benchmark ``--request-rate``). Closed loop: each of N
clients sends a request, waits for the whole response, optionally thinks, then sends the next
(vLLM benchmark ``--max-concurrency``, and how most published latency numbers are measured).

Leaves out (for the fleet issue): client timeouts, retries with backoff, multi-turn sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import simpy

from simulator.workload.generator import RequestSpec

Submit = Callable[[RequestSpec], simpy.Event]
"""Sends one request; the event fires when the request has ended (any outcome)."""


def open_loop(env: simpy.Environment, times: Iterator[float], specs: Iterator[RequestSpec],
              submit: Submit) -> Generator[simpy.Event, Any, None]:
    """Send one request at each arrival time."""
    for t, spec in zip(times, specs, strict=False):
        if t > env.now:
            yield env.timeout(t - env.now)
        submit(spec)


def closed_loop_client(env: simpy.Environment, specs: Iterator[RequestSpec], submit: Submit,
                       think_time_s: float, budget: list[int] | None, until: float | None,
                       ) -> Generator[simpy.Event, Any, None]:
    """One user: request, wait for the response, think, repeat.

    ``budget`` is a shared one-element counter of requests left to send (None = unlimited);
    ``until`` stops sending after that time.
    """
    while True:
        if until is not None and env.now >= until:
            return
        if budget is not None:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        done = submit(next(specs))
        yield done
        if think_time_s > 0:
            yield env.timeout(think_time_s)

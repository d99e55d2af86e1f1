"""Clients that send requests: open-loop sources, closed-loop users, multi-turn sessions.

What this models: a load generator or real users. Open loop: requests are sent at the workload's
arrival times whatever the responses do (vLLM benchmark ``--request-rate``). Closed loop: each of N
clients sends a request, waits for the whole response, optionally thinks, then sends the next
(vLLM benchmark ``--max-concurrency``, and how most published latency numbers are measured).
Sessions: one user's conversation, turn after turn, each turn sent after the previous response and
a think time.

Leaves out (for the fleet issue): client timeouts, retries with backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import simpy

from simulator.workload.generator import (
    ClosedLoopGroup,
    OpenLoopStream,
    RequestSpec,
    Session,
    Traffic,
)

Submit = Callable[[RequestSpec], simpy.Event]
"""Sends one request; the event fires when the request has ended (any outcome)."""


def open_loop(env: simpy.Environment, stream: OpenLoopStream, submit: Submit,
              until: float | None) -> Generator[simpy.Event, Any, None]:
    """Send one request at each arrival time."""
    for t, spec in zip(stream.times, stream.specs, strict=False):
        if until is not None and t > until:
            return
        if t > env.now:
            yield env.timeout(t - env.now)
        submit(spec)


def closed_loop_client(env: simpy.Environment, specs: Iterator[RequestSpec], submit: Submit,
                       think_time_s: float, budget: list[int] | None, until: float | None,
                       ) -> Generator[simpy.Event, Any, None]:
    """One user: request, wait for the response, think, repeat.

    ``budget`` is a one-element counter shared by the group's clients of requests left to send
    (None = unlimited); ``until`` stops sending after that time.
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


def session_client(env: simpy.Environment, session: Session, submit: Submit,
                   until: float | None) -> Generator[simpy.Event, Any, None]:
    """Play one conversation: each turn after the previous response and its think time."""
    if session.start_s > env.now:
        yield env.timeout(session.start_s - env.now)
    for k in range(session.num_turns):
        if k and session.think_time_s[k] > 0:
            yield env.timeout(session.think_time_s[k])
        if until is not None and env.now >= until:
            return
        yield submit(session.make_turn(k))


def session_source(env: simpy.Environment, sessions: Iterator[Session], submit: Submit,
                   until: float | None) -> Generator[simpy.Event, Any, None]:
    """Start each session's client at its start time."""
    for s in sessions:
        if until is not None and s.start_s > until:
            return
        if s.start_s > env.now:
            yield env.timeout(s.start_s - env.now)
        env.process(session_client(env, s, submit, until))


def start_clients(env: simpy.Environment, traffic: Traffic, submit: Submit) -> None:
    """Start the SimPy processes that play ``traffic`` through ``submit``."""
    for stream in traffic.open_loop:
        env.process(open_loop(env, stream, submit, traffic.until))
    for group in traffic.closed_loop:
        g: ClosedLoopGroup = group
        budget = [g.limit] if g.limit is not None else None
        for _ in range(g.concurrency):
            env.process(closed_loop_client(env, g.specs, submit, g.think_time_s, budget,
                                           traffic.until))
    for sessions in traffic.sessions:
        env.process(session_source(env, sessions, submit, traffic.until))

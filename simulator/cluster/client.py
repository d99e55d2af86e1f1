"""Clients that send requests: open-loop sources, closed-loop users, multi-turn sessions — and what
each client does when the service is slow or fails.

What this models: a load generator or real users. Open loop: requests are sent at the workload's
arrival times whatever the responses do (vLLM benchmark ``--request-rate``). Closed loop: each of N
clients sends a request, waits for its *final* outcome (after any retries), optionally thinks, then
sends the next (vLLM benchmark ``--max-concurrency``). Sessions: one user's conversation, turn after
turn; turn k carries turns < k as a shared prefix (built by the workload, ``Session.make_turn``).
A session whose turn finally fails (rejected, timed out or failed after its retries) ends there —
the user leaves; its remaining turns are never sent.

The client policy (:class:`Clients`, ``clients`` in the scenario): a per-attempt timeout on the whole
response and/or on the first token — the client gives up, the server aborts the request and frees
its KV blocks (:meth:`simulator.cluster.fleet.Fleet.cancel`) — and retries of 429 / 502 / 503 /
timeouts, at once (the recipe for a retry storm) or after exponential backoff with jitter, within an
optional retry budget shared by all clients. 400 and 401 are never retried. With no timeout and no
retries a request needs no client process: it goes straight to the fleet (the fast path).

Benchmark clients as they are: ``vllm bench serve`` / benchmark_serving.py send a request list at
``--request-rate`` (``workload.arrival`` poisson or gamma with ``cv = 1/√burstiness``) with at most
``--max-concurrency`` in flight (``workload.max_concurrency``: :func:`capped_open_loop`); with an
infinite rate that is a closed loop of ``concurrency`` clients. aiperf's concurrency mode
is a closed loop whose warm-up phase is drained before the measured phase starts with every client
at once (``arrival.warmup_requests``: :func:`warmup_then_measure`).

Leaves out: ``Retry-After`` hints, hedged requests, client-side connection pools. A retry is a new
engine request: its shared prefix blocks hit the cache, but its own prompt blocks get new hashes, so
they are recomputed even on the replica that saw the first attempt.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from simpy.events import NORMAL, URGENT

from simulator.cluster.request import Attempt, ClientRequest
from simulator.cluster.spec import ClientConfig, ExponentialBackoff
from simulator.metrics import names
from simulator.simenv import Environment, Timer, call_later, push
from simulator.workload.generator import (
    ClosedLoopGroup,
    OpenLoopStream,
    RequestSpec,
    Session,
    Traffic,
)

if TYPE_CHECKING:
    from simulator.cluster.fleet import Fleet

Submit = Callable[[RequestSpec], simpy.Event]
"""Sends one request; the event fires (with its ClientRequest) when the client stops trying."""


def retry_class(att: Attempt) -> int | str | None:
    """The ``clients.retry.on_errors`` class of a failed attempt (None: never retried)."""
    if att.outcome == names.TIMED_OUT:
        return "timeout"
    if att.outcome == names.FAILED:
        return 502
    code = att.reason[:3]
    return int(code) if code in ("429", "502", "503") else None


class Clients:
    """The client policy (timeouts, retries, budget) around :meth:`Fleet.send`."""

    def __init__(self, env: Environment, fleet: Fleet, cfg: ClientConfig,
                 rng: np.random.Generator) -> None:
        self.env = env
        self.fleet = fleet
        self.cfg = cfg
        self.rng = rng
        b = cfg.retry.budget
        self._tokens = b.burst if b is not None else 0.0
        self._t = 0.0
        self.retries_denied = 0
        self._trivial = cfg.is_trivial

    def submit(self, spec: RequestSpec) -> simpy.Event:
        """Send ``spec``; the event fires when the client has stopped trying."""
        if self._trivial:
            return self.fleet.submit(spec)
        creq = self.fleet.new_request(spec, auto=False)
        self._deposit()
        self.env.process(self._run(creq))
        assert creq.done is not None
        return creq.done

    def fire(self, spec: RequestSpec) -> None:
        """:meth:`submit` for a request no one waits for (an open-loop source)."""
        if self._trivial:
            self.fleet.fire(spec)
            return
        creq = self.fleet.new_request(spec, auto=False, wait=False)
        self._deposit()
        self.env.process(self._run(creq))

    # ---- retry budget --------------------------------------------------------------------------
    def _deposit(self) -> None:
        b = self.cfg.retry.budget
        if b is None:
            return
        now = self.env._now
        self._tokens = min(b.burst, self._tokens + b.ratio + (now - self._t) * b.min_per_s)
        self._t = now

    def _may_retry(self) -> bool:
        b = self.cfg.retry.budget
        if b is None:
            return True
        now = self.env._now
        self._tokens = min(b.burst, self._tokens + (now - self._t) * b.min_per_s)
        self._t = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.retries_denied += 1
        return False

    def backoff_s(self, retry: int) -> float:
        """Wait before retry number ``retry`` (1 = the first retry)."""
        bo = self.cfg.retry.backoff
        if not isinstance(bo, ExponentialBackoff):
            return 0.0
        wait = min(bo.max_s, bo.base_s * bo.multiplier ** (retry - 1))
        if bo.jitter == "full":
            return float(self.rng.uniform(0.0, wait))
        if bo.jitter == "equal":
            return wait / 2 + float(self.rng.uniform(0.0, wait / 2))
        return wait

    # ---- one request's life ----------------------------------------------------------------------
    def _run(self, creq: ClientRequest) -> Generator[simpy.Event, Any, None]:
        retry = self.cfg.retry
        fleet = self.fleet
        while True:
            att = fleet.send(creq)
            yield from self._wait(att)
            if att.outcome == names.COMPLETED:
                break
            cls = retry_class(att)
            if cls is None or cls not in retry.on_errors or len(creq.attempts) >= retry.max_attempts \
                    or not self._may_retry():
                break
            wait = self.backoff_s(len(creq.attempts))
            if wait > 0:
                yield self.env.timeout(wait)
        fleet.finish(creq, att.outcome, att.reason)

    def _wait(self, att: Attempt) -> Generator[simpy.Event, Any, None]:
        """Wait for the attempt's outcome, giving up at the timeouts."""
        env = self.env
        done = att.done
        assert done is not None
        total = self.cfg.timeout_s
        first = self.cfg.first_token_timeout_s
        if first is not None and (total is None or first < total):
            yield done | env.timeout(first)
            if done.triggered:
                return
            r = att.req
            if r.first_token_time < 0 or r.first_token_time + att.back_s > env._now:
                self.fleet.cancel(att, names.R_FIRST_TOKEN_TIMEOUT)
                return
        if total is not None:
            left = att.start + total - env._now
            if left > 0:
                yield done | env.timeout(left)
            if not done.triggered:
                self.fleet.cancel(att, names.R_TIMEOUT)
            return
        yield done


# --------------------------------------------------------------------------------------------
# Traffic players
# --------------------------------------------------------------------------------------------


def open_loop(env: Environment, stream: OpenLoopStream, send: Callable[[RequestSpec], Any],
              until: float | None) -> Generator[simpy.Event, Any, None]:
    """Send one request at each arrival time (no one waits for it)."""
    for t, spec in zip(stream.times, stream.specs, strict=False):
        if until is not None and t > until:
            return
        if t > env._now:
            yield env.timeout(t - env._now)
        send(spec)


class OpenLoopSender:
    """:func:`open_loop` as compiled timer callbacks instead of a SimPy process: the same events
    with the same ids in the same order (``tests/cluster/test_bench_clients.py`` compares both), and
    no interpreted ``Timeout`` and ``Process._resume`` per request. Like ``env.process``, it starts
    from an URGENT event now (SimPy's ``Initialize``) and ends with an event of its own (a finished
    process is scheduled once more), so that the event ids of everything else stay the same."""

    def __init__(self, env: Environment, stream: OpenLoopStream,
                 send: Callable[[RequestSpec], Any], until: float | None) -> None:
        self.env = env
        self.items = zip(stream.times, stream.specs, strict=False)
        self.send = send
        self.until = until
        self.due: RequestSpec | None = None
        """The request whose arrival the pending timer is for."""
        self._on_fire: Callable[[Timer], None] = self._fire
        """The arrival timer's callback, bound once."""
        ev = Timer(env)
        ev.callbacks = [self._resume]
        push(env, env._now, URGENT, ev)

    def _fire(self, ev: Any) -> None:
        spec = self.due
        assert spec is not None
        self.due = None
        self.send(spec)
        self._resume(ev)

    def _resume(self, _ev: Any) -> None:
        """What the process does between two yields: send what is due, then wait for the next
        arrival (or end)."""
        env = self.env
        until = self.until
        for t, spec in self.items:
            if until is not None and t > until:
                break
            if t > env._now:
                self.due = spec
                call_later(env, t - env._now, self._on_fire)
                return
            self.send(spec)
        end = Timer(env)  # the finished process's own event (no one waits for it)
        push(env, env._now, NORMAL, end)


def capped_open_loop(env: Environment, stream: OpenLoopStream, submit: Submit,
                     until: float | None, cap: int) -> Generator[simpy.Event, Any, None]:
    """``vllm bench serve --max-concurrency``: each request is due at its arrival time, but at most
    ``cap`` are in flight (vllm/benchmarks/serve.py: a task per request, ``async with semaphore``
    around the request; its latencies count from inside the semaphore). A due request that finds
    every slot busy waits, in order, and is sent the moment one ends."""
    waiting: deque[RequestSpec] = deque()
    free = [cap]

    def release(_ev: simpy.Event) -> None:
        if waiting:
            submit(waiting.popleft()).callbacks.append(release)
        else:
            free[0] += 1

    for t, spec in zip(stream.times, stream.specs, strict=False):
        if until is not None and t > until:
            return
        if t > env._now:
            yield env.timeout(t - env._now)
        if free[0] > 0:
            free[0] -= 1
            submit(spec).callbacks.append(release)
        else:
            waiting.append(spec)


def warmup_then_measure(env: Environment, group: ClosedLoopGroup, submit: Submit,
                        traffic: Traffic) -> Generator[simpy.Event, Any, None]:
    """aiperf's credit phases (aiperf/timing/credit_issuing_strategy.py): the warm-up phase sends
    ``group.warmup`` requests with ``group.concurrency`` in flight and waits until every one has
    returned; then the profiling phase starts all its clients at once and sends ``group.limit``.
    The measured window opens at the start of the profiling phase (``traffic.measure_from_s``)."""
    n = min(group.concurrency, group.warmup)
    budget = [group.warmup]
    yield env.all_of([env.process(closed_loop_client(env, group.specs, submit, group.think_time_s,
                                                     budget, traffic.until,
                                                     i * group.ramp_up_s / group.concurrency))
                      for i in range(n)])
    traffic.measure_from_s = max(traffic.measure_from_s, env._now)
    start_closed_group(env, group, submit, traffic.until)


def start_closed_group(env: Environment, g: ClosedLoopGroup, submit: Submit,
                       until: float | None) -> None:
    """Start a closed-loop group's clients (client i at i × ramp_up_s / concurrency)."""
    budget = [g.limit] if g.limit is not None else None
    # NOTE: a client past the group's request budget would never send (the first ``limit``
    # clients to start take it all), so only as many clients as requests are started; the
    # ramp keeps its spacing, so the results are the same.
    n = g.concurrency if g.limit is None else min(g.concurrency, g.limit)
    for i in range(n):
        env.process(closed_loop_client(env, g.specs, submit, g.think_time_s, budget, until,
                                       i * g.ramp_up_s / g.concurrency))


def closed_loop_client(env: Environment, specs: Iterator[RequestSpec], submit: Submit,
                       think_time_s: float, budget: list[int] | None, until: float | None,
                       start_s: float = 0.0) -> Generator[simpy.Event, Any, None]:
    """One user: (from ``start_s``) request, wait for the final outcome, think, repeat.

    ``budget`` is a one-element counter shared by the group's clients of requests left to send
    (None = unlimited); ``until`` stops sending after that time.
    """
    if start_s > 0:
        yield env.timeout(start_s)
    while True:
        if until is not None and env._now >= until:
            return
        if budget is not None:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        done = submit(next(specs))
        yield done
        if think_time_s > 0:
            yield env.timeout(think_time_s)


def session_client(env: Environment, session: Session, submit: Submit,
                   until: float | None) -> Generator[simpy.Event, Any, None]:
    """Play one conversation: each turn after the previous response and its think time. A turn
    that finally fails ends the session."""
    if session.start_s > env._now:
        yield env.timeout(session.start_s - env._now)
    for k in range(session.num_turns):
        if k and session.think_time_s[k] > 0:
            yield env.timeout(session.think_time_s[k])
        if until is not None and env._now >= until:
            return
        creq = yield submit(session.make_turn(k))
        if isinstance(creq, ClientRequest) and creq.outcome != names.COMPLETED:
            return


def session_source(env: Environment, sessions: Iterator[Session], submit: Submit,
                   until: float | None) -> Generator[simpy.Event, Any, None]:
    """Start each session's client at its start time."""
    for s in sessions:
        if until is not None and s.start_s > until:
            return
        if s.start_s > env._now:
            yield env.timeout(s.start_s - env._now)
        env.process(session_client(env, s, submit, until))


def start_clients(env: Environment, traffic: Traffic, submit: Submit,
                  fire: Callable[[RequestSpec], None] | None = None) -> None:
    """Start the SimPy processes that play ``traffic`` through ``submit`` (a plain fleet submit or
    :meth:`Clients.submit`, which applies the client policy); open-loop sources send through
    ``fire`` when given (the same without an event to wait for: :meth:`Clients.fire`)."""
    for stream in traffic.open_loop:
        if stream.max_concurrency is not None:
            env.process(capped_open_loop(env, stream, submit, traffic.until,
                                         stream.max_concurrency))
        else:
            OpenLoopSender(env, stream, fire or submit, traffic.until)  # open_loop, compiled
    for group in traffic.closed_loop:
        g: ClosedLoopGroup = group
        if g.warmup > 0:
            env.process(warmup_then_measure(env, g, submit, traffic))
        else:
            start_closed_group(env, g, submit, traffic.until)
    for sessions in traffic.sessions:
        env.process(session_source(env, sessions, submit, traffic.until))

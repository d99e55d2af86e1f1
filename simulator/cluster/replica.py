"""One vLLM replica (an engine core on ``tp`` GPUs) as a SimPy process.

What this models: vLLM's engine-core busy loop. New requests land in the scheduler's WAITING queue
(between steps, as the engine core drains its input queue); each step the scheduler picks a batch,
the GPU runs it for the step time the step-time model predicts, and the outputs are applied —
tokens streamed, finished requests released. With nothing to do the engine sleeps until a request
arrives. The whole life of the replica is the one generator :meth:`Replica.run`.

A replica can die (:meth:`crash`: the process stops, every request on it is lost, its KV cache is
gone) and come back empty (:meth:`restart`). In a disaggregated fleet a *prefill* replica's streamed
token is not the client's (the decode replica produces the first token the client sees), and a
*decode* replica admits requests whose prompt KV arrives over a link (:mod:`simulator.cluster.disagg`):
their blocks are reserved first, then the request joins RUNNING when the transfer is done.

The loop (:meth:`Replica.run`) is that busy loop: sleep until there is work; schedule a step
(``Scheduler.schedule``); hold the GPU for its step time (a SimPy timeout of
``StepTimeModel.predict``); apply its outputs (:meth:`Replica._finish_step`, vLLM
``update_from_output``). Where it provably changes nothing, the *decode fast path* takes steps in
bulk — plain decode steps without the scheduler, and running ahead of the clock between events —
behind three calls of the loop (:class:`~simulator.cluster.fast_path.DecodeFastPath`: its module says
how and why it is exact). ``sim.fast_path: false`` (or ``fast_path=False`` here) switches it off:
the same loop, every step through the scheduler, the same results bit for bit.

The API server in front of the engine core (:mod:`simulator.cluster.frontend`, ``engine.api_server``)
sits at the two ends of the loop: :meth:`submit` hands a request to the scheduler once the API server
has tokenised it, and a request's first token and its end reach the client through the API server's
output lane (:meth:`_client_token`, :meth:`close_step`). With it off, both are instantaneous.

Leaves out: async scheduling (overlap of CPU scheduling with the GPU step), network time between the
engine and the client (the fleet's); a prefill replica frees its KV blocks when its request finishes
rather than when the decode side has pulled them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import simpy

from simulator.cluster.fast_path import IDLE, DecodeFastPath, StepOwner, available
from simulator.cluster.frontend import APIServer
from simulator.cluster.spec import APIServerConfig
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request, RequestStatus
from simulator.engine.scheduler import Scheduler, StepPlan
from simulator.engine.step_time import StepTimeModel
from simulator.metrics.recorder import Recorder
from simulator.simenv import Environment, Loop, Timer, call_later


def _no_token(req: Request, now: float) -> None:
    """A prefill replica's sampled token is discarded by the P/D proxy (see module docstring)."""


class Replica(StepOwner):
    """Scheduler + KV cache + step-time model, driven by one SimPy process."""

    def __init__(self, env: Environment, replica_id: int,
                 make_scheduler: Callable[[], Scheduler], step_time: StepTimeModel,
                 recorder: Recorder, on_finish: Callable[[Request, Replica], None],
                 pool: Any = None, index: int = 0, role: str = "mixed", *,
                 fast_path: bool = True, api_server: APIServerConfig | None = None) -> None:
        self.env = env
        self.id = replica_id
        self.pool = pool
        """The pool this replica belongs to (fleet bookkeeping)."""
        self.index = index
        """Index within its pool."""
        self.role = role
        self.make_scheduler = make_scheduler
        self.scheduler = make_scheduler()
        self.kv: KVCacheManager = self.scheduler.kv
        self.step_time = step_time
        self.recorder = recorder
        self.on_finish = on_finish
        api = APIServer(api_server) if api_server is not None and api_server.enabled else None
        # A prefill replica's API server only tokenises (the decode side streams); a decode
        # replica's only streams (its requests arrive tokenised, over the KV link).
        self.api_in: APIServer | None = api if role != "decode" else None
        """The API server's input lane (None: requests reach the scheduler at once)."""
        self.api_out: APIServer | None = api if role != "prefill" else None
        """The API server's output lane (None: tokens and ends reach the client at once)."""
        self._tokenizing: dict[int, Request] = {}
        """Requests in the API server's input lane, by id."""
        self._delivering: dict[int, Request] = {}
        """Requests the engine finished whose last chunk the output lane has not sent yet."""
        self._on_tokenized: Callable[[Timer], None] = self._tokenized
        self._on_delivered: Callable[[Timer], None] = self._delivered
        """The API server's timers' callbacks, bound once (not a bound method per request)."""
        self._token = _no_token if role == "prefill" else (
            recorder.token if self.api_out is None else self._client_token)
        self._wake: simpy.Event | None = None
        self.busy_time = 0.0
        """GPU seconds spent in engine steps (one replica: its ``tp`` GPUs together)."""
        self.prefill_time = 0.0
        """Of ``busy_time``, the share of each step's seconds on its prefill tokens (the step's
        time split by its prefill vs decode token counts): what the cost model bills to input
        tokens, kept as the run goes so it does not depend on step rows being recorded."""
        self.num_steps = 0
        self.alive = True
        self.pending: deque[tuple[Request, Callable[[Request], None]]] = deque()
        """Decode admission: requests waiting for KV blocks, with what to do once they have them."""
        self.num_transferring = 0
        """Requests holding blocks here whose KV is still on the link."""
        self._dead_stats = [0, 0, 0]
        """Preemptions, prefix queries and hits of schedulers lost in crashes."""
        self.fast_path = bool(fast_path) and available(step_time, role)
        """Decode fast path on (:mod:`simulator.cluster.fast_path`): asked for, and possible."""
        self.fast: DecodeFastPath | None = DecodeFastPath(
            self, env, self.scheduler, step_time, recorder, self._token, self.pending,
            replica_id) if self.fast_path else None
        self.process = Loop(env, self.run())

    # ---- what a router / scraper sees ------------------------------------------------------
    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting + len(self.pending)

    @property
    def kv_usage(self) -> float:
        return self.kv.usage

    @property
    def num_preemptions(self) -> int:
        return self.scheduler.num_preemptions + self._dead_stats[0]

    @property
    def prefix_queries(self) -> int:
        return self.kv.queries + self._dead_stats[1]

    @property
    def prefix_hits(self) -> int:
        return self.kv.hits + self._dead_stats[2]

    # ---- inputs ----------------------------------------------------------------------------
    def submit(self, req: Request) -> None:
        api = self.api_in
        if api is not None:
            now = self.env._now
            at = api.admit(now, req.prompt_len)
            if at > now:  # the API server tokenises it first (frontend module)
                self._tokenizing[req.request_id] = req
                call_later(self.env, at - now, self._on_tokenized, req)
                return
        self.scheduler.add_request(req)
        self._kick()

    def _tokenized(self, ev: Timer) -> None:
        """The API server has sent the request (the timer's value) to the engine core (unless it
        was aborted or lost)."""
        req: Request = ev._value
        if self._tokenizing.pop(req.request_id, None) is None:
            return
        self.scheduler.add_request(req)
        self._kick()

    def _kick(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def abort(self, req: Request) -> bool:
        """Client gone: drop the request wherever it is here and free its blocks."""
        if self._tokenizing.pop(req.request_id, None) is not None \
                or self._delivering.pop(req.request_id, None) is not None:
            return True  # not in the engine yet, or the engine is done with it
        if self.fast is not None:
            self.fast.abort(req)
        for k, (r, _) in enumerate(self.pending):
            if r is req:
                del self.pending[k]
                return True
        found = self.scheduler.abort_request(req)
        if found and self.pending:
            self._admit_pending()  # its blocks may be what the head of the line waits for
        return found

    # ---- decode admission (disaggregated serving) ------------------------------------------
    def admit_remote(self, req: Request, on_reserved: Callable[[Request], None]) -> None:
        """Queue a prefilled request for its KV blocks here; ``on_reserved`` starts the transfer."""
        self.pending.append((req, on_reserved))
        self._admit_pending()

    def _admit_pending(self) -> None:
        sched = self.scheduler
        kv = self.kv
        max_seqs = sched.config.max_num_seqs
        while self.pending:
            req, on_reserved = self.pending[0]
            if sched.num_running + self.num_transferring >= max_seqs:
                return
            # NOTE: the decode side recomputes the last prompt token to sample its own first token
            # (vLLM's P/D proxy discards the prefill's token), so prompt_len − 1 tokens of KV come
            # over the link and are reserved here before the transfer starts.
            n = req.prompt_len - 1
            req.num_computed_tokens = 0
            if n > 0 and kv.allocate_slots(req, n) is None:
                if not sched.has_work() and not self.num_transferring:
                    raise RuntimeError(
                        f"replica {self.id}: a {req.prompt_len}-token prompt does not fit the "
                        f"decode KV cache of {kv.num_blocks} blocks")
                return
            req.num_computed_tokens = n
            self.pending.popleft()
            self.num_transferring += 1
            on_reserved(req)

    def start_decoding(self, req: Request) -> None:
        """The request's KV cache has arrived: it joins RUNNING."""
        self.num_transferring -= 1
        req.status = RequestStatus.RUNNING
        self.scheduler.running.append(req)
        if self.fast is not None:
            self.fast.joined(req)
        self._kick()

    def drop_reserved(self, req: Request) -> None:
        """A transfer was abandoned (client gone, source died): free the reserved blocks."""
        self.num_transferring -= 1
        self.kv.free_request(req)
        self._admit_pending()
        self._kick()  # the freed blocks may be what a preempted request waits for

    # ---- the engine loop -------------------------------------------------------------------
    def run(self) -> Generator[simpy.Event, Any, None]:
        """The engine-core busy loop (vLLM ``EngineCore.run_busy_loop`` → ``step``)."""
        env = self.env
        predict = self.step_time.predict
        fast = self.fast
        try:
            while True:
                sched = self.scheduler
                while not sched.has_work():  # a kick may find nothing to do (a dropped transfer)
                    self._wake = env.event()
                    yield self._wake
                    self._wake = None
                if fast is not None:  # steps the fast path can take (fast_path module)
                    step, start = fast.next_step()
                    if step is not None:
                        yield fast.end_at(start + step.dt)
                        fast.finish(step, start, env._now)
                        continue
                    if start == IDLE:
                        continue  # it ran ahead to the end of the last request
                    if start != env._now:
                        yield fast.end_at(start)  # the scheduler's step starts there
                plan = sched.schedule()
                if plan.is_empty and self.num_transferring:
                    # Disaggregated decode: every free block is reserved for KV still on the link
                    # (a preempted request waits to recompute). Sleep until a transfer lands
                    # (start_decoding) or is dropped (drop_reserved), as vLLM's scheduler idles.
                    self._wake = env.event()
                    yield self._wake
                    self._wake = None
                    continue
                if plan.is_empty:
                    raise RuntimeError(
                        f"replica {self.id}: requests are waiting but none can be scheduled "
                        f"(KV cache of {self.kv.num_blocks} blocks too small for the head request)")
                if fast is not None:
                    fast.ordinary_step()
                start = env._now
                ctxs = plan.context_lens
                for k, req in enumerate(plan.requests):
                    if req.scheduled_time < 0 and ctxs[k] == req.num_cached_tokens:
                        req.scheduled_time = start
                dt = predict(plan)
                yield env.timeout(dt)
                self._finish_step(plan, start, dt)
        except simpy.Interrupt:
            return  # crashed: see crash()

    def _finish_step(self, plan: StepPlan, start: float, dt: float) -> None:
        """The step's GPU time is over: apply its outputs (vLLM ``update_from_output``)."""
        sched = self.scheduler
        self.busy_time += dt
        self.num_steps += 1
        produced, finished = sched.update(plan)
        now = self.env._now
        token = self._token
        for req in produced:
            token(req, now)
        self.close_step(start, dt, plan.num_seqs, plan.num_tokens,
                         plan.num_new_tokens.count(1), plan.num_scheduled_new,
                         len(plan.preempted), finished, now)

    def _client_token(self, req: Request, now: float) -> None:
        """A token left the engine at ``now``; a request's first one reaches the client through
        the API server's output lane. Later gaps are the engine's (the lane shifts a stream by
        about the same offset every step), counted from the delivered first token, so the gaps
        add up to the stream's span (the first is short by the lane's offset)."""
        if req.first_token_time < 0:
            api = self.api_out
            assert api is not None
            self.recorder.token(req, api.first_token(now))
        else:
            self.recorder.token(req, now)

    def _delivered(self, ev: Timer) -> None:
        """The response's last chunk of the request (the timer's value) reached the client: the
        fleet counts the request done."""
        req: Request = ev._value
        if self._delivering.pop(req.request_id, None) is not None:
            self.on_finish(req, self)

    def close_step(self, start: float, dt: float, n_seqs: int, n_tok: int, n_dec: int,
                    num_new: int, n_preempted: int, finished: list[Request], now: float) -> None:
        """The end of every step, ordinary or fast: its step row, the finished requests handed
        back to the fleet, then decode admission of requests waiting for blocks."""
        if n_tok > n_dec:
            self.prefill_time += dt * (n_tok - n_dec) / n_tok
        recorder = self.recorder
        if recorder.record_steps:
            recorder.step((self.id, start, dt, n_seqs, n_tok, n_tok - n_dec, n_dec, num_new,
                           n_preempted, self.scheduler.num_waiting, self.kv.usage))
        else:
            recorder.num_steps += 1  # what step() counts
        api = self.api_out
        if api is None:
            for req in finished:
                req.finish_time = now
                self.on_finish(req, self)
        else:
            base, gap = api.step_end(now, n_seqs, len(finished))
            env = self.env
            for j, req in enumerate(finished):
                at = base + (j + 1) * gap
                req.finish_time = at
                if at > now:
                    self._delivering[req.request_id] = req
                    call_later(env, at - now, self._on_delivered, req)
                else:
                    self.on_finish(req, self)
        if self.pending:
            self._admit_pending()

    # ---- decode fast path (simulator.cluster.fast_path) ------------------------------------
    def sync(self) -> None:
        """Apply the fast path's deferred per-request state now (its lazy requests). Whatever
        reads per-request engine state of this replica from outside (counters, tokens) calls this
        first."""
        if self.fast is not None:
            self.fast.sync()

    @property
    def fast_steps(self) -> int:
        """Steps scheduled on the fast path (its share of ``num_steps``)."""
        return self.fast.fast_steps if self.fast is not None else 0

    @property
    def ahead_steps(self) -> int:
        """Steps that ended by running ahead, without a SimPy event of their own."""
        return self.fast.ahead_steps if self.fast is not None else 0

    @property
    def ahead_finishes(self) -> int:
        """Of those, steps that concerned others, ended with the clock moved to their end."""
        return self.fast.ahead_finishes if self.fast is not None else 0

    def is_idle(self) -> bool:
        return not self.scheduler.has_work()

    # ---- failure and recovery --------------------------------------------------------------
    def crash(self) -> list[Request]:
        """Die now: stop the engine loop and lose every request and cached block. Returns the
        requests that were in its scheduler or waiting for blocks (transfers are the fleet's)."""
        if self.fast is not None:
            self.fast.sync()
            self.fast.step = None
        self.alive = False
        if self.process.is_alive:
            self.process.interrupt()
        self._wake = None
        sched = self.scheduler
        lost = [*sched.running, *sched.waiting, *(r for r, _ in self.pending),
                *self._tokenizing.values(), *self._delivering.values()]
        self._tokenizing.clear()
        self._delivering.clear()
        for req in lost:
            req.status = RequestStatus.FINISHED
        self.pending.clear()
        self.num_transferring = 0
        st = self._dead_stats
        st[0] += sched.num_preemptions
        st[1] += self.kv.queries
        st[2] += self.kv.hits
        return lost

    def restart(self) -> None:
        """Back up with an empty KV cache (a fresh engine)."""
        self.scheduler = self.make_scheduler()
        self.kv = self.scheduler.kv
        if self.fast is not None:
            self.fast.reset(self.scheduler)
        self.alive = True
        self.process = Loop(self.env, self.run())


def request_done(req: Request) -> bool:
    return req.status == RequestStatus.FINISHED

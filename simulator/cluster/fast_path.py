"""The replica's decode fast path and run-ahead: vLLM's busy loop taken many steps at a time where
that provably changes nothing.

What this models: nothing new — it is an exact shortcut through what :mod:`simulator.cluster.replica`
models step by step (vLLM's engine-core loop: schedule → step time → timeout → apply). Results are
bit-identical with it on or off (``tests/cluster/test_fast_path.py`` compares every frame, with and
without the compiled engine in ``tests/test_native.py``). Switch: ``sim.fast_path: false`` in a
scenario (or ``Replica(..., fast_path=False)``) runs every step through the scheduler; it is also
off for prefill replicas, the V0 scheduler and step-time models without ``predict_totals``.

The interface: the replica's loop calls :meth:`DecodeFastPath.next_step`,
:meth:`~DecodeFastPath.finish` and :meth:`~DecodeFastPath.ordinary_step`; the rest of the replica
calls :meth:`~DecodeFastPath.sync` (before per-request state is read, and at a crash),
:meth:`~DecodeFastPath.abort`, :meth:`~DecodeFastPath.joined` and :meth:`~DecodeFastPath.reset` (a
restart). What it needs of the replica is :class:`StepOwner`: the engine counters it advances and
the common end of a step.

Lazy decodes. In a busy replica most running requests are plain decodes: each step they compute one
token, and vLLM's scheduler gives each of them exactly that as long as the token budget and the free
blocks suffice. Such a request becomes *lazy*: its computed and output counters and its streamed
tokens are not touched step by step but derived from the fast-path step counter and the list of
step end times, and applied when it finishes, is aborted, or someone reads per-request state
(:meth:`DecodeFastPath.sync`). What can still change per step is done per step: the blocks lazy
requests take at their block boundaries (a lazy request's blocks are anonymous, see
:mod:`simulator.engine.kv_cache`, so only their number matters: a request that reaches a new block
every ``block_size`` steps is counted in ``_phase`` at its step residue, and a step takes
``_phase[g mod block_size]`` blocks at once), the requests that are not lazy (prefill chunks, new
admissions, which go through the scheduler's own code), and the step row. A step is only taken
this way when it provably schedules every running request in full (the token budget covers them
all and the free blocks cover every allocation, so no preemption); otherwise every lazy request is
applied and the step goes through :meth:`Scheduler.schedule` as usual. A lazy request's largest
gap between tokens comes from a monotonic stack of step gaps (``_gap``), so applying it costs
O(log steps), not O(steps). The step time comes from the step's totals (``predict_totals``, the
same number as ``predict``), the clock advances by the same timeouts, and the gauges observers read
(running and waiting counts, KV-cache usage) are exact at all times.

Running ahead. A fast-path step whose end comes strictly before the next event anywhere in the
simulation (``env.peek()``) is ended at once, without a SimPy event: no other process can run before
that time, so nothing can observe the difference. When it concerns no one else (it finishes no
request, and no request waits here for KV blocks) the clock is left alone; otherwise the clock is
first moved to the step's end (``env._now``, which SimPy would have set when popping the step's
timeout: nothing is queued before it) and whatever the finish sets going (the fleet's bookkeeping, a
client's next event) is scheduled from there, as it would have been — then the next event anywhere
is looked up again. The next step is then scheduled at that (virtual) time the same way, and over a
stretch of plain decodes (every running request lazy, nothing waiting) whole runs of steps are taken
in one loop (:meth:`DecodeFastPath._decode_run`), with the step time evaluated inline from
``decode_terms`` (else ``decode_seconds_fn``; the same number as ``predict_totals``). Only the step
that reaches the next event is yielded by the replica, as a timeout at its absolute end time
(:func:`simulator.simenv.at`): the clock reads exactly what step-by-step timeouts would have made
it, and events at that time keep their order. A light replica between arrivals thus costs about a
microsecond per step instead of an event. Why no one can see a replica ahead of the clock: it runs
ahead only when nothing else is queued at or before the end of what it takes, so the next event
processed anywhere comes no earlier than the start of its step in progress.

Compiled with the replica (:mod:`simulator._native`): plain typed Python, no Python base classes.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Final

import simpy

from simulator.cluster.frontend import APIServer
from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request, RequestStatus
from simulator.engine.scheduler import Scheduler, StepPlan
from simulator.engine.step_time import RooflineStepTime, StepTimeModel
from simulator.metrics.recorder import Recorder
from simulator.simenv import Environment, at, next_event

_RUNNING = RequestStatus.RUNNING
_NEVER = 1 << 62
"""A fast-path step index no run reaches."""
TRIM_ENDS = 4096
"""Step end times kept before those no lazy request needs are dropped (:meth:`DecodeFastPath._trim`)."""
IDLE = -1.0
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
"""Bound once: a Final is a C static in the compiled build (``heapq.heappush`` is a generic
attribute lookup on the module at every call)."""
""":meth:`DecodeFastPath.next_step`'s start time when running ahead finished the last request."""


class StepOwner:
    """What the fast path needs of the replica it runs (:class:`~simulator.cluster.replica.Replica`
    is one): the engine counters it advances over a run of decode steps, and the common end of a
    step (its step row, finished requests handed back, decode admission)."""

    busy_time: float
    """GPU seconds spent in engine steps."""
    num_steps: int
    api_out: APIServer | None
    """The API server's output lane, which every step's outputs occupy (None: none)."""

    def close_step(self, start: float, dt: float, n_seqs: int, n_tok: int, n_dec: int,
                   num_new: int, n_preempted: int, finished: list[Request], now: float) -> None:
        raise NotImplementedError


class FastStep:
    """An engine step in progress that was scheduled on the fast path."""

    __slots__ = ("dt", "entries", "lazy", "n_dec", "n_seqs", "n_tok", "num_new")

    def __init__(self, entries: list[tuple[Request, int, int]], lazy: bool, dt: float,
                 n_seqs: int, n_tok: int, n_dec: int, num_new: int) -> None:
        self.entries = entries
        """(request, new tokens, context before) of the requests scheduled one by one, in the
        scheduler's order; after a mid-step sync, of every request in the step."""
        self.lazy = lazy
        """Lazy requests take part (and have not been applied since the step was scheduled)."""
        self.dt = dt
        self.n_seqs = n_seqs
        self.n_tok = n_tok
        self.n_dec = n_dec
        self.num_new = num_new


def available(step_time: StepTimeModel, role: str) -> bool:
    """Whether a replica of ``role`` on ``step_time`` can run the fast path: the model predicts a
    step from its totals (``predict_totals``), and the replica streams its tokens (not prefill)."""
    return getattr(step_time, "predict_totals", None) is not None and role != "prefill"


class DecodeFastPath:
    """The fast path of one engine (one scheduler and KV cache: a replica builds a new one when it
    restarts empty). See the module docstring."""

    def __init__(self, owner: StepOwner, env: Environment, scheduler: Scheduler,
                 step_time: StepTimeModel, recorder: Recorder,
                 token: Callable[[Request, float], None],
                 pending: deque[tuple[Request, Callable[[Request], None]]],
                 replica_id: int) -> None:
        self.owner = owner
        self.env = env
        self.scheduler = scheduler
        self.kv: KVCacheManager = scheduler.kv
        self.recorder = recorder
        self.token = token
        """What streams an output token (the recorder's ``token``)."""
        self.pending = pending
        """The replica's decode admission queue (requests waiting here for KV blocks)."""
        self.id = replica_id
        predict_totals = getattr(step_time, "predict_totals", None)
        assert predict_totals is not None, "fast path without predict_totals (see available())"
        self._predict_totals = predict_totals
        self._roofline: RooflineStepTime | None = (
            step_time if isinstance(step_time, RooflineStepTime) else None)
        """The same model when it is the compiled roofline one: called directly (the bound method
        above is a Python call, its arguments boxed)."""
        self._decode_fn: Callable[[int], Callable[[int], float]] | None = getattr(
            step_time, "decode_seconds_fn", None)
        """Decode-only step seconds as a function of the summed context, per batch size."""
        self._decode_terms: Callable[[int], tuple[float, ...] | None] | None = getattr(
            step_time, "decode_terms", None)
        """The same as constants evaluated inline (``decode_terms``), per batch size."""
        self._decode_fns: dict[int, Callable[[int], float] | tuple[float, ...]] = {}
        """Those constants or else those functions, by batch size."""
        self.fast_steps = 0
        """Steps scheduled on the fast path."""
        self.ahead_steps = 0
        """Steps that ended by running ahead, without a SimPy event of their own."""
        self.ahead_finishes = 0
        """Of those, steps that concerned others (finished a request, or ended while requests
        waited here for KV blocks): ended with the clock moved to their end."""
        self.reset(scheduler)

    def reset(self, scheduler: Scheduler) -> None:
        """Start afresh on ``scheduler`` (a new engine: the replica restarted empty); the step
        counts go on."""
        self.scheduler = scheduler
        self.kv = scheduler.kv
        self.step: FastStep | None = None
        """The step in progress, when the fast path scheduled it."""
        self._g = 0
        """Fast-path steps whose tokens lazy requests have produced."""
        self._ends: list[float] = []
        """End time of fast-path step ``_g0 + k`` at index k."""
        self._gap_step: list[int] = []
        self._gap: list[float] = []
        """The largest gaps between consecutive step ends: ``_gap[j]`` = end(``_gap_step[j]``) −
        end(``_gap_step[j]`` − 1), steps increasing and gaps decreasing (a monotonic stack), so the
        largest gap from any step to the latest is the first entry at or after it."""
        self._g0 = 0
        self._lazy: set[Request] = set()
        self._lazy_ctx = 0
        """Summed context (computed tokens) of the lazy requests."""
        self._phase = [0] * self.kv.block_size
        """Lazy requests that take a new block in fast-path step g, at index g mod block size."""
        self._fin: list[tuple[int, int, int, Request]] = []
        """Heap of last steps (step, run_seq, lazy_g0, request)."""
        self._eager: list[Request] = []
        """Running requests that are not lazy, in RUNNING order."""
        self._seq = 0

    # ---- the interface the replica loop calls ------------------------------------------------
    def end_at(self, when: float) -> simpy.Event:
        """The event of a step that ends at the absolute time ``when`` (:func:`~simulator.simenv.at`)."""
        return at(self.env, when)

    def next_step(self) -> tuple[FastStep | None, float]:
        """Take the steps that end before the next event anywhere (running ahead), then schedule
        the one that reaches it. Returns (that step, its start) for the replica to yield until its
        end and then :meth:`finish`; or (None, start) when the step must go the ordinary way
        through the scheduler at ``start`` (every lazy request applied); or (None, :data:`IDLE`)
        when running ahead finished the last request (nothing to do: the replica sleeps)."""
        env = self.env
        sched = self.scheduler
        start = env._now
        peek = next_event(env)
        while True:
            # Steps that end before the next event anywhere end virtually — at once if they
            # concern no one else, else with the clock moved to their end.
            start, step = self._decode_run(start, peek)
            if step is not None:
                break  # a plain decode step that reaches the next event
            step = self._schedule()
            if step is None:
                break
            self._mark(step, start)
            end = start + step.dt
            if not end < peek:
                break
            self.ahead_steps += 1
            if self._quiet(step):
                self._finish(step, start, end)
            else:
                self.ahead_finishes += 1
                env._now = end
                self._finish(step, start, end)
                peek = next_event(env)  # what the finish set going, from ``end`` on
                if not sched.has_work():
                    return None, IDLE
            start = end
        if step is not None:
            self.step = step
            return step, start
        self.sync()  # the step goes the ordinary way: apply every lazy request
        return None, start

    def finish(self, step: FastStep, start: float, now: float) -> None:
        """The step :meth:`next_step` returned has ended at ``now``: apply its outputs."""
        self.step = None
        self._finish(step, start, now)

    def ordinary_step(self) -> None:
        """The scheduler scheduled the next step itself: number RUNNING afresh; nothing is lazy."""
        seq = self._seq
        running = self.scheduler.running
        for k, req in enumerate(running):
            req.run_seq = seq + k
        self._seq = seq + len(running)
        self._eager = list(running)

    def joined(self, req: Request) -> None:
        """``req`` joined RUNNING from outside the scheduler (its KV cache arrived)."""
        req.run_seq = self._seq
        self._seq += 1
        self._eager.append(req)

    def abort(self, req: Request) -> None:
        """``req`` is being aborted: apply it first if it is lazy."""
        if req.lazy_g0 >= 0 and req in self._lazy:
            self._apply(req)

    def sync(self) -> None:
        """Apply every lazy request now (see module docstring). Whatever reads per-request
        engine state of this replica from outside (its counters, tokens) calls this first."""
        if not self._lazy:
            return
        lazy = sorted(self._lazy, key=lambda r: r.run_seq)
        step = self.step
        if step is not None and step.lazy:
            # The step in progress now finishes the ordinary way, over every request in it.
            g = self._g
            full = step.entries + [(r, 1, r.lazy_c0 + g - r.lazy_g0) for r in lazy]
            full.sort(key=lambda e: e[0].run_seq)
        for req in lazy:
            self._apply(req)
        if step is not None and step.lazy:
            step.entries = full
            step.lazy = False
        self._fin.clear()
        self._ends.clear()
        self._gap_step.clear()
        self._gap.clear()
        self._g0 = self._g
        self._eager = list(self.scheduler.running)

    # ---- lazy requests -----------------------------------------------------------------------
    def _join(self, req: Request, g: int) -> bool:
        """Make a running plain decode lazy from fast-path step ``g``; False if it is not one."""
        out = req.num_output_tokens
        c = req.num_computed_tokens
        n_tok = req.prompt_len + out
        if c != n_tok - 1 or out < 1 or req.scheduled_time < 0:
            return False
        kv = self.kv
        bs = kv.block_size
        ja = kv.held[req.request_id] * bs - c  # steps until its next block
        if not 0 <= ja < bs or len(req.prefix_hashes) > c // bs:
            return False  # not one new block every block_size steps, or shared blocks to hash
        left = min(req.max_tokens - out, self.scheduler.config.max_model_len - n_tok)
        fin = g + left - 1
        req.lazy_g0, req.lazy_c0, req.lazy_out0, req.lazy_fin = g, c, out, fin
        # NOTE: its blocks are anonymous (kv_cache module docstring): only how many it takes in
        # each step matters — one in every step ≡ g + ja (mod block size) until it finishes.
        if g + ja <= fin:
            p = (g + ja) % bs
            self._phase[p] += 1
            req.lazy_phase = p
        _heappush(self._fin, (fin, req.run_seq, g, req))
        self._lazy.add(req)
        self._lazy_ctx += c
        return True

    def _apply(self, req: Request) -> None:
        """Apply a lazy request's deferred counters and tokens; it is no longer lazy."""
        g0 = req.lazy_g0
        k = self._g - g0
        if k:
            i = g0 - self._g0
            ends = self._ends
            if self.recorder.record_itl:
                self.recorder.token_run([req], ends[i:i + k])
            else:
                steps = self._gap_step
                j = bisect_left(steps, g0 + 1)
                self.recorder.token_span(req, ends[i], ends[i + k - 1],
                                         self._gap[j] if j < len(steps) else -1.0)
        req.num_output_tokens = req.lazy_out0 + k
        c = req.lazy_c0 + k
        step = self.step
        # NOTE: in the middle of a step that scheduled it, its token is being computed.
        done = c + 1 if step is not None and step.lazy else c
        req.num_computed_tokens = done
        self.kv.settle(req, done)
        if req.lazy_phase >= 0:
            self._phase[req.lazy_phase] -= 1
            req.lazy_phase = -1
        req.lazy_g0 = -1
        self._lazy.discard(req)
        self._lazy_ctx -= c

    def _join_eager(self, g: int) -> list[Request]:
        """Make the running requests that became plain decodes lazy from step ``g``; the rest
        stay eager (returned, and kept as ``_eager``)."""
        eager: list[Request] = []
        for req in self._eager:
            if req.status == _RUNNING and not self._join(req, g):
                eager.append(req)
        self._eager = eager
        return eager

    # ---- one step ----------------------------------------------------------------------------
    def _schedule(self) -> FastStep | None:
        """Schedule the next step on the fast path, or None when it could preempt or run out of
        token budget (then nothing has changed and the ordinary path takes it)."""
        sched = self.scheduler
        kv = self.kv
        cfg = sched.config
        g = self._g
        eager = self._join_eager(g)
        n_lazy = len(self._lazy)
        threshold = cfg.long_prefill_token_threshold
        max_len = cfg.max_model_len
        kv_max = kv.max_model_len
        bs = kv.block_size
        held = kv.held
        demand = n_lazy
        blocks = 0
        hashes = False
        ns: list[int] = []
        for req in eager:
            c = req.num_computed_tokens
            n = req.prompt_len + req.num_output_tokens - c
            if 0 < threshold < n:
                n = threshold
            if n > max_len - 1 - c:
                n = max_len - 1 - c
            ns.append(n)
            if n > 0:
                demand += n
                need = c + n
                if kv_max is not None and need > kv_max:
                    need = kv_max
                more = -(-need // bs) - held.get(req.request_id, 0)
                if more > 0:
                    blocks += more
                if req.prefix_hashes and req.kv_upto // bs < len(req.prefix_hashes):
                    hashes = True  # this step may hash shared prefix blocks
        budget = cfg.max_num_batched_tokens
        if demand > budget or demand == 0:
            return None
        alloc = self._phase[g % bs]
        if blocks + alloc > kv.num_free:
            return None  # an allocation would fail: the ordinary path preempts
        if alloc and hashes:
            # NOTE: a lazy request's new block may evict a cached block whose hash an eager
            # request registers in this step; which comes first depends on RUNNING order, which
            # only the ordinary path follows. Rare (a chunked prefill of a shared prefix): take it.
            return None
        # The lazy requests' new blocks, then the eager allocations (the blocks are anonymous:
        # only the number taken off the free queue before the admissions below matters).
        if alloc:
            kv.take(alloc)
        entries: list[tuple[Request, int, int]] = []
        # NOTE: by index, not zip(..., strict=True), which compiled code calls as Python.
        for k in range(len(eager)):
            n = ns[k]
            if n <= 0:
                continue
            req = eager[k]
            if kv.allocate_slots(req, n) is None:  # pragma: no cover - counted above
                raise RuntimeError(f"replica {self.id}: fast-path block accounting is off")
            entries.append((req, n, req.num_computed_tokens))
        num_new = 0
        if demand < budget and len(sched.waiting):
            plan = StepPlan()
            sched.admit_waiting(plan, budget - demand)
            num_new = plan.num_scheduled_new
            seq = self._seq
            admitted = plan.requests
            tokens = plan.num_new_tokens
            for k in range(len(admitted)):
                req = admitted[k]
                n = tokens[k]
                req.run_seq = seq
                seq += 1
                eager.append(req)
                entries.append((req, n, req.num_computed_tokens))
                demand += n
            self._seq = seq
        n_dec = n_lazy
        dec_ctx = self._lazy_ctx
        prefill: list[tuple[int, int]] = []
        for req, n, c in entries:
            req.num_computed_tokens = c + n
            if n == 1:
                dec_ctx += c
                n_dec += 1
            else:
                prefill.append((n, c))
        n_seqs = n_lazy + len(entries)
        rt = self._roofline
        dt = (rt.predict_totals(demand, n_seqs, dec_ctx, prefill) if rt is not None
              else self._predict_totals(demand, n_seqs, dec_ctx, prefill))
        self.fast_steps += 1
        return FastStep(entries, n_lazy > 0, dt, n_seqs, demand, n_dec, num_new)

    def _finish(self, step: FastStep, start: float, now: float) -> None:
        """The replica's ``_finish_step`` for a step scheduled on the fast path that ends at
        ``now``."""
        sched = self.scheduler
        dt = step.dt
        owner = self.owner
        owner.busy_time += dt
        owner.num_steps += 1
        finished: list[Request] = []
        if step.lazy:
            ends = self._ends
            if ends:
                gap = now - ends[-1]
                gaps = self._gap
                while gaps and gaps[-1] <= gap:
                    gaps.pop()
                    self._gap_step.pop()
                gaps.append(gap)
                self._gap_step.append(self._g)
            ends.append(now)
            g = self._g
            self._g = g + 1
            self._lazy_ctx += len(self._lazy)
            fin = self._fin
            while fin and fin[0][0] <= g:
                e = _heappop(fin)
                req = e[3]
                if req.lazy_g0 == e[2]:
                    self._apply(req)
                    finished.append(req)
            if len(self._ends) > TRIM_ENDS:
                self._trim()
        token = self.token
        max_len = sched.config.max_model_len
        lazy_done = len(finished)
        for req, _n, _c in step.entries:
            if req.status != _RUNNING:
                continue
            out = req.num_output_tokens
            if req.num_computed_tokens < req.prompt_len + out:
                continue  # partial prefill: the sampled token is discarded
            out += 1
            req.num_output_tokens = out
            token(req, now)
            if out >= req.max_tokens or req.prompt_len + out >= max_len:
                finished.append(req)
        if finished:
            if lazy_done and len(finished) > lazy_done:
                finished.sort(key=lambda r: r.run_seq)
            sched.release(finished)
        owner.close_step(start, dt, step.n_seqs, step.n_tok, step.n_dec, step.num_new, 0,
                         finished, now)

    @staticmethod
    def _mark(step: FastStep, start: float) -> None:
        """Requests whose first chunk (after any prefix hit) the step computes start now."""
        for req, _n, ctx in step.entries:
            if req.scheduled_time < 0 and ctx == req.num_cached_tokens:
                req.scheduled_time = start

    def _quiet(self, step: FastStep) -> bool:
        """Ending ``step`` concerns this replica alone: it finishes no request (so hands nothing
        back to the fleet) and no request waits for KV blocks here (so starts no transfer)."""
        if self.pending:
            return False
        if step.lazy:
            fin = self._fin
            if fin and fin[0][0] <= self._g:
                return False
        max_len = self.scheduler.config.max_model_len
        for req, _n, _c in step.entries:
            out = req.num_output_tokens
            if req.num_computed_tokens >= req.prompt_len + out and (
                    out + 1 >= req.max_tokens or req.prompt_len + out + 1 >= max_len):
                return False
        return True

    # ---- runs of plain decode steps ----------------------------------------------------------
    def _decode_run(self, start: float, peek: float) -> tuple[float, FastStep | None]:
        """Run ahead over plain decode steps from ``start``: while every running request is lazy
        and nothing waits, each step is the same batch one token further on, so take them here
        one after another — block actions, step time, clock, step row, exactly as
        :meth:`_schedule` and :meth:`_finish` would — until a step would finish a request, need
        more blocks than are free, or end at or after ``peek``. Returns the time the next step
        starts and, when that step is a plain decode step ending at or after ``peek``, the step
        itself, scheduled as :meth:`_schedule` would (else None: the caller schedules it)."""
        sched = self.scheduler
        if len(sched.waiting) or self.pending:
            return start, None
        g = self._g
        eager = self._join_eager(g)
        n = len(self._lazy)
        if eager or not n or n > sched.config.max_num_batched_tokens:
            return start, None
        kv = self.kv
        phase = self._phase
        bs = kv.block_size
        fin = self._fin
        ends = self._ends
        got = self._decode_fns.get(n)
        if got is None:
            got = self._decode_fns[n] = self._decode_seconds(n)
        if isinstance(got, tuple):
            # NOTE: decode_terms(n), evaluated inline below exactly as its docstring says.
            inline = True
            fpp, d_flops, kvb, d_bytes, launches, gl, ar, o, x = got
        else:
            inline = False
            seconds = got
        recorder = self.recorder
        rows = recorder.record_steps
        rid = self.id
        waiting = 0  # nothing waits during a run
        usage = kv.usage if rows else 0.0
        ctx = self._lazy_ctx
        owner = self.owner
        busy = owner.busy_time
        g0 = g
        stop = fin[0][0] if fin else _NEVER  # the step that finishes a request (fin is fixed here)
        step: FastStep | None = None
        gaps = self._gap
        gap_step = self._gap_step
        prev = ends[-1] if ends else None
        # The API server's output lane takes each step's n outputs, as close_step would.
        api = owner.api_out
        lane = api.output_s * n if api is not None else 0.0
        lane_busy = api.out_busy if api is not None else 0.0
        while g < stop:
            if inline:
                pairs = float(ctx + n)
                a = pairs * fpp / d_flops
                b = pairs * kvb / d_bytes
                dt = float(gl + ((a if a >= b else b) + launches) + ar + o + x)
            else:
                dt = seconds(ctx)
            end = start + dt
            ahead = end < peek
            blocks = phase[g % bs]
            if blocks:
                if blocks > kv.num_free:
                    break  # the ordinary path preempts
                kv.take(blocks)
                if rows:
                    usage = kv.usage
            if not ahead:
                # This step reaches the next event: it is the one the caller yields.
                step = FastStep([], True, dt, n, n, n, 0)
                self.fast_steps += 1
                break
            busy += dt
            if lane:
                lane_busy = (lane_busy if lane_busy > end else end) + lane
            if prev is not None:
                gap = end - prev
                while gaps and gaps[-1] <= gap:
                    gaps.pop()
                    gap_step.pop()
                gaps.append(gap)
                gap_step.append(g)
            ends.append(end)
            prev = end
            g += 1
            ctx += n
            if rows:
                recorder.step((rid, start, dt, n, n, 0, n, 0, 0, waiting, usage))
            start = end
        k = g - g0
        if k:
            self._g = g
            self._lazy_ctx = ctx
            owner.busy_time = busy
            owner.num_steps += k
            if api is not None and lane:
                api.out_busy = lane_busy
            self.fast_steps += k
            self.ahead_steps += k
            if not rows:
                recorder.num_steps += k  # what record() counts
            if len(ends) > TRIM_ENDS:
                self._trim()
        return start, step

    def _decode_seconds(self, n: int) -> Callable[[int], float] | tuple[float, ...]:
        """How :meth:`_decode_run` prices a decode-only step of ``n`` sequences: the step-time
        model's ``decode_terms`` (inline), else its ``decode_seconds_fn``, else
        ``predict_totals``."""
        if self._decode_terms is not None:
            terms = self._decode_terms(n)
            if terms is not None:
                return terms
        if self._decode_fn is not None:
            return self._decode_fn(n)
        predict = self._predict_totals

        def seconds(decode_ctx: int) -> float:
            return predict(n, n, decode_ctx, [])
        return seconds

    def _trim(self) -> None:
        """Forget step end times no lazy request needs any more."""
        low = min((r.lazy_g0 for r in self._lazy), default=self._g)
        cut = low - self._g0
        if cut > 0:
            del self._ends[:cut]
            self._g0 = low
            k = bisect_left(self._gap_step, low + 1)  # gaps no lazy request can ask for
            del self._gap_step[:k]
            del self._gap[:k]


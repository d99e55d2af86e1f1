"""One vLLM replica (an engine core on ``tp`` GPUs) as a SimPy process.

What this models: vLLM's engine-core busy loop. New requests land in the scheduler's WAITING queue
(between steps, as the engine core drains its input queue); each step the scheduler picks a batch,
the GPU runs it for the step time the step-time model predicts, and the outputs are applied —
tokens streamed, finished requests released. With nothing to do the engine sleeps until a request
arrives. The whole life of the replica is the one generator :meth:`Replica.run`.

Leaves out: async scheduling (overlap of CPU scheduling with the GPU step), detokenisation and
network time between the engine and the client, API-server queueing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request, RequestStatus
from simulator.engine.scheduler import Scheduler
from simulator.engine.step_time import StepTimeModel
from simulator.metrics.recorder import Recorder


class Replica:
    """Scheduler + KV cache + step-time model, driven by one SimPy process."""

    def __init__(self, env: simpy.Environment, replica_id: int, scheduler: Scheduler,
                 step_time: StepTimeModel, recorder: Recorder,
                 on_finish: Callable[[Request, Replica], None]) -> None:
        self.env = env
        self.id = replica_id
        self.scheduler = scheduler
        self.kv: KVCacheManager = scheduler.kv
        self.step_time = step_time
        self.recorder = recorder
        self.on_finish = on_finish
        self._wake: simpy.Event | None = None
        self.busy_time = 0.0
        self.num_steps = 0
        self.process = env.process(self.run())

    # ---- what a router / scraper sees ------------------------------------------------------
    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting

    @property
    def kv_usage(self) -> float:
        return self.kv.usage

    # ---- inputs ----------------------------------------------------------------------------
    def submit(self, req: Request) -> None:
        self.scheduler.add_request(req)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def abort(self, req: Request) -> bool:
        return self.scheduler.abort_request(req)

    # ---- the engine loop -------------------------------------------------------------------
    def run(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        sched = self.scheduler
        rec = self.recorder
        predict = self.step_time.predict
        while True:
            if not sched.has_work():
                self._wake = env.event()
                yield self._wake
                self._wake = None
            plan = sched.schedule()
            if plan.is_empty:
                raise RuntimeError(
                    f"replica {self.id}: requests are waiting but none can be scheduled "
                    f"(KV cache of {self.kv.num_blocks} blocks too small for the head request)")
            start = env.now
            for req, ctx in zip(plan.requests, plan.context_lens, strict=True):
                if req.scheduled_time < 0 and ctx == req.num_cached_tokens:
                    req.scheduled_time = start
            dt = predict(plan)
            yield env.timeout(dt)
            self.busy_time += dt
            self.num_steps += 1
            produced, finished = sched.update(plan)
            now = env.now
            for req in produced:
                rec.token(req, now)
            n_tok = plan.num_tokens
            n_dec = sum(1 for n in plan.num_new_tokens if n == 1)
            rec.step((self.id, start, dt, plan.num_seqs, n_tok, n_tok - n_dec, n_dec,
                      plan.num_scheduled_new, len(plan.preempted), sched.num_waiting,
                      self.kv.usage))
            for req in finished:
                req.finish_time = now
                self.on_finish(req, self)

    def is_idle(self) -> bool:
        return not self.scheduler.has_work()


def request_done(req: Request) -> bool:
    return req.status == RequestStatus.FINISHED

"""A fleet of identical replicas of one model behind a router.

What this models: the serving path after the client — gateway validation, the router's choice, the
replica's engine — and the bookkeeping a real front end keeps: requests outstanding per replica
(what ``least_outstanding`` routing reads) and the moment each request ends. It also runs the gauge
scraper: every ``sample_interval_s`` it reads each replica's ``num_requests_running``,
``num_requests_waiting`` and ``kv_cache_usage_perc``, as Prometheus would.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from simulator.cluster import gateway
from simulator.cluster.replica import Replica
from simulator.cluster.router import Router
from simulator.engine.request import Request
from simulator.metrics import names
from simulator.metrics.recorder import Recorder
from simulator.workload.generator import RequestSpec


class Fleet:
    def __init__(self, env: simpy.Environment, router: Router, recorder: Recorder,
                 max_model_len: int) -> None:
        self.env = env
        self.router = router
        self.recorder = recorder
        self.max_model_len = max_model_len
        self.replicas: list[Replica] = []
        self.outstanding: list[int] = []
        self._done: dict[int, simpy.Event] = {}
        self._next_id = 0
        self.in_system = 0
        self.ended = 0
        self._target: int | None = None
        self._stop: simpy.Event | None = None

    def stop_when_ended(self, target: int | None, stop: simpy.Event) -> None:
        """Trigger ``stop`` once ``target`` requests have ended (None: never)."""
        self._target, self._stop = target, stop

    def _ended(self) -> None:
        self.ended += 1
        if self._target is not None and self.ended >= self._target and self._stop is not None \
                and not self._stop.triggered:
            self._stop.succeed()

    def add_replica(self, make: Callable[[int], Replica]) -> Replica:
        rep = make(len(self.replicas))
        self.replicas.append(rep)
        self.outstanding.append(0)
        return rep

    # ---- request path --------------------------------------------------------------------------
    def submit(self, spec: RequestSpec) -> simpy.Event:
        env = self.env
        req = Request(self._next_id, spec.prompt_len, spec.output_len, env.now, spec.priority,
                      spec.prefix_hashes)
        self._next_id += 1
        done = env.event()
        rec = self.recorder
        rec.arrived(req)
        reason = gateway.validate(req, self.max_model_len)
        if reason is not None:
            rec.end(req, names.REJECTED, reason)
            self._ended()
            done.succeed(req)
            return done
        i = self.router.choose(self.outstanding)
        self.outstanding[i] += 1
        self.in_system += 1
        rec.routed(req, i)
        self._done[req.request_id] = done
        self.replicas[i].submit(req)
        return done

    def on_finish(self, req: Request, replica: Replica) -> None:
        self.outstanding[replica.id] -= 1
        self.in_system -= 1
        self.recorder.end(req, names.COMPLETED)
        self._ended()
        self._done.pop(req.request_id).succeed(req)

    # ---- gauges ----------------------------------------------------------------------------------
    def scraper(self, interval: float) -> Generator[simpy.Event, Any, None]:
        env = self.env
        sample = self.recorder.sample
        while True:
            now = env.now
            for rep in self.replicas:
                sample((now, rep.id, rep.num_running, rep.num_waiting, rep.kv_usage,
                        self.outstanding[rep.id]))
            yield env.timeout(interval)

"""The scheduler's WAITING queue, in vLLM v1's two orders (``--scheduling-policy``).

What this models: ``vllm/v1/core/sched/request_queue.py`` — FCFS (a deque; preempted requests go
back to the front) and PRIORITY (a heap on (priority, arrival time)). Kept apart from
:mod:`simulator.engine.scheduler` so that module can be compiled (:mod:`simulator._native`): a
compiled class cannot subclass ``deque``.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from simulator.engine.request import Request


class RequestQueue(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Request: ...
    def __iter__(self) -> Iterator[Request]: ...
    def add(self, request: Request) -> None: ...
    def prepend(self, request: Request) -> None: ...
    def peek(self) -> Request: ...
    def pop(self) -> Request: ...
    def remove(self, request: Request) -> None: ...


class FcfsQueue(deque[Request]):
    """First come, first served; preempted requests go back to the front. A deque itself, so the
    engine loop's many ``len(waiting)`` are C calls."""

    add = deque.append
    prepend = deque.appendleft
    pop = deque.popleft

    def peek(self) -> Request:
        return self[0]

    # NOTE: ``queue[0]`` is the head in both orders; on this deque it is a C call, where
    # ``peek()`` is a Python method call from the compiled scheduler.


class PriorityQueue:
    """Ordered by (priority, arrival_time): lower values first, as vLLM's priority policy."""

    def __init__(self) -> None:
        self._h: list[tuple[int, float, int, Request]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._h)

    def __iter__(self) -> Iterator[Request]:
        return (e[3] for e in sorted(self._h))

    def __getitem__(self, index: int) -> Request:
        """The request ``index``-th in order (0: the head, as :meth:`peek`)."""
        return self._h[0][3] if index == 0 else sorted(self._h)[index][3]

    def add(self, request: Request) -> None:
        heapq.heappush(self._h, (request.priority, request.arrival_time, next(self._seq), request))

    prepend = add

    def peek(self) -> Request:
        return self._h[0][3]

    def pop(self) -> Request:
        return heapq.heappop(self._h)[3]

    def remove(self, request: Request) -> None:
        self._h = [e for e in self._h if e[3] is not request]
        heapq.heapify(self._h)


QUEUES: dict[str, type[FcfsQueue] | type[PriorityQueue]] = {
    "fcfs": FcfsQueue,
    "priority": PriorityQueue,
}

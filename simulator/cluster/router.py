"""The fleet's front-end router: which replica gets a request.

What this models: the load-balancing decision of a serving gateway (an Envoy/K8s service doing
round robin, or an LLM-aware router counting outstanding requests per backend). Policies are small
objects behind one ``Protocol`` and chosen through one explicit mapping, ``ROUTERS``. A router sees
only what a real one sees: the requests *it* has sent and not yet seen answered.

Leaves out (for the fleet issue): KV-aware and prefix-affinity routing, stale metrics, model pools.
"""

from __future__ import annotations

from typing import Protocol


class Router(Protocol):
    def choose(self, outstanding: list[int]) -> int:
        """Index of the replica to send the next request to, given per-replica outstanding counts."""
        ...


class RoundRobin:
    """Cycle through the replicas in order."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, outstanding: list[int]) -> int:
        i = self._next % len(outstanding)
        self._next = i + 1
        return i


class LeastOutstanding:
    """Fewest requests in flight; ties go to the lowest index."""

    def choose(self, outstanding: list[int]) -> int:
        return min(range(len(outstanding)), key=outstanding.__getitem__)


ROUTERS: dict[str, type[RoundRobin] | type[LeastOutstanding]] = {
    "round_robin": RoundRobin,
    "least_outstanding": LeastOutstanding,
}

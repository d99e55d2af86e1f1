"""The end of a fast-path engine step as a SimPy event at an absolute time.

What this models: nothing new — a :class:`simpy.Timeout` whose time is given as the step's end
rather than as a delay from now (see :mod:`simulator.cluster.replica`, "Running ahead"). Kept apart
from the replica so that module can be compiled (:mod:`simulator._native`): a compiled class cannot
subclass SimPy's.
"""

from __future__ import annotations

import heapq

import simpy
from simpy.events import NORMAL


class StepEnd(simpy.Timeout):
    """A timeout that fires at the absolute time ``at``: the end of a fast-path step, which may
    start after ``env.now`` when the replica ran ahead (``env.now + (at − env.now)`` need not be
    ``at`` in floating point, and the clock must read exactly what step-by-step timeouts would
    have made it)."""

    def __init__(self, env: simpy.Environment, at: float) -> None:
        # NOTE: SimPy's Timeout.__init__ inlined, scheduled at ``at`` instead of now + delay.
        self.env = env
        self.callbacks = []
        self._value = None
        self._delay = at - env._now
        self._ok = True
        heapq.heappush(env._queue, (at, NORMAL, next(env._eid), self))

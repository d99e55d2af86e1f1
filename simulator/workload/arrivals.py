"""When open-loop requests arrive.

What this models: the arrival processes of load generators and of real traffic that does not wait
for responses — Poisson (exponential gaps, as vLLM's benchmark with ``--request-rate``) and an
offline batch (everything at t = 0). Closed-loop clients, whose next request depends on the previous
response, are SimPy processes in :mod:`simulator.cluster.client`. Times are drawn in chunks from the
workload's own generator, so a stream is identical whatever consumes it.

Leaves out (for the workload issue): bursty renewal processes, diurnal profiles, trace replay.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from simulator.config import Arrivals, OfflineArrivals, PoissonArrivals

CHUNK = 4096


def arrival_times(spec: Arrivals, rng: np.random.Generator, limit: int | None,
                  until: float | None) -> Iterator[float]:
    """Yield absolute arrival times, at most ``limit`` of them and none after ``until``."""
    count = 0
    if isinstance(spec, OfflineArrivals):
        while limit is None or count < limit:
            yield 0.0
            count += 1
        return
    if not isinstance(spec, PoissonArrivals):
        raise ValueError(f"{spec.kind} arrivals are not an open-loop stream")
    t = 0.0
    while True:
        gaps = rng.exponential(1.0 / spec.rate, CHUNK)
        for g in gaps:
            t += float(g)
            if until is not None and t > until:
                return
            if limit is not None and count >= limit:
                return
            yield t
            count += 1

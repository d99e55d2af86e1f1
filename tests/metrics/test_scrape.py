"""The gauge scrape: one row per replica per interval; dead replicas as zeros, retired ones not."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.metrics.scrape import replica_gauges
from simulator.simenv import Environment


@dataclass
class FakeReplica:
    id: int
    alive: bool = True
    num_running: int = 3
    num_waiting: int = 2
    kv_usage: float = 0.5


@dataclass
class FakeState:
    outstanding: int = 7


def test_rows_per_interval_dead_as_zeros_retired_left_out_replicas_read_afresh() -> None:
    env = Environment()
    rows: list[tuple] = []
    reps = [FakeReplica(0), FakeReplica(1, alive=False), FakeReplica(2, alive=False)]
    states = [FakeState(), FakeState(1), FakeState(0)]
    retired = {2}
    env.process(replica_gauges(env, rows.append, reps, states, retired, 10.0))
    env.run(until=5)
    assert rows == [(0, 0, 3, 2, 0.5, 7), (0, 1, 0, 0, 0.0, 1)]
    reps.append(FakeReplica(3))  # added during the run (autoscaler)
    states.append(FakeState(0))
    env.run(until=15)
    assert rows[2:] == [(10, 0, 3, 2, 0.5, 7), (10, 1, 0, 0, 0.0, 1), (10, 3, 3, 2, 0.5, 0)]

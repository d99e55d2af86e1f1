"""Turns a workload config into *traffic*: what clients will send, when, and with which content.

What this models: the content side of traffic — how long each prompt and output is, which prompt
blocks are shared (a common system prompt), who sends it — and the shape of the sending: open-loop
streams (arrival times known up front), closed-loop groups (next request after the previous
response) and sessions. The SimPy processes that *play* this traffic live in
:mod:`simulator.cluster.client`; this module only describes it.

One seeded generator per aspect (arrivals, lengths …), spawned from the scenario's seed, so changing
one aspect never shifts another's random stream.

The contract between workload and clients is :class:`Traffic`: a list of open-loop streams, a list
of closed-loop groups and a list of session sources. Each yields :class:`RequestSpec` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from simulator.config import ClosedLoopArrivals, WorkloadConfig
from simulator.workload.arrivals import arrival_times
from simulator.workload.lengths import LengthPairs

CHUNK = 4096
SYSTEM_PROMPT_HASH_BASE = 1 << 40


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What a client will send: prompt tokens, tokens it will generate, shared prefix blocks, and
    who sends it (tenant and API key, read by the gateway)."""

    prompt_len: int
    output_len: int
    prefix_hashes: tuple[int, ...] = ()
    priority: int = 0
    tenant: str = "default"
    api_key: str | None = None
    session_id: int | None = None
    turn: int = 0


@dataclass
class OpenLoopStream:
    """Requests sent at given times whatever the responses do."""

    times: Iterator[float]
    specs: Iterator[RequestSpec]


@dataclass
class ClosedLoopGroup:
    """``concurrency`` clients, each sending its next request once the previous one has ended."""

    concurrency: int
    specs: Iterator[RequestSpec]
    think_time_s: float = 0.0
    limit: int | None = None
    """Requests this group sends in total (None = until ``until``)."""


@dataclass
class Session:
    """A multi-turn conversation: turn k's prompt carries the context of turns < k as a prefix.

    ``next_turn(k, ...)`` builds the RequestSpec of turn ``k``; ``think_time_s[k]`` is the pause
    before turn ``k`` (after the response to turn k−1).
    """

    start_s: float
    num_turns: int
    think_time_s: list[float]
    make_turn: Callable[[int], RequestSpec]


@dataclass
class Traffic:
    """Everything the clients will send in one run."""

    open_loop: list[OpenLoopStream] = field(default_factory=list)
    closed_loop: list[ClosedLoopGroup] = field(default_factory=list)
    sessions: list[Iterator[Session]] = field(default_factory=list)
    until: float | None = None
    """Stop sending after this simulated time (None: when the streams end)."""
    expected_requests: int | None = None
    """Requests that will be sent in total, if known (the run stops when all have ended)."""


class RequestStream:
    """Endless iterator of RequestSpec with lengths from the config, drawn in chunks."""

    def __init__(self, cfg: WorkloadConfig, rng: np.random.Generator, block_size: int,
                 base_dir: str | None = None) -> None:
        self.cfg = cfg
        self.rng = rng
        self.pairs = LengthPairs(cfg.input_len, cfg.output_len, base_dir)
        n_shared = cfg.system_prompt_tokens // block_size
        self.prefix = tuple(SYSTEM_PROMPT_HASH_BASE + i for i in range(n_shared))

    def __iter__(self) -> Iterator[RequestSpec]:
        sys_tokens = self.cfg.system_prompt_tokens
        prefix = self.prefix
        while True:
            inp, out = self.pairs.sample(self.rng, CHUNK)
            for i, o in zip(inp.tolist(), out.tolist(), strict=True):
                yield RequestSpec(sys_tokens + i, o, prefix)


def build_traffic(cfg: WorkloadConfig, seed: np.random.SeedSequence, block_size: int,
                  base_dir: str | None = None) -> Traffic:
    """The traffic a workload config describes."""
    s_arrivals, s_lengths = seed.spawn(2)
    rng_arrivals = np.random.default_rng(s_arrivals)
    specs = iter(RequestStream(cfg, np.random.default_rng(s_lengths), block_size, base_dir))
    traffic = Traffic(until=cfg.duration_s, expected_requests=cfg.num_requests)
    if isinstance(cfg.arrival, ClosedLoopArrivals):
        traffic.closed_loop.append(ClosedLoopGroup(cfg.arrival.concurrency, specs,
                                                   cfg.arrival.think_time_s, cfg.num_requests))
    else:
        times = arrival_times(cfg.arrival, rng_arrivals, cfg.num_requests, cfg.duration_s)
        traffic.open_loop.append(OpenLoopStream(times, specs))
    return traffic

"""Turns a workload config into the requests a client sends: lengths, shared prefixes, arrivals.

What this models: the content side of traffic — how long each prompt and output is and which prompt
blocks are shared (a common system prompt). One seeded generator per aspect (arrivals, lengths),
spawned from the scenario's seed, so changing one aspect never shifts another's random stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from simulator.config import WorkloadConfig
from simulator.workload.lengths import LengthPairs

CHUNK = 4096
SYSTEM_PROMPT_HASH_BASE = 1 << 40


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What a client will send: prompt tokens, tokens it will generate, shared prefix blocks."""

    prompt_len: int
    output_len: int
    prefix_hashes: tuple[int, ...] = ()
    priority: int = 0


class RequestStream:
    """Endless (or limited) iterator of RequestSpec, drawn in chunks."""

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

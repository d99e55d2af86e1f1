"""vLLM-style test helpers: build a scheduler and requests, drive steps synchronously."""

from __future__ import annotations

from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.engine.scheduler import Scheduler, SchedulerConfig, StepPlan


def make_scheduler(num_blocks: int = 1000, block_size: int = 16, *, max_num_seqs: int = 16,
                   max_num_batched_tokens: int = 8192, max_model_len: int = 4096,
                   enable_chunked_prefill: bool = True, long_prefill_token_threshold: int = 0,
                   policy: str = "fcfs", enable_caching: bool = True, engine: str = "v1",
                   num_scheduler_steps: int = 1) -> Scheduler:
    kv = KVCacheManager(num_blocks, block_size, enable_caching, max_model_len)
    cfg = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                          max_model_len=max_model_len, enable_chunked_prefill=enable_chunked_prefill,
                          long_prefill_token_threshold=long_prefill_token_threshold,
                          policy=policy,  # type: ignore[arg-type]
                          engine=engine,  # type: ignore[arg-type]
                          num_scheduler_steps=num_scheduler_steps)
    return Scheduler(cfg, kv)


_next_id = [0]


def make_requests(n: int, prompt_len: int, max_tokens: int = 8, *, start_id: int | None = None,
                  prefix: tuple[int, ...] = (), priorities: list[int] | None = None,
                  ) -> list[Request]:
    base = start_id if start_id is not None else _next_id[0]
    reqs = [Request(base + i, prompt_len, max_tokens, arrival_time=float(base + i),
                    priority=priorities[i] if priorities else 0, prefix_hashes=prefix)
            for i in range(n)]
    _next_id[0] = base + n
    return reqs


def step(s: Scheduler) -> tuple[StepPlan, list[Request], list[Request]]:
    """schedule → (fake model run) → update; checks KV invariants every step."""
    plan = s.schedule()
    produced, finished = s.update(plan)
    s.kv.check_invariants()
    return plan, produced, finished


def scheduled(plan: StepPlan) -> dict[int, int]:
    return {r.request_id: n for r, n in zip(plan.requests, plan.num_new_tokens, strict=True)}

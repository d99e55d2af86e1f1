"""vLLM v1's continuous-batching scheduler, mirrored in plain Python (no SimPy).

What this models (``vllm/v1/core/sched/scheduler.py``, ``Scheduler.schedule`` and
``update_from_output``), rule for rule:
- no prefill or decode phase: each request's ``num_computed_tokens`` catches up with ``num_tokens``;
- a per-step token budget ``max_num_batched_tokens`` and at most ``max_num_seqs`` running requests;
- RUNNING requests are scheduled first, in order; then WAITING ones;
- ``long_prefill_token_threshold`` caps the tokens one request gets in a step (0 = off);
- when the KV cache has no room for a running request, the scheduler preempts: FCFS takes the tail
  of RUNNING, PRIORITY takes the request with the largest (priority, arrival_time); the victim's
  blocks are freed and it goes back to the front of WAITING with nothing computed (recompute mode);
  if the victim is the request being scheduled, that request waits too;
- no WAITING request is admitted in a step that preempted;
- a prefix-cache lookup is done only for a request with nothing computed, capped at
  ``num_tokens − 1`` (so even a resumed request benefits from its own still-cached blocks);
- with chunked prefill off, a waiting request whose remaining tokens exceed the budget stops
  admission for this step (``break``); with it on, it gets what is left of the budget;
- after the step, a request whose computed tokens reached its tokens samples one output token; it
  finishes when it has ``max_tokens`` outputs or reaches ``max_model_len``, and its blocks are freed.

With ``engine="v0"`` it mirrors instead the pre-V1 engine's default scheduler
(``vllm/core/scheduler.py``, ``Scheduler._schedule_default``, vLLM ≤ 0.7 and ``VLLM_USE_V1=0``,
chunked prefill off — V0's default below 32k context): a step runs *either* new prompts, whole,
when any can be admitted (prefills first: the running decodes wait for that step), *or* every
running decode — never both; a prompt is admitted only while the free blocks stay above a
watermark of 1 % of the pool (``BlockSpaceManager.can_allocate``). With ``num_scheduler_steps``
> 1 (vLLM 0.6's multi-step scheduling, ``--num-scheduler-steps``) one scheduling pass runs that
many decode steps: new prompts wait for the end of the pass. V0 with chunked prefill on
(``_schedule_chunked_prefill``: decodes first, then prefill chunks in the same step) is the V1 rule.

Leaves out: speculative decoding, async scheduling placeholders, encoder inputs, LoRA slots,
KV connectors, structured output, V0's swap preemption mode. The mode names follow vLLM's
``--scheduling-policy`` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.queues import QUEUES, RequestQueue
from simulator.engine.request import Request, RequestStatus

SchedulingPolicy = Literal["fcfs", "priority"]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The vLLM engine arguments the scheduler obeys (same names as ``vllm serve`` flags)."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    max_model_len: int = 8192
    enable_chunked_prefill: bool = True
    long_prefill_token_threshold: int = 0
    policy: SchedulingPolicy = "fcfs"
    engine: Literal["v1", "v0"] = "v1"
    """Which vLLM engine's scheduler (see the module docstring)."""
    num_scheduler_steps: int = 1
    """Decode steps per scheduling pass (V0 multi-step scheduling)."""


@dataclass(slots=True)
class StepPlan:
    """What one engine step computes: the scheduler's output, as the step-time model needs it."""

    requests: list[Request] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    context_lens: list[int] = field(default_factory=list)
    """Tokens already in the KV cache for each scheduled request before this step."""
    preempted: list[Request] = field(default_factory=list)
    num_scheduled_new: int = 0
    """Requests admitted from WAITING this step (new or resumed)."""

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    @property
    def num_seqs(self) -> int:
        return len(self.requests)

    @property
    def is_empty(self) -> bool:
        return not self.requests


class Scheduler:
    """One replica's scheduler: WAITING and RUNNING queues over a KV-cache manager."""

    def __init__(self, config: SchedulerConfig, kv: KVCacheManager) -> None:
        self.config = config
        self.kv = kv
        self.waiting: RequestQueue = QUEUES[config.policy]()
        self.running: list[Request] = []
        self.num_preemptions = 0
        self.v0_prefill_first = config.engine == "v0" and not config.enable_chunked_prefill
        self.pass_left = 0
        """Decode steps left in the current multi-step pass (``num_scheduler_steps``)."""

    # ---- queue management --------------------------------------------------------------------
    def add_request(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.add(request)

    def abort_request(self, request: Request) -> bool:
        """Remove a request wherever it is and free its blocks (client gone). True if found."""
        if request.status == RequestStatus.FINISHED:
            return False
        if request.status == RequestStatus.RUNNING:
            self.running.remove(request)
        else:
            self.waiting.remove(request)
        self.kv.free_request(request)
        request.status = RequestStatus.FINISHED
        return True

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_work(self) -> bool:
        return bool(self.running) or bool(len(self.waiting))

    # ---- one step ------------------------------------------------------------------------------
    def _preempt(self, request: Request) -> None:
        self.kv.preempt_request(request)
        request.status = RequestStatus.PREEMPTED
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.prepend(request)

    def schedule(self) -> StepPlan:
        """Decide this step's batch and reserve its KV blocks (vLLM ``Scheduler.schedule``)."""
        cfg = self.config
        kv = self.kv
        plan = StepPlan()
        sched_reqs = plan.requests
        sched_tokens = plan.num_new_tokens
        budget = cfg.max_num_batched_tokens
        threshold = cfg.long_prefill_token_threshold
        max_len = cfg.max_model_len
        priority = cfg.policy == "priority"

        # 0. V0 (prefills first): whole new prompts, if any can be admitted, and nothing else.
        if self.v0_prefill_first and len(self.waiting) and self.pass_left <= 0:
            watermark = self.kv.num_blocks // 100
            self.admit_waiting(plan, budget, watermark)
            if plan.requests:
                return self._advance(plan)
        if self.config.num_scheduler_steps > 1:
            self.pass_left = (self.pass_left - 1 if self.pass_left > 0
                              else self.config.num_scheduler_steps - 1)

        # 1. RUNNING requests.
        i = 0
        running = self.running
        allocate = kv.allocate_slots
        while i < len(running) and budget > 0:
            req = running[i]
            done = req.num_computed_tokens
            n = req.prompt_len + req.num_output_tokens - done
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                n = budget
            if n > max_len - 1 - done:
                n = max_len - 1 - done
            if n <= 0:
                i += 1
                continue
            while True:
                if allocate(req, n) is not None:
                    break
                if priority:
                    victim = max(running, key=lambda r: (r.priority, r.arrival_time))
                    running.remove(victim)
                    if victim in sched_reqs:
                        k = sched_reqs.index(victim)
                        sched_reqs.pop(k)
                        budget += sched_tokens.pop(k)
                        i -= 1
                else:
                    victim = running.pop()
                self._preempt(victim)
                plan.preempted.append(victim)
                if victim is req:
                    break
            if req.status == RequestStatus.PREEMPTED:
                break
            sched_reqs.append(req)
            sched_tokens.append(n)
            budget -= n
            i += 1

        # 2. WAITING requests — not in a step that preempted (nor, in V0, after the decodes, nor
        # inside a multi-step pass).
        if not plan.preempted and not self.v0_prefill_first and self.pass_left <= 0:
            self.admit_waiting(plan, budget)
        return self._advance(plan)

    def _advance(self, plan: StepPlan) -> StepPlan:
        """Step 3: advance computed tokens now, as vLLM's _update_after_schedule does."""
        ctx = plan.context_lens
        for req, n in zip(plan.requests, plan.num_new_tokens, strict=True):
            ctx.append(req.num_computed_tokens)
            req.num_computed_tokens += n
        return plan

    def admit_waiting(self, plan: StepPlan, budget: int, watermark: int = 0) -> None:
        """Step 2 of :meth:`schedule`: admit WAITING requests into ``plan`` with what is left of
        the token budget (their computed tokens are not advanced yet); with ``watermark``, only
        while at least that many blocks stay free (V0's admission rule)."""
        cfg = self.config
        kv = self.kv
        running = self.running
        sched_reqs = plan.requests
        sched_tokens = plan.num_new_tokens
        threshold = cfg.long_prefill_token_threshold
        waiting = self.waiting
        while len(waiting) and budget > 0:
            if len(running) >= cfg.max_num_seqs:
                break
            req = waiting.peek()
            hit_blocks: list[int] = []
            hit_tokens = 0
            if req.num_computed_tokens == 0:
                hit_blocks, hit_tokens = kv.get_computed_blocks(req)
            n = req.num_tokens - hit_tokens
            if 0 < threshold < n:
                n = threshold
            if not cfg.enable_chunked_prefill and n > budget:
                break
            n = min(n, budget)
            if watermark and kv.num_free - (-(-(hit_tokens + n) // kv.block_size)
                                            - len(hit_blocks)) < watermark:
                break
            if kv.allocate_slots(req, n, hit_tokens, hit_blocks) is None:
                break
            waiting.pop()
            running.append(req)
            req.status = RequestStatus.RUNNING
            req.num_computed_tokens = hit_tokens
            if req.num_cached_tokens < 0:
                req.num_cached_tokens = hit_tokens
            sched_reqs.append(req)
            sched_tokens.append(n)
            plan.num_scheduled_new += 1
            budget -= n

    def update(self, plan: StepPlan) -> tuple[list[Request], list[Request]]:
        """Apply the step's result (vLLM ``update_from_output``).

        Returns (requests that produced a token this step, requests that finished).
        """
        produced: list[Request] = []
        finished: list[Request] = []
        max_len = self.config.max_model_len
        running_status = RequestStatus.RUNNING
        for req in plan.requests:
            if req.status != running_status:
                continue
            out = req.num_output_tokens
            if req.num_computed_tokens < req.prompt_len + out:
                continue  # partial prefill: the sampled token is discarded
            out += 1
            req.num_output_tokens = out
            produced.append(req)
            if out >= req.max_tokens or req.prompt_len + out >= max_len:
                finished.append(req)
        if finished:
            self.release(finished)
        return produced, finished

    def release(self, finished: list[Request]) -> None:
        """Finished requests leave RUNNING and free their blocks, in the order given."""
        if len(finished) < 4:
            # The common case: one request. Found by identity, as list.remove would find it
            # (requests compare by identity), without a rich comparison per request passed over.
            running = self.running
            for req in finished:
                for k in range(len(running)):
                    if running[k] is req:
                        del running[k]
                        break
                else:
                    raise ValueError("list.remove(x): x not in list")
        else:
            done = set(map(id, finished))
            self.running = [r for r in self.running if id(r) not in done]
        free = self.kv.free_request
        for req in finished:
            req.status = RequestStatus.FINISHED
            free(req)

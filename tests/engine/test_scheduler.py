"""The scheduler against vLLM v1's rules (tests in the style of vllm/tests/v1/core/test_scheduler.py)."""

from __future__ import annotations

from simulator.engine.request import RequestStatus
from tests.engine.helpers import make_requests, make_scheduler, scheduled, step


def test_chunked_prefill_spreads_a_long_prompt_over_steps_and_samples_only_at_the_end():
    s = make_scheduler(max_num_batched_tokens=32)
    (r,) = make_requests(1, prompt_len=100, max_tokens=3)
    s.add_request(r)
    chunks = []
    for _ in range(4):
        plan, produced, _ = step(s)
        chunks.append(scheduled(plan)[r.request_id])
        assert (r in produced) == (r.num_computed_tokens == 100)
    assert chunks == [32, 32, 32, 4]
    assert r.num_output_tokens == 1
    # Then one token per step (decode) until max_tokens.
    plan, produced, finished = step(s)
    assert scheduled(plan) == {r.request_id: 1}
    plan, produced, finished = step(s)
    assert finished == [r] and r.status == RequestStatus.FINISHED
    assert r.num_output_tokens == 3
    assert s.kv.num_free_blocks == s.kv.num_blocks


def test_token_budget_is_shared_and_exhausted_in_order():
    s = make_scheduler(max_num_batched_tokens=64)
    reqs = make_requests(3, prompt_len=40)
    for r in reqs:
        s.add_request(r)
    plan, _, _ = step(s)
    assert scheduled(plan) == {reqs[0].request_id: 40, reqs[1].request_id: 24}
    assert s.num_waiting == 1 and s.num_running == 2
    # Next step: running first (decode 1 + remaining 16 of the chunk), then the waiting one.
    plan, _, _ = step(s)
    assert scheduled(plan) == {reqs[0].request_id: 1, reqs[1].request_id: 16,
                               reqs[2].request_id: 40}


def test_without_chunked_prefill_a_prompt_larger_than_the_budget_left_stops_admission():
    s = make_scheduler(max_num_batched_tokens=64, enable_chunked_prefill=False)
    reqs = make_requests(3, prompt_len=40)
    for r in reqs:
        s.add_request(r)
    plan, _, _ = step(s)
    assert scheduled(plan) == {reqs[0].request_id: 40}
    assert s.num_waiting == 2


def test_max_num_seqs_caps_running_requests():
    s = make_scheduler(max_num_seqs=2)
    reqs = make_requests(3, prompt_len=10)
    for r in reqs:
        s.add_request(r)
    plan, _, _ = step(s)
    assert len(plan.requests) == 2 and s.num_running == 2 and s.num_waiting == 1


def test_long_prefill_token_threshold_caps_tokens_per_request():
    s = make_scheduler(max_num_batched_tokens=1000, long_prefill_token_threshold=50)
    a, b = make_requests(2, prompt_len=120)
    s.add_request(a)
    s.add_request(b)
    plan, _, _ = step(s)
    assert scheduled(plan) == {a.request_id: 50, b.request_id: 50}


def _fill_until_preemption(s, reqs):
    for r in reqs:
        s.add_request(r)
    for _ in range(200):
        plan, _, _ = step(s)
        if plan.preempted:
            return plan
    raise AssertionError("no preemption happened")


def test_preemption_takes_the_tail_of_running_resets_it_and_blocks_admission():
    # 16 blocks of 4 tokens = 64 slots; each request grows to 48 tokens (12 blocks): one fits, two don't.
    s = make_scheduler(num_blocks=16, block_size=4, max_model_len=64, enable_caching=False)
    a, b = make_requests(2, prompt_len=8, max_tokens=40)
    late = make_requests(1, prompt_len=4, max_tokens=2)[0]
    plan = _fill_until_preemption(s, [a, b])
    assert plan.preempted == [b]  # FCFS: the most recently admitted (tail) goes
    assert b.status == RequestStatus.PREEMPTED and b.num_computed_tokens == 0
    assert b.num_preemptions == 1 and s.num_preemptions == 1
    assert s.kv.blocks_of(b) == []
    s.add_request(late)
    assert next(iter(s.waiting)) is b  # preempted request went back to the *front*
    # The step that preempted admitted nobody, although budget and seats were free.
    assert plan.num_scheduled_new == 0 and scheduled(plan) == {a.request_id: 1}
    # Once `a` finishes, `b` is resumed before the later arrival and recomputes prompt + outputs.
    for _ in range(100):
        if a.status == RequestStatus.FINISHED:
            break
        step(s)
    assert a.status == RequestStatus.FINISHED
    outputs_before = b.num_output_tokens
    plan, _, _ = step(s)
    assert plan.requests[0] is b
    assert scheduled(plan)[b.request_id] == 8 + outputs_before


def test_resumed_request_reuses_its_own_cached_blocks_when_prefix_caching_is_on():
    s = make_scheduler(num_blocks=16, block_size=4, max_model_len=64, enable_caching=True)
    a, b = make_requests(2, prompt_len=8, max_tokens=40)
    _fill_until_preemption(s, [a, b])
    # Right after preemption b's blocks are free but still hashed; a resumption before they are
    # reused hits them. Abort `a` to free room immediately.
    s.abort_request(a)
    tokens = b.num_tokens
    plan, _, _ = step(s)
    n = scheduled(plan)[b.request_id]
    # b held 8 full blocks (32 tokens). They were freed tail-first, so the one block `a` took in
    # the preempting step was b's *last* block: 7 blocks (28 tokens) are still hits.
    assert tokens == 33 and tokens - n == 28


def test_prefix_cache_hit_is_capped_at_num_tokens_minus_one():
    s = make_scheduler(block_size=16)
    prefix = (101, 102)  # two full shared blocks = the whole 32-token prompt
    (a,) = make_requests(1, prompt_len=32, max_tokens=1, prefix=prefix)
    s.add_request(a)
    step(s)
    (b,) = make_requests(1, prompt_len=32, max_tokens=1, prefix=prefix)
    s.add_request(b)
    plan, _, _ = step(s)
    # 31 tokens could be reused at most → one full block (16); the last block is recomputed.
    assert b.num_cached_tokens == 16 and scheduled(plan)[b.request_id] == 16


def test_shared_prefix_blocks_are_hit_and_shared():
    s = make_scheduler(block_size=16)
    prefix = (7, 8, 9)
    (a,) = make_requests(1, prompt_len=64, max_tokens=5, prefix=prefix)
    s.add_request(a)
    step(s)
    (b,) = make_requests(1, prompt_len=64, max_tokens=5, prefix=prefix)
    s.add_request(b)
    plan, _, _ = step(s)
    assert b.num_cached_tokens == 48 and scheduled(plan)[b.request_id] == 16
    shared = set(s.kv.blocks_of(a)[:3])
    assert shared == set(s.kv.blocks_of(b)[:3])
    assert all(s.kv.ref_cnt[blk] == 2 for blk in shared)


def test_priority_policy_orders_waiting_and_preempts_lowest_priority():
    s = make_scheduler(num_blocks=16, block_size=4, max_model_len=64, max_num_seqs=2,
                       policy="priority", enable_caching=False)
    lo, hi = make_requests(2, prompt_len=8, max_tokens=40, priorities=[5, 0])
    s.add_request(lo)  # arrives first but has the larger (worse) priority value
    s.add_request(hi)
    plan, _, _ = step(s)
    assert [r.request_id for r in plan.requests] == [hi.request_id, lo.request_id]
    for _ in range(200):
        plan, _, _ = step(s)
        if plan.preempted:
            break
    assert plan.preempted == [lo]


def test_generation_stops_at_max_model_len():
    s = make_scheduler(max_model_len=20)
    (r,) = make_requests(1, prompt_len=15, max_tokens=100)
    s.add_request(r)
    for _ in range(10):
        _, _, finished = step(s)
        if finished:
            break
    assert r.status == RequestStatus.FINISHED and r.num_tokens == 20


def test_abort_frees_blocks_everywhere():
    s = make_scheduler()
    a, b = make_requests(2, prompt_len=40)
    s.add_request(a)
    s.add_request(b)
    step(s)
    assert s.abort_request(a)
    assert s.num_running == 1 and s.kv.blocks_of(a) == []
    s.kv.check_invariants()

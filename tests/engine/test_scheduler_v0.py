"""The pre-V1 scheduler rules (``engine="v0"``: vllm/core/scheduler.py ``_schedule_default``) and
V0 multi-step scheduling (``num_scheduler_steps``), driven step by step like vLLM's own tests."""

from __future__ import annotations

import pytest

from simulator.config import EngineConfig
from tests.engine.helpers import make_requests, make_scheduler, scheduled, step


def _v0(**kw):
    return make_scheduler(engine="v0", enable_chunked_prefill=False, **kw)


def test_v0_runs_new_prompts_alone_before_the_running_decodes():
    s = _v0(max_num_batched_tokens=4096)
    a = make_requests(2, prompt_len=100, max_tokens=20)
    for r in a:
        s.add_request(r)
    step(s)  # both prompts, whole
    b = make_requests(1, prompt_len=300, max_tokens=5)
    s.add_request(b[0])
    plan, produced, _ = step(s)
    # The waiting prompt is admitted alone: the two running decodes wait for this step.
    assert scheduled(plan) == {b[0].request_id: 300}
    assert produced == [b[0]]
    plan, _, _ = step(s)
    assert scheduled(plan) == {a[0].request_id: 1, a[1].request_id: 1, b[0].request_id: 1}


def test_v1_mixes_the_same_prompt_into_the_decode_step():
    s = make_scheduler(max_num_batched_tokens=4096)
    a = make_requests(2, prompt_len=100, max_tokens=20)
    for r in a:
        s.add_request(r)
    step(s)
    b = make_requests(1, prompt_len=300, max_tokens=5)
    s.add_request(b[0])
    plan, _, _ = step(s)
    assert scheduled(plan) == {a[0].request_id: 1, a[1].request_id: 1, b[0].request_id: 300}


def test_v0_admission_keeps_a_one_percent_watermark_of_free_blocks():
    # 700 blocks of 16 tokens: the watermark is 7 blocks; each 100-token prompt takes 7 blocks.
    s = _v0(num_blocks=700, max_num_seqs=128, max_num_batched_tokens=16384)
    for r in make_requests(100, prompt_len=100, max_tokens=2):
        s.add_request(r)
    plan, _, _ = step(s)
    # A prompt is admitted only while 7 blocks stay free after it: 99 prompts, 7 blocks left.
    assert len(plan.requests) == 99
    assert s.kv.num_free_blocks == 7
    # The V1 rule has no watermark: all 100 fit, to the last block.
    s1 = make_scheduler(num_blocks=700, max_num_seqs=128, max_num_batched_tokens=16384)
    for r in make_requests(100, prompt_len=100, max_tokens=2):
        s1.add_request(r)
    plan1, _, _ = step(s1)
    assert len(plan1.requests) == 100 and s1.kv.num_free_blocks == 0


def test_multi_step_admits_new_prompts_only_at_the_end_of_a_pass():
    s = _v0(num_scheduler_steps=4, max_num_batched_tokens=4096)
    (a,) = make_requests(1, prompt_len=50, max_tokens=30)
    s.add_request(a)
    step(s)  # the prompt
    step(s)  # first decode step: a pass of 4 decode steps starts
    (b,) = make_requests(1, prompt_len=50, max_tokens=5)
    s.add_request(b)
    waits = 0
    while b.num_computed_tokens == 0:
        plan, _, _ = step(s)
        assert b.request_id not in scheduled(plan) or waits == 3
        waits += 1
    # It waited for the 3 remaining decode steps of the pass, then ran alone (prefills first).
    assert waits == 4


def test_multi_step_needs_the_v0_engine():
    with pytest.raises(ValueError, match="multi-step scheduling exists only"):
        EngineConfig(num_scheduler_steps=8)
    assert EngineConfig(scheduler="v0", num_scheduler_steps=8).num_scheduler_steps == 8

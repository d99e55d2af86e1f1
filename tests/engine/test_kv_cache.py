"""Paged KV cache: capacity arithmetic, ref counts, prefix hits, LRU eviction, invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.engine.kv_cache import KVCacheManager
from simulator.engine.request import Request
from simulator.profiles import load_gpu, load_model, memory_budget

GiB = 2**30


def test_capacity_llama31_8b_bf16_on_h100():
    b = memory_budget(load_model("Llama-3.1-8B"), load_gpu("H100-SXM"), tp=1, weight_dtype="bf16",
                      kv_dtype="bf16", gpu_memory_utilization=0.9, block_size=16,
                      max_num_batched_tokens=8192, max_num_seqs=256, reserve_gib=1.0)
    # usable = 0.9 × 79.19 GiB
    assert b.usable_gib == pytest.approx(71.271)
    # weights = 8.03e9 params × 2 B = 16.06e9 B = 14.957 GiB (embeddings are bf16 anyway)
    assert b.weights_gib == pytest.approx(16.06e9 / GiB)
    # activations: 8192 tokens × 2 B × (4·4096 + (32+2·8)·128 + 2·14336) = 838,860,800 B
    #              + fp32 logits 4 B × 256 × 128256 = 131,334,144 B
    assert b.activation_gib == pytest.approx((838_860_800 + 131_334_144) / GiB)
    # KV per token: 2 × 32 layers × 8 kv heads × 128 × 2 B = 131072 B; a block of 16 = 2 MiB
    assert b.kv_bytes_per_token == 131072
    kv_gib = 71.271 - 16.06e9 / GiB - (838_860_800 + 131_334_144) / GiB - 1.0
    assert b.kv_cache_gib == pytest.approx(kv_gib)  # ≈ 54.41 GiB, as vLLM logs on an H100
    assert b.num_blocks == int(kv_gib * GiB // (2 * 2**20)) == 27858


def test_capacity_llama31_70b_fp8_tp2_on_h200_with_fp8_kv():
    b = memory_budget(load_model("Llama-3.1-70B"), load_gpu("H200-SXM"), tp=2, weight_dtype="fp8",
                      kv_dtype="fp8", gpu_memory_utilization=0.9, block_size=16,
                      max_num_batched_tokens=8192, max_num_seqs=256, reserve_gib=1.0)
    # weights: embeddings 2 × 128256 × 8192 = 2,101,346,304 params stay bf16 (2 B);
    # the other 70.55e9 − 2,101,346,304 params are fp8 (1 B); half of it per rank.
    embed = 2 * 128256 * 8192
    per_rank = ((70.55e9 - embed) * 1 + embed * 2) / 2
    assert b.weights_gib == pytest.approx(per_rank / GiB)  # ≈ 33.83 GiB
    # KV per token per rank: 2 × 80 layers × (8/2) kv heads × 128 × 1 B = 81920 B
    assert b.kv_bytes_per_token == 81920
    kv_gib = 0.9 * 139.8 - per_rank / GiB - b.activation_gib - 1.0
    assert b.num_blocks == int(kv_gib * GiB // (81920 * 16)) == 73656


def _req(rid: int, n: int, prefix: tuple[int, ...] = ()) -> Request:
    return Request(rid, n, 4, prefix_hashes=prefix)


def test_ref_counts_follow_sharing_and_freeing():
    kv = KVCacheManager(10, block_size=4)
    a = _req(1, 12, prefix=(1, 2))
    assert kv.allocate_slots(a, 12) is not None
    b = _req(2, 12, prefix=(1, 2))
    hit, tokens = kv.get_computed_blocks(b)
    assert tokens == 8 and hit == kv.blocks_of(a)[:2]
    kv.allocate_slots(b, 4, tokens, hit)
    assert [kv.ref_cnt[x] for x in hit] == [2, 2]
    assert kv.num_free_blocks == 10 - 3 - 1
    kv.free_request(a)
    assert [kv.ref_cnt[x] for x in hit] == [1, 1]
    kv.free_request(b)
    assert kv.num_free_blocks == 10 and kv.usage == 0.0
    kv.check_invariants()


def test_allocation_fails_cleanly_when_full():
    kv = KVCacheManager(3, block_size=4)
    a = _req(1, 12)
    assert kv.allocate_slots(a, 12) is not None
    b = _req(2, 4)
    assert kv.allocate_slots(b, 4) is None
    assert kv.blocks_of(b) == [] and kv.num_free_blocks == 0
    kv.check_invariants()


def test_freed_cached_blocks_are_evicted_lru_and_only_when_reused():
    kv = KVCacheManager(4, block_size=4)
    a = _req(1, 8, prefix=(11, 12))
    kv.allocate_slots(a, 8)
    kv.free_request(a)  # blocks stay cached, tail block first in the free queue
    assert len(kv.cached) == 2 and kv.usage == 0.0
    a_blocks_tail_first = list(kv.free)[-2:]
    # A newcomer needing 2 blocks takes the two never-used blocks first (head of the queue).
    b = _req(2, 8)
    kv.allocate_slots(b, 8)
    assert len(kv.cached) == 4  # nothing evicted yet; b's own blocks are now cached too
    # The next allocation must reuse a freed cached block: a's *tail* block (freed first) goes.
    c = _req(3, 4)
    kv.allocate_slots(c, 4)
    assert kv.blocks_of(c) == [a_blocks_tail_first[0]]
    assert 12 not in kv.cached and 11 in kv.cached
    _, tokens = kv.get_computed_blocks(_req(4, 9, prefix=(11, 12)))
    assert tokens == 4  # only the head block of a's prefix survived
    kv.check_invariants()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 40), st.integers(0, 3)),
                min_size=1, max_size=60))
def test_pool_never_goes_negative_or_over_capacity(ops):
    kv = KVCacheManager(12, block_size=4)
    live: dict[int, Request] = {}
    for i, (op, n, share) in enumerate(ops):
        if op < 2 or not live:
            prefix = tuple(range(100, 100 + share))
            r = _req(i, n, prefix)
            hit, tokens = kv.get_computed_blocks(r)
            if kv.allocate_slots(r, n - tokens, tokens, hit) is not None:
                r.num_computed_tokens = n
                live[i] = r
        else:
            rid = sorted(live)[n % len(live)]
            kv.free_request(live.pop(rid))
        kv.check_invariants()
        assert 0 <= kv.num_free_blocks <= kv.num_blocks
        assert 0.0 <= kv.usage <= 1.0
    for r in list(live.values()):
        kv.free_request(r)
    assert kv.num_free_blocks == kv.num_blocks


def test_full_blocks_carry_the_requests_block_hashes():
    # allocate_slots hashes full blocks with Request.block_hash inlined: the same hashes, shared
    # prefix blocks first, then the request's own.
    kv = KVCacheManager(num_blocks=64, block_size=16)
    req = Request(request_id=5, prompt_len=100, max_tokens=10, prefix_hashes=(11, 22, 33))
    assert kv.allocate_slots(req, 100) is not None
    blocks = kv.blocks_of(req)
    assert [kv.block_hash[b] for b in blocks[:6]] == [req.block_hash(i) for i in range(6)]
    assert kv.block_hash[blocks[6]] is None  # 100 tokens: 6 full blocks and a partial one
    assert [kv.block_hash[b] for b in blocks[:3]] == [11, 22, 33]

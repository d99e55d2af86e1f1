"""Reference model for the KV-cache tests: the block-by-block KV cache servesim used until
session 6 (every block an id, every full block hashed as it fills). ``simulator.engine.kv_cache``
now keeps blocks with no hash anonymous and hashes a request's own blocks only when it is
preempted; ``tests/engine/test_kv_cache.py`` drives both with the same operations and requires the
same observable behaviour (allocations, hits, free blocks).

It keeps the old module's behaviour line for line: a pool of numbered blocks, reference counts,
chained hashes of full blocks, an LRU free queue of blocks that keep their hash, tail-first
freeing.
"""

from __future__ import annotations

from collections import OrderedDict

from simulator.engine.request import Request


class ReferenceKVCache:
    """Block pool + per-request block tables + prefix cache."""

    def __init__(self, num_blocks: int, block_size: int = 16, enable_caching: bool = True,
                 max_model_len: int | None = None) -> None:
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.max_model_len = max_model_len
        self.ref_cnt = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        # Free queue in eviction order: head = least recently freed. Values unused.
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached: dict[int, int] = {}  # block hash -> block id
        self.req_blocks: dict[int, list[int]] = {}
        self.num_cached_blocks: dict[int, int] = {}  # request id -> full blocks hashed so far
        # Prefix-cache statistics (vLLM's prefix_cache_queries / hits, in tokens).
        self.queries = 0
        self.hits = 0

    # ---- queries ---------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        """vLLM's ``kv_cache_usage_perc`` as a fraction."""
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_of(self, request: Request) -> list[int]:
        return self.req_blocks.get(request.request_id, [])

    def get_computed_blocks(self, request: Request) -> tuple[list[int], int]:
        """Longest cached run of the request's leading full blocks, as (blocks, tokens).

        The hit is capped at ``num_tokens − 1`` tokens: the last token must be computed to produce
        logits (vLLM's ``max_cache_hit_length``).
        """
        if not self.enable_caching:
            return [], 0
        max_hit_blocks = (request.num_tokens - 1) // self.block_size
        hit: list[int] = []
        for i in range(max_hit_blocks):
            blk = self.cached.get(request.block_hash(i))
            if blk is None:
                break
            hit.append(blk)
        self.queries += request.num_tokens
        self.hits += len(hit) * self.block_size
        return hit, len(hit) * self.block_size

    # ---- allocation --------------------------------------------------------------------------
    def allocate_slots(self, request: Request, num_new_tokens: int,
                       num_new_computed_tokens: int = 0,
                       new_computed_blocks: list[int] | None = None) -> list[int] | None:
        """Reserve blocks for ``num_new_tokens`` more tokens of ``request``; None if they don't fit.

        ``new_computed_blocks`` are prefix-cache hits found by :meth:`get_computed_blocks`; they are
        touched (ref count +1, removed from the free queue) only if the allocation succeeds.
        """
        rid = request.request_id
        blocks = self.req_blocks.get(rid)
        num_computed = request.num_computed_tokens + num_new_computed_tokens
        need_tokens = num_computed + num_new_tokens
        if self.max_model_len is not None and need_tokens > self.max_model_len:
            need_tokens = self.max_model_len
        bs = self.block_size
        if blocks is not None and not new_computed_blocks and need_tokens <= len(blocks) * bs:
            # NOTE: the common decode step — the tokens fit the blocks held: nothing to allocate,
            # only blocks that fill up to hash (the general path below does the same).
            if self.enable_caching:
                n = request.prompt_len + request.num_output_tokens
                if (need_tokens if need_tokens < n else n) // bs > self.num_cached_blocks[rid]:
                    self._cache_full_blocks(request, min(need_tokens, n))
            return []
        computed_blocks = new_computed_blocks or []
        have = len(blocks) if blocks is not None else 0
        num_to_allocate = -(-need_tokens // bs) - have - len(computed_blocks)
        # Cached-but-free hit blocks leave the free queue when touched: they count against it.
        evictable_hits = sum(1 for b in computed_blocks if self.ref_cnt[b] == 0)
        if num_to_allocate > len(self.free) - evictable_hits:
            return None

        if blocks is None:
            blocks = self.req_blocks[rid] = []
            self.num_cached_blocks[rid] = 0
        for b in computed_blocks:
            if self.ref_cnt[b] == 0:
                del self.free[b]
            self.ref_cnt[b] += 1
            blocks.append(b)
        new: list[int] = []
        if num_to_allocate > 0:
            self._take_blocks(num_to_allocate, new)
        blocks.extend(new)
        if self.enable_caching:
            self._cache_full_blocks(request, min(need_tokens, request.num_tokens))
        return new

    def append_block(self, request: Request) -> None:
        """One more block for a running request whose next token crosses a block boundary — what
        :meth:`allocate_slots` does for a one-token step then; the caller has checked that a block
        is free (the decode fast path of :class:`simulator.cluster.replica.Replica`)."""
        self._take_blocks(1, self.req_blocks[request.request_id])

    def _take_blocks(self, n: int, into: list[int]) -> None:
        """Append the ``n`` least recently freed blocks to ``into``, each evicted from the prefix
        cache if it held a hash, with one reference."""
        free = self.free
        block_hash = self.block_hash
        cached = self.cached
        ref_cnt = self.ref_cnt
        for _ in range(n):
            b = free.popitem(last=False)[0]
            h = block_hash[b]
            if h is not None:  # evict: the block is being reused
                if cached.get(h) == b:
                    del cached[h]
                block_hash[b] = None
            ref_cnt[b] = 1
            into.append(b)

    def cache_full_blocks(self, request: Request, num_tokens: int) -> None:
        """Hash the request's blocks that are full once ``num_tokens`` are computed (what
        :meth:`allocate_slots` does after reserving; public for the decode fast path)."""
        self._cache_full_blocks(request, num_tokens)

    def _cache_full_blocks(self, request: Request, num_tokens: int) -> None:
        """Hash the request's blocks that will be full once ``num_tokens`` are computed."""
        rid = request.request_id
        start = self.num_cached_blocks[rid]
        end = num_tokens // self.block_size
        if end <= start:
            return
        blocks = self.req_blocks[rid]
        block_hash = self.block_hash
        cached = self.cached
        shared = len(request.prefix_hashes)
        for i in range(start, end):
            b = blocks[i]
            if block_hash[b] is None:
                # Request.block_hash, inlined past the shared prefix (the hot case).
                h = request.prefix_hashes[i] if i < shared else -((rid << 24) | i) - 1
                block_hash[b] = h
                # NOTE: vLLM keeps every duplicate under the hash; we keep the first writer
                # (a duplicate computed concurrently is never looked up while the first lives).
                cached.setdefault(h, b)
        self.num_cached_blocks[rid] = end

    def free_request(self, request: Request) -> None:
        """Release the request's blocks, tail first, keeping their hashes for future hits."""
        rid = request.request_id
        blocks = self.req_blocks.pop(rid, None)
        self.num_cached_blocks.pop(rid, None)
        if not blocks:
            return
        ref_cnt = self.ref_cnt
        free = self.free
        for b in reversed(blocks):
            n = ref_cnt[b] - 1
            ref_cnt[b] = n
            if n == 0:
                free[b] = None  # tail of the free queue: evicted last

    def reset_prefix_cache(self) -> None:
        """Drop all cached hashes (vLLM's ``reset_prefix_cache``)."""
        for h, b in list(self.cached.items()):
            if self.ref_cnt[b] == 0:
                self.block_hash[b] = None
                del self.cached[h]

    def check_invariants(self) -> None:
        """Raise AssertionError if the pool is inconsistent (tests call this every step)."""
        held: dict[int, int] = {}
        for blocks in self.req_blocks.values():
            for b in blocks:
                held[b] = held.get(b, 0) + 1
        for b in range(self.num_blocks):
            assert self.ref_cnt[b] == held.get(b, 0), f"block {b} ref {self.ref_cnt[b]}"
            assert self.ref_cnt[b] >= 0
            assert (b in self.free) == (self.ref_cnt[b] == 0), f"block {b} free-queue mismatch"
        for h, b in self.cached.items():
            assert self.block_hash[b] == h
        assert 0 <= len(self.free) <= self.num_blocks

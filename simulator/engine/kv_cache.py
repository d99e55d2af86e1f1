"""Paged KV cache of one replica: vLLM v1's block pool and KV-cache manager, in plain Python.

What this models (``vllm/v1/core/block_pool.py``, ``kv_cache_manager.py``):
- a fixed pool of blocks of ``block_size`` tokens, sized from the replica's memory budget;
- reference counts: a block shared by several requests (a common prefix) is held once;
- prefix caching: every *full* block gets a hash chained over its prefix; a new request looks up the
  longest run of its leading full blocks already in the cache and skips computing them;
- freed blocks go to the tail of a free queue but keep their hash, so they can still be hit; a block
  is evicted (its hash dropped) only when the free queue hands it out for reuse — LRU eviction;
- a request frees its blocks in reverse order, so its tail blocks are evicted first (as vLLM does).

Usage accounting matches vLLM's ``kv_cache_usage_perc``: 1 − free blocks / total blocks, where cached
blocks with no reference count as free. Leaves out: sliding-window and hybrid (Mamba) KV groups,
KV offloading to CPU, the null block.

Representation (what is kept is what can be observed). A block is only worth an identity while it
carries a hash someone could look up. A request's own blocks (past the prefix it shares with other
requests, :class:`~simulator.engine.request.Request`) have hashes unique to it: while it holds them
no one else can look them up, and once it has finished no one ever will. So they are hashed only
when the request is *preempted* (:meth:`preempt_request`: it will look its own blocks up when it
resumes), exactly the full blocks vLLM would have hashed by then. Blocks with no hash are
interchangeable: a request holds its *labelled* blocks (hashed: shared prefix blocks, prefix-cache
hits, the blocks of a preempted request) as a leading run of ids, then a number of anonymous ones;
the free queue keeps labelled blocks by id and runs of anonymous blocks as counts, in eviction
order. Allocations, hits, evictions and usage are those of a pool of numbered blocks (the
differential test in ``tests/engine/test_kv_cache.py`` checks it against one), while a request's
prompt costs O(1) to allocate and free instead of O(blocks). Labels are not block numbers: an
evicted block becomes anonymous and a block that gets a hash gets a fresh label.

One deliberate difference from a numbered pool that keeps the first block under a hash: when the
same hash is written twice (a resumed request recomputing a block whose old copy is still cached),
the later copy is registered once the first is evicted, as vLLM (which keeps every duplicate) would
find it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from simulator.engine.request import Request

_UNKNOWN: Final = 1 << 60
"""No key of the free queue (labels and run keys never reach it; a compiled short int)."""


class KVCacheManager:
    """Block pool + per-request block tables + prefix cache."""

    def __init__(self, num_blocks: int, block_size: int = 16, enable_caching: bool = True,
                 max_model_len: int | None = None) -> None:
        if num_blocks < 1:
            raise ValueError("num_blocks must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.max_model_len = max_model_len
        self.num_free = num_blocks
        """Free blocks: anonymous ones and cached blocks no request holds."""
        self.free: OrderedDict[int, int] = OrderedDict({-1: num_blocks})
        """Free queue in eviction order (head = least recently freed): a key ≥ 0 is a labelled
        block (value 0), a key < 0 a run of ``value`` anonymous blocks."""
        self._head = -1
        self._tail = -1
        """The free queue's first and last keys (:data:`_UNKNOWN`: look them up). Kept because
        ``next(iter(free))`` builds an iterator: blocks are taken and freed several times per
        request, and once per block boundary of a run of decode steps."""
        self._run_key = -2
        self._label = 0
        self.ref_cnt: dict[int, int] = {}
        """Labelled block → requests holding it (0: it is in the free queue)."""
        self.block_hash: dict[int, int] = {}
        """Labelled block → its hash (absent after :meth:`reset_prefix_cache`)."""
        self.cached: dict[int, int] = {}
        """Block hash → the labelled block registered under it."""
        self.held: dict[int, int] = {}
        """Request id → blocks it holds (labelled and anonymous)."""
        self.labelled: dict[int, list[int]] = {}
        """Request id → its leading labelled blocks, in order (absent: none)."""
        # Prefix-cache statistics (vLLM's prefix_cache_queries / hits, in tokens).
        self.queries = 0
        self.hits = 0

    # ---- queries ---------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return self.num_free

    @property
    def usage(self) -> float:
        """vLLM's ``kv_cache_usage_perc`` as a fraction."""
        return 1.0 - self.num_free / self.num_blocks

    def num_held(self, request: Request) -> int:
        """Blocks the request holds."""
        return self.held.get(request.request_id, 0)

    def blocks_of(self, request: Request) -> list[int]:
        """The request's block table: labels of its labelled blocks, then −1 per anonymous one."""
        rid = request.request_id
        lab = self.labelled.get(rid, [])
        return lab + [-1] * (self.held.get(rid, 0) - len(lab))

    def get_computed_blocks(self, request: Request) -> tuple[list[int], int]:
        """Longest cached run of the request's leading full blocks, as (blocks, tokens).

        The hit is capped at ``num_tokens − 1`` tokens: the last token must be computed to produce
        logits (vLLM's ``max_cache_hit_length``).
        """
        if not self.enable_caching:
            return [], 0
        max_hit_blocks = (request.num_tokens - 1) // self.block_size
        hit: list[int] = []
        cached = self.cached
        if cached:
            for i in range(max_hit_blocks):
                blk = cached.get(request.block_hash(i))
                if blk is None:
                    break
                hit.append(blk)
        self.queries += request.num_tokens
        self.hits += len(hit) * self.block_size
        return hit, len(hit) * self.block_size

    # ---- allocation --------------------------------------------------------------------------
    def allocate_slots(self, request: Request, num_new_tokens: int,
                       num_new_computed_tokens: int = 0,
                       new_computed_blocks: list[int] | None = None) -> int | None:
        """Reserve blocks for ``num_new_tokens`` more tokens of ``request``; None if they don't
        fit, else the number of blocks taken from the free queue.

        ``new_computed_blocks`` are prefix-cache hits found by :meth:`get_computed_blocks`; they are
        touched (ref count +1, removed from the free queue) only if the allocation succeeds.
        """
        rid = request.request_id
        have = self.held.get(rid, 0)
        need_tokens = request.num_computed_tokens + num_new_computed_tokens + num_new_tokens
        if self.max_model_len is not None and need_tokens > self.max_model_len:
            need_tokens = self.max_model_len
        bs = self.block_size
        num_tokens = request.prompt_len + request.num_output_tokens
        upto = need_tokens if need_tokens < num_tokens else num_tokens
        if not new_computed_blocks:
            num_to_allocate = -(-need_tokens // bs) - have
            if num_to_allocate > 0:
                if num_to_allocate > self.num_free:
                    return None
                self._take(num_to_allocate)
                self.held[rid] = have + num_to_allocate
            else:
                num_to_allocate = 0
                if not have:
                    self.held[rid] = 0
        else:
            # Cached-but-free hit blocks leave the free queue when touched: they count against it.
            ref_cnt = self.ref_cnt
            evictable = sum(1 for b in new_computed_blocks if not ref_cnt[b])
            num_to_allocate = -(-need_tokens // bs) - have - len(new_computed_blocks)
            if num_to_allocate > self.num_free - evictable:
                return None
            assert not have, "prefix-cache hits for a request that already holds blocks"
            free = self.free
            lab = self.labelled.setdefault(rid, [])
            for b in new_computed_blocks:
                if not ref_cnt[b]:
                    del free[b]
                    if b == self._head:
                        self._head = _UNKNOWN
                    if b == self._tail:
                        self._tail = _UNKNOWN
                    self.num_free -= 1
                ref_cnt[b] += 1
                lab.append(b)
            if num_to_allocate > 0:
                self._take(num_to_allocate)
            else:
                num_to_allocate = 0
            self.held[rid] = len(new_computed_blocks) + num_to_allocate
        request.kv_upto = upto
        if self.enable_caching and request.prefix_hashes:
            self._hash_blocks(request, min(upto // bs, len(request.prefix_hashes)))
        return num_to_allocate

    def take(self, n: int) -> None:
        """Take ``n`` blocks off the head of the free queue for running requests that will be
        settled later (:meth:`settle`); the caller has checked that ``n`` blocks are free (the
        decode fast path, :mod:`simulator.cluster.fast_path`)."""
        self._take(n)

    def settle(self, request: Request, num_computed: int) -> None:
        """A running plain decode whose blocks were taken by :meth:`take`, one per block boundary,
        has ``num_computed`` tokens computed (or being computed): it holds the blocks those need,
        and vLLM would have hashed its blocks full by then."""
        rid = request.request_id
        need = -(-num_computed // self.block_size)
        if need > self.held[rid]:
            self.held[rid] = need
        request.kv_upto = num_computed

    def _take(self, n: int) -> None:
        """Take ``n`` blocks off the head of the free queue; a cached block is evicted (its hash
        dropped) and, like every taken block, becomes anonymous."""
        self.num_free -= n
        free = self.free
        key = self._head
        while n:
            if key == _UNKNOWN:
                key = next(iter(free))
            if key < 0:
                c = free[key]
                if c > n:
                    free[key] = c - n
                    self._head = key
                    return
                del free[key]
                n -= c
            else:
                del free[key]
                h = self.block_hash.pop(key, None)
                if h is not None and self.cached.get(h) == key:
                    del self.cached[h]
                del self.ref_cnt[key]
                n -= 1
            if key == self._tail:
                self._tail = _UNKNOWN
            key = _UNKNOWN
        self._head = _UNKNOWN

    def _hash_blocks(self, request: Request, end: int) -> None:
        """Give the request's blocks before index ``end`` their hashes (anonymous ones become
        labelled, in order); the first block registered under a hash keeps it."""
        rid = request.request_id
        lab = self.labelled.get(rid)
        start = len(lab) if lab is not None else 0
        if end <= start:
            return
        if lab is None:
            lab = self.labelled[rid] = []
        label = self._label
        ref_cnt = self.ref_cnt
        block_hash = self.block_hash
        cached = self.cached
        for i in range(start, end):
            h = request.block_hash(i)
            lab.append(label)
            ref_cnt[label] = 1
            block_hash[label] = h
            cached.setdefault(h, label)
            label += 1
        self._label = label

    def _free_anonymous(self, n: int) -> None:
        """Append ``n`` anonymous blocks to the tail of the free queue."""
        self.num_free += n
        free = self.free
        if free:
            tail = self._tail
            if tail == _UNKNOWN:
                tail = self._tail = next(reversed(free))
            if tail < 0:
                free[tail] += n
                return
        else:
            self._head = self._run_key
        free[self._run_key] = n
        self._tail = self._run_key
        self._run_key -= 1

    def free_request(self, request: Request) -> None:
        """Release the request's blocks, tail first, keeping their hashes for future hits."""
        rid = request.request_id
        n = self.held.pop(rid, 0)
        lab = self.labelled.pop(rid, None)
        if lab is None:
            if n:
                self._free_anonymous(n)
            return
        if n > len(lab):
            self._free_anonymous(n - len(lab))
        ref_cnt = self.ref_cnt
        free = self.free
        for b in reversed(lab):
            r = ref_cnt[b] - 1
            ref_cnt[b] = r
            if not r:
                if not free:
                    self._head = b
                free[b] = 0  # tail of the free queue: evicted last
                self._tail = b
                self.num_free += 1

    def preempt_request(self, request: Request) -> None:
        """Release a preempted request's blocks: first hash its full blocks (those vLLM hashed as
        they filled; it may hit them when it resumes), then free them as :meth:`free_request`."""
        if self.enable_caching and request.request_id in self.held:
            self._hash_blocks(request, min(request.kv_upto // self.block_size,
                                           self.held[request.request_id]))
        self.free_request(request)

    def reset_prefix_cache(self) -> None:
        """Drop all cached hashes (vLLM's ``reset_prefix_cache``)."""
        for h, b in list(self.cached.items()):
            if self.ref_cnt[b] == 0:
                del self.block_hash[b]
                del self.cached[h]

    def check_invariants(self) -> None:
        """Raise AssertionError if the pool is inconsistent (tests call this every step)."""
        refs: dict[int, int] = {}
        anonymous = 0
        for rid, n in self.held.items():
            lab = self.labelled.get(rid, [])
            assert n >= len(lab), f"request {rid} holds {n} blocks, {len(lab)} labelled"
            anonymous += n - len(lab)
            for b in lab:
                refs[b] = refs.get(b, 0) + 1
        assert set(self.labelled) <= set(self.held)
        free_labels = 0
        free_anonymous = 0
        for key, val in self.free.items():
            if key < 0:
                assert val > 0, f"empty run {key} in the free queue"
                free_anonymous += val
            else:
                assert self.ref_cnt[key] == 0, f"block {key} in the free queue is held"
                free_labels += 1
        for b, r in self.ref_cnt.items():
            assert r == refs.get(b, 0), f"block {b} ref {r}, held {refs.get(b, 0)} times"
            assert r > 0 or b in self.free, f"block {b} is neither held nor free"
        assert self.num_free == free_labels + free_anonymous
        keys = list(self.free)
        assert self._head == _UNKNOWN or (keys and self._head == keys[0]), "stale free-queue head"
        assert self._tail == _UNKNOWN or (keys and self._tail == keys[-1]), "stale free-queue tail"
        assert self.num_free + len(refs) + anonymous == self.num_blocks, "blocks not conserved"
        for h, b in self.cached.items():
            assert self.block_hash[b] == h
        assert 0 <= self.num_free <= self.num_blocks

"""One inference request as vLLM v1's engine core sees it.

What this models: ``vllm.v1.request.Request`` — a prompt of ``prompt_len`` tokens, output tokens
appended one per step once the prompt is computed, and ``num_computed_tokens`` catching up with
``num_tokens``. There is no prefill or decode phase: a request whose computed tokens lag its tokens
by more than one is, in effect, prefilling.

Token contents are not simulated; what matters for the KV cache is *which blocks are identical*.
A request therefore carries ``prefix_hashes`` — the chained hashes of the full blocks of its prompt it
shares with other requests (a system prompt, an earlier turn of a conversation) — and every other
block gets a hash unique to the request. Leaves out: sampling parameters, stop strings (the output
length is known up front: the real run stopped after ``max_tokens`` tokens or at EOS, which we
replay as a fixed output length), speculative decoding, multimodal inputs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RequestStatus(enum.IntEnum):
    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2
    FINISHED = 3


@dataclass(slots=True, eq=False)
class Request:
    """Mutable engine-side state of one request (identity equality, like vLLM's)."""

    request_id: int
    prompt_len: int
    max_tokens: int
    """Output tokens this request will generate (its recorded or sampled output length)."""
    arrival_time: float = 0.0
    priority: int = 0
    """Lower value = served first (vLLM's convention)."""
    prefix_hashes: tuple[int, ...] = ()
    """Hashes of the leading full prompt blocks shared with other requests (chained)."""

    status: RequestStatus = RequestStatus.WAITING
    num_computed_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = -1
    """Prompt tokens served from the prefix cache at first scheduling (-1: not yet scheduled)."""
    num_preemptions: int = 0

    # Timestamps (simulated seconds), filled by the replica.
    scheduled_time: float = -1.0
    first_token_time: float = -1.0
    last_token_time: float = -1.0
    finish_time: float = -1.0
    itl_max: float = 0.0
    token_times: list[float] | None = field(default=None)
    """Per-token timestamps, only when the recorder asks for them."""

    # Engine-loop bookkeeping of the replica's decode fast path (simulator.cluster.replica).
    run_seq: int = 0
    """Position in the replica's RUNNING order (increases with each append to RUNNING)."""
    lazy_g0: int = -1
    """Fast-path step at which this request's decode counters were last applied (-1: applied)."""
    lazy_c0: int = 0
    """Computed tokens then."""
    lazy_out0: int = 0
    """Output tokens then."""
    lazy_fin: int = 0
    """Fast-path step in which it produces its last token."""
    lazy_phase: int = -1
    """Fast-path steps ≡ this (mod block size) give it a new block (-1: none before it ends)."""
    kv_upto: int = 0
    """Tokens whose full blocks vLLM has hashed by now (the KV cache hashes a request's own
    blocks only if it is preempted: simulator.engine.kv_cache)."""

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + self.num_output_tokens

    @property
    def is_finished(self) -> bool:
        return self.status == RequestStatus.FINISHED

    def block_hash(self, index: int) -> int:
        """Hash of full block ``index`` of this request's token sequence.

        NOTE: shared prefix blocks use the workload's hashes; the rest are made unique per request
        by mixing in the request id (negative to keep them disjoint from workload hashes).
        """
        if index < len(self.prefix_hashes):
            return self.prefix_hashes[index]
        return -((self.request_id << 24) | index) - 1

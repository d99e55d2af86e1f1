"""Which prompt blocks are identical across requests: system prompts, sessions, trace prefixes.

What this models: prefix sharing as the KV cache sees it. Token contents are not simulated; a
request carries ``prefix_hashes``, one int per leading *full* KV block of its prompt that other
requests may share (the engine gives every other block a hash unique to the request). Equal ints ⇔
identical tokens from the start of the prompt to the end of that block — the KV cache's chained
block hash — so every int here is built to identify a whole prefix:

* **System prompt** — ``system_prompt_tokens`` shared by every request of a sender: block j gets
  ``SYSTEM_PROMPT_HASH_BASE + j`` (sender 0) or ``key(SYSTEM, sender, 0, j)``.
* **Sessions** — turn k of a conversation sends the system prompt, every earlier turn's input and
  output, then a new input. Block j of session s is ``key(SESSION, sender, s, j)``, so turn k+1
  finds every full block of turn k's prompt in the cache. (Blocks that turn k *generated* are hashed
  by the engine as that request's own, so the block holding turn k's output is recomputed by turn
  k+1 — a conservative miss of at most ⌈output / block⌉ + 1 blocks per turn.)
* **Trace prefixes** (Mooncake ``hash_ids``) — hash id i of a request names its i-th 512-token
  block *and everything before it* (the trace's ids are chained: equal ids at position i imply
  equal ids at every earlier position; checked on the Mooncake trace, where every id always sits at
  the same position). KV block j ends at token e = (j+1)·block_size (after any system prompt); it
  lies in hash block h = hash_ids[(e−1) // 512] at offset o = (e−1) mod 512, and is
  ``key(TRACE, namespace, h, o)``: unique per (h, o), identical whenever two requests agree up to
  that point, for any block_size. Only blocks inside *full* 512-token hash blocks are shared (the
  id of a trailing partial block names a partial block), and never beyond the prompt, so
  ``len(prefix_hashes) · block_size ≤ prompt_len`` always.

``key`` packs (kind, namespace, a, b) into one exact non-negative int64 (no hashing, so no
collisions): kind < 4 in bits 61–62, namespace (the sender) < 256, a < 2³³ (a session number or a
trace hash id), b < 2²⁰ (a block index or an offset). Small ints keep the KV cache's dict fast and
let the keys be built with numpy.

Leaves out: sharing inside generated tokens across requests (only prompts are shared), partial-block
sharing (vLLM shares full blocks only, too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SYSTEM_PROMPT_HASH_BASE = 1 << 40
SYSTEM, SESSION, TRACE = 1, 2, 3


NS_BITS, A_BITS, B_BITS = 8, 33, 20
MAX_NAMESPACES = 1 << NS_BITS


def _base(kind: int, namespace: int) -> int:
    if not 0 <= namespace < MAX_NAMESPACES:
        raise ValueError(f"namespace {namespace} out of range (at most {MAX_NAMESPACES} senders)")
    return (kind << (NS_BITS + A_BITS + B_BITS)) | (namespace << (A_BITS + B_BITS))


def key(kind: int, namespace: int, a: int, b: int) -> int:
    """One exact integer for (kind, namespace, a, b)."""
    if not (0 <= a < 1 << A_BITS and 0 <= b < 1 << B_BITS):
        raise ValueError(f"prefix key out of range: a={a}, b={b}")
    return _base(kind, namespace) | (a << B_BITS) | b


def system_prompt_hashes(tokens: int, block_size: int, sender: int) -> tuple[int, ...]:
    """Hashes of the full blocks of sender ``sender``'s system prompt."""
    n = tokens // block_size
    if sender == 0:
        return tuple(SYSTEM_PROMPT_HASH_BASE + i for i in range(n))
    return tuple(key(SYSTEM, sender, 0, i) for i in range(n))


def session_hashes(prompt_len: int, block_size: int, sys_hashes: tuple[int, ...],
                   sys_tokens: int, namespace: int, session: int) -> tuple[int, ...]:
    """Full blocks of a session turn's prompt: the system prompt's, then the conversation's."""
    n = prompt_len // block_size
    first = min(len(sys_hashes), n)  # a block straddling the system prompt's end is the session's
    if n >= 1 << B_BITS or session >= 1 << A_BITS:
        raise ValueError(f"session {session} with {n} blocks exceeds the prefix key range")
    base = key(SESSION, namespace, session, 0)
    return sys_hashes[:first] + tuple((base + np.arange(first, n, dtype=np.int64)).tolist())


def trace_hashes(hash_ids: Sequence[int], trace_len: int, block_size: int, hash_block: int,
                 sys_hashes: tuple[int, ...], sys_tokens: int, namespace: int) -> tuple[int, ...]:
    """Full KV blocks of a trace request's prompt (system prompt + ``trace_len`` trace tokens)
    that its chained ``hash_ids`` make shareable."""
    n = (sys_tokens + trace_len) // block_size
    full_hash_blocks = min(len(hash_ids), trace_len // hash_block)
    first = min(n, sys_tokens // block_size)
    sys_part = sys_hashes[:first]
    j = np.arange(first, n, dtype=np.int64)
    e = (j + 1) * block_size - sys_tokens  # end of block j, in trace tokens
    idx = (e - 1) // hash_block
    keep = int(np.searchsorted(idx, full_hash_blocks, side="left"))  # idx is non-decreasing
    if keep == 0:
        return sys_part
    ids = np.asarray(hash_ids, dtype=np.int64)[idx[:keep]]
    if ids.max() >= 1 << A_BITS or hash_block > 1 << B_BITS:
        raise ValueError("trace hash ids or hash_block_tokens exceed the prefix key range")
    keys = _base(TRACE, namespace) | (ids << B_BITS) | ((e[:keep] - 1) % hash_block)
    return sys_part + tuple(keys.tolist())


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


@dataclass
class TurnPlan:
    """The drawn content of one session: prompt and output length of each turn, and pauses."""

    prompts: list[int]
    outputs: list[int]
    think_s: list[float]


def plan_session(rng: np.random.Generator, turns: str, turns_mean: float, turns_max: int,
                 think_mean: float, think: str, draw: Callable[[int], tuple[np.ndarray, np.ndarray]],
                 sys_tokens: int, max_model_len: int | None) -> TurnPlan:
    """Draw a session: its number of turns, (new input, output) per turn, and think times. The
    session ends early when a turn would not fit ``max_model_len`` (the first turn is always
    sent)."""
    n = round(turns_mean) if turns == "fixed" else int(rng.geometric(1.0 / turns_mean))
    n = max(1, min(n, turns_max))
    new_in, outs = draw(n)
    if think == "fixed" or think_mean == 0:
        pauses = [think_mean] * n
    else:
        pauses = rng.exponential(think_mean, n).tolist()
    pauses[0] = 0.0
    prompts: list[int] = []
    outputs: list[int] = []
    ctx = sys_tokens
    for k, (i, o) in enumerate(zip(new_in.tolist(), outs.tolist(), strict=True)):
        p = ctx + i
        if k and max_model_len is not None and p + o > max_model_len:
            break
        prompts.append(p)
        outputs.append(o)
        ctx = p + o
    return TurnPlan(prompts, outputs, pauses[: len(prompts)])

"""Turns a workload config into *traffic*: what clients will send, when, and with which content.

What this models: the content side of traffic — how long each prompt and output is, which prompt
blocks are shared (a system prompt, earlier turns of a session, a trace's prefix blocks), who sends
it (tenant, API key, priority, SLO class) — and the shape of the sending: open-loop streams (arrival
times known up front), closed-loop groups (next request after the previous response) and sessions.
The SimPy processes that *play* this traffic live in :mod:`simulator.cluster.client`; this module
only describes it.

How the pieces combine: every *sender* (a tenant, or the one anonymous sender) has its own lengths,
system prompt and sessions. Senders with a ``weight`` share the workload's arrival process — each
arrival picks one in proportion to the weights; a sender with its own ``arrival`` has a stream of
its own. All open-loop streams are merged in time order into one stream (or one stream of sessions
if any sender has sessions; a single request is then a one-turn session), capped at
``num_requests``; closed-loop senders become closed-loop groups.

Seeds: the SeedSequence passed in is never mutated; its children are taken by explicit spawn keys —
[0] the shared arrival process (and trace scaling), [1] the anonymous sender's lengths (the layout
the core issue's generator used, so single-stream scenarios keep their numbers), [2] everything
else: [2, 0] sessions, [2, 2] tenant choice, [2, 3, i] tenant i ([…, 0] lengths, [1] its own
arrivals, [2] sessions, [3] its own tenant choice). Changing one aspect never shifts another's
random stream.

The contract between workload and clients is :class:`Traffic`: a list of open-loop streams, a list
of closed-loop groups and a list of session sources. Each yields :class:`RequestSpec` objects.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from simulator.workload.arrivals import arrival_times
from simulator.workload.lengths import LengthPairs, LengthSampler, make_sampler
from simulator.workload.sessions import (
    SYSTEM_PROMPT_HASH_BASE,
    plan_session,
    session_hashes,
    system_prompt_hashes,
    trace_hashes,
)
from simulator.workload.spec import (
    Arrivals,
    ClosedLoopArrivals,
    OfflineArrivals,
    SessionSpec,
    StepsArrivals,
    TenantSpec,
    TraceArrivals,
    WorkloadConfig,
)
from simulator.workload.traces import id_remapper, load_trace, replay

CHUNK = 4096
__all__ = ["SYSTEM_PROMPT_HASH_BASE", "ClosedLoopGroup", "OpenLoopStream", "RequestSpec",
           "Session", "Traffic", "build_traffic"]


@dataclass(slots=True, unsafe_hash=True)
class RequestSpec:
    """What a client will send: prompt tokens, tokens it will generate, shared prefix blocks, and
    who sends it (tenant and API key, read by the gateway). A value: compared and hashed by its
    fields, and never changed once made (nothing assigns to one)."""

    prompt_len: int
    output_len: int
    prefix_hashes: tuple[int, ...] = ()
    priority: int = 0
    tenant: str = "default"
    api_key: str | None = None
    session_id: int | None = None
    turn: int = 0
    slo_class: str = "default"
    """SLO class label of the sender (per-class targets and results)."""

    def __init__(self, prompt_len: int, output_len: int, prefix_hashes: tuple[int, ...] = (),
                 priority: int = 0, tenant: str = "default", api_key: str | None = None,
                 session_id: int | None = None, turn: int = 0, slo_class: str = "default") -> None:
        # NOTE: written out, and not frozen, so that it is compiled with the engine
        # (simulator._native): one per request. A frozen dataclass's generated __init__ runs as
        # Python and sets each field through object.__setattr__ (about 5× as slow as this one
        # uncompiled). Same defaults as the fields above (tests/workload/test_generator.py).
        self.prompt_len = prompt_len
        self.output_len = output_len
        self.prefix_hashes = prefix_hashes
        self.priority = priority
        self.tenant = tenant
        self.api_key = api_key
        self.session_id = session_id
        self.turn = turn
        self.slo_class = slo_class


@dataclass
class OpenLoopStream:
    """Requests sent at given times whatever the responses do."""

    times: Iterator[float]
    specs: Iterator[RequestSpec]
    max_concurrency: int | None = None
    """At most this many in flight; the rest wait at the client, in order (``vllm bench serve
    --max-concurrency``)."""


@dataclass
class ClosedLoopGroup:
    """``concurrency`` clients, each sending its next request once the previous one has ended."""

    concurrency: int
    specs: Iterator[RequestSpec]
    think_time_s: float = 0.0
    limit: int | None = None
    """Requests this group sends in total (None = until ``until``)."""
    ramp_up_s: float = 0.0
    """Client i of N starts at i × ramp_up_s / N."""
    warmup: int = 0
    """Warm-up requests sent first (beyond ``limit``); the measured phase starts when they have
    all ended (aiperf's warm-up phase)."""


@dataclass
class Session:
    """A multi-turn conversation: turn k's prompt carries the context of turns < k as a prefix.

    ``next_turn(k, ...)`` builds the RequestSpec of turn ``k``; ``think_time_s[k]`` is the pause
    before turn ``k`` (after the response to turn k−1).
    """

    start_s: float
    num_turns: int
    think_time_s: list[float]
    make_turn: Callable[[int], RequestSpec]


@dataclass
class Traffic:
    """Everything the clients will send in one run."""

    open_loop: list[OpenLoopStream] = field(default_factory=list)
    closed_loop: list[ClosedLoopGroup] = field(default_factory=list)
    sessions: list[Iterator[Session]] = field(default_factory=list)
    until: float | None = None
    """Stop sending after this simulated time (None: when the streams end)."""
    expected_requests: int | None = None
    """Requests that will be sent in total, if known (the run stops when all have ended)."""
    measure_from_s: float = 0.0
    """Start of the measured window, set by the clients when a warm-up phase ends (requests
    that arrived before it are left out of the statistics, as ``metrics.warmup_s``)."""


def child_seed(seed: np.random.SeedSequence, *path: int) -> np.random.SeedSequence:
    """The SeedSequence ``seed.spawn`` would give at ``path``, without mutating ``seed``."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *path),
                                  pool_size=seed.pool_size)


def _rng(seed: np.random.SeedSequence, *path: int) -> np.random.Generator:
    return np.random.default_rng(child_seed(seed, *path))


# --------------------------------------------------------------------------------------------
# Senders: one tenant's content
# --------------------------------------------------------------------------------------------


class Sender:
    """A tenant (or the anonymous sender): its lengths, system prompt, sessions and labels."""

    def __init__(self, index: int, tenant: TenantSpec | None, cfg: WorkloadConfig,
                 rng_lengths: np.random.Generator, rng_sessions: np.random.Generator,
                 block_size: int, base_dir: str | None, max_model_len: int | None) -> None:
        t = tenant
        self.index = index
        self.name = t.name if t else "default"
        self.api_key = t.api_key if t else None
        self.priority = t.priority if t else 0
        self.slo_class = t.slo_class if t else "default"
        in_spec = t.input_len if t and t.input_len is not None else cfg.input_len
        out_spec = t.output_len if t and t.output_len is not None else cfg.output_len
        corr = t.length_correlation if t and t.length_correlation is not None \
            else cfg.length_correlation
        self.pairs = LengthPairs(in_spec, out_spec, base_dir, corr, max_model_len)
        self.sys_tokens = t.system_prompt_tokens if t and t.system_prompt_tokens is not None \
            else cfg.system_prompt_tokens
        self.sys_hashes = system_prompt_hashes(self.sys_tokens, block_size, index)
        self.sessions: SessionSpec | None = (t.sessions if t and t.sessions is not None
                                             else cfg.sessions)
        self.followup: LengthSampler | None = None
        if self.sessions is not None and self.sessions.followup_input_len is not None:
            self.followup = make_sampler(self.sessions.followup_input_len, "input", base_dir,
                                         max_model_len)
        self.rng_lengths, self.rng_sessions = rng_lengths, rng_sessions
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.clip = cfg.overlong == "clip" and max_model_len is not None
        self.stream = self._requests()

    def _fit(self, prompt: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip (prompt, output) to max_model_len when the workload asks for it."""
        if not self.clip:
            return prompt, out
        assert self.max_model_len is not None
        prompt = np.minimum(prompt, self.max_model_len - 1)
        return prompt, np.minimum(out, self.max_model_len - prompt)

    def spec(self, prompt: int, out: int, prefix: tuple[int, ...], session: int | None = None,
             turn: int = 0, priority: int | None = None, tenant: str | None = None) -> RequestSpec:
        return RequestSpec(prompt, out, prefix, self.priority if priority is None else priority,
                           tenant or self.name, self.api_key, session, turn, self.slo_class)

    def _requests(self) -> Iterator[RequestSpec]:
        """Endless independent requests, lengths drawn in chunks."""
        sys_tokens, prefix, bs = self.sys_tokens, self.sys_hashes, self.block_size
        while True:
            inp, out = self.pairs.sample(self.rng_lengths, CHUNK)
            prompt, out = self._fit(sys_tokens + inp, out)
            for p, o in zip(prompt.tolist(), out.tolist(), strict=True):
                pre = prefix if p >= sys_tokens else prefix[: p // bs]
                yield self.spec(p, o, pre)

    def _turn_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        inp, out = self.pairs.sample(self.rng_lengths, n)
        if self.followup is not None and n > 1:
            inp = inp.copy()
            inp[1:] = self.followup.sample(self.rng_lengths, n - 1)
        if self.clip:
            p, o = self._fit(self.sys_tokens + inp[:1], out[:1])
            inp, out = inp.copy(), out.copy()
            inp[0], out[0] = max(1, int(p[0]) - self.sys_tokens), o[0]
        return inp, out

    def session(self, start_s: float, sid: int) -> Session:
        """A new multi-turn session starting at ``start_s``."""
        s = self.sessions
        assert s is not None
        plan = plan_session(self.rng_sessions, s.turns, s.turns_mean, s.turns_max, s.think_time_s,
                            s.think_time, self._turn_lengths, self.sys_tokens, self.max_model_len)
        bs, sys_h, sys_t, ns = self.block_size, self.sys_hashes, self.sys_tokens, self.index

        def make_turn(k: int) -> RequestSpec:
            p = plan.prompts[k]
            return self.spec(p, plan.outputs[k], session_hashes(p, bs, sys_h, sys_t, ns, sid),
                             session=sid, turn=k)

        return Session(start_s, len(plan.prompts), plan.think_s, make_turn)


# --------------------------------------------------------------------------------------------
# Parts: one arrival process and the senders sharing it
# --------------------------------------------------------------------------------------------

Item = tuple[float, RequestSpec | Session]


def _chooser(senders: list[Sender], weights: list[float],
             rng: np.random.Generator) -> Iterator[Sender]:
    if len(senders) == 1:
        yield from itertools.repeat(senders[0])
        return
    p = np.asarray(weights, dtype=float) / sum(weights)
    while True:
        for i in rng.choice(len(senders), size=CHUNK, p=p).tolist():
            yield senders[i]


def _specs(choose: Iterator[Sender]) -> Iterator[RequestSpec]:
    for s in choose:
        yield next(s.stream)


@dataclass
class Part:
    """One arrival process, the senders that share it, and what it will send."""

    items: Iterator[Item]
    count: int | None
    """Requests it will send (session turns counted), None if unbounded."""


def _open_part(arrival: Arrivals, senders: list[Sender], choose: Iterator[Sender],
               rng_arrivals: np.random.Generator, cap: int | None, until: float | None,
               sids: Iterator[int]) -> Part:
    times = arrival_times(arrival, rng_arrivals, cap, until)
    sessions = any(s.sessions is not None for s in senders)

    def items() -> Iterator[Item]:
        for t in times:
            s = next(choose)
            if s.sessions is not None:
                yield t, s.session(t, next(sids))
            else:
                yield t, next(s.stream)

    if isinstance(arrival, OfflineArrivals) and not sessions:
        return Part(items(), cap)  # exactly cap requests at t = 0
    if isinstance(arrival, OfflineArrivals) or (
            isinstance(arrival, StepsArrivals) and arrival.steps[-1].rate == 0):
        listed = list(items())  # a finite stream: count what it will send
        return Part(iter(listed), sum(_turns(x) for _, x in listed))
    return Part(items(), None)


def _turns(x: RequestSpec | Session) -> int:
    return x.num_turns if isinstance(x, Session) else 1


def _trace_part(spec: TraceArrivals, choose: Iterator[Sender], rng: np.random.Generator,
                cap: int | None, until: float | None, base_dir: str | None,
                named_tenants: bool) -> Part:
    tr = load_trace(spec, base_dir)
    rep = replay(tr, spec, rng)
    n = len(rep)
    if until is not None:
        n = int(np.searchsorted(rep.times, until, side="right"))
    if cap is not None:
        n = min(n, cap)
    use_prefix = spec.prefixes and spec.lengths and tr.hash_ids is not None
    shared, stride = id_remapper(tr) if use_prefix else (frozenset(), 0)
    hb = spec.hash_block_tokens

    def items() -> Iterator[Item]:
        times, rows, copies = rep.times.tolist(), rep.rows.tolist(), rep.copies.tolist()
        for i in range(n):
            s = next(choose)
            if not spec.lengths:
                yield times[i], next(s.stream)
                continue
            row, c = rows[i], copies[i]
            prompt, out = s._fit(np.array([s.sys_tokens + int(tr.input[row])]),
                                 np.array([int(tr.output[row])]))
            p, o = int(prompt[0]), int(out[0])
            if use_prefix:
                assert tr.hash_ids is not None
                ids = tr.hash_ids[row]
                if c:
                    ids = tuple(h if h in shared else h + c * stride for h in ids)
                prefix = trace_hashes(ids, p - s.sys_tokens, s.block_size, hb, s.sys_hashes,
                                      s.sys_tokens, s.index)
            else:
                prefix = s.sys_hashes[: p // s.block_size]
            tenant = tr.tenant[row] if tr.tenant is not None and not named_tenants else None
            prio = int(tr.priority[row]) if tr.priority is not None else None
            yield times[i], s.spec(p, o, prefix, priority=prio, tenant=tenant)

    return Part(items(), n)


class _Split:
    """Splits a stream of (time, spec) items into the two iterators an OpenLoopStream holds; the
    client consumes them in lockstep (a time, then its spec)."""

    def __init__(self, items: Iterator[Item]) -> None:
        self.items = items
        self.pending: deque[RequestSpec] = deque()

    def times(self) -> Iterator[float]:
        for t, spec in self.items:
            assert isinstance(spec, RequestSpec)
            self.pending.append(spec)
            yield t

    def specs(self) -> Iterator[RequestSpec]:
        while self.pending:
            yield self.pending.popleft()


def _fixed_turn(spec: RequestSpec) -> Callable[[int], RequestSpec]:
    return lambda _k: spec


def _as_sessions(items: Iterator[Item], cap: int | None) -> Iterator[Session]:
    left = cap
    for t, x in items:
        if left is not None and left <= 0:
            return
        if isinstance(x, RequestSpec):
            x = Session(t, 1, [0.0], _fixed_turn(x))
        if left is not None:
            if x.num_turns > left:
                x = Session(x.start_s, left, x.think_time_s[:left], x.make_turn)
            left -= x.num_turns
        yield x


def _capped(items: Iterator[Item], cap: int | None) -> Iterator[Item]:
    return items if cap is None else itertools.islice(items, cap)


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def build_traffic(cfg: WorkloadConfig, seed: np.random.SeedSequence, block_size: int,
                  base_dir: str | None = None, max_model_len: int | None = None) -> Traffic:
    """The traffic a workload config describes (``max_model_len``: the deployment's, for length
    clipping and session truncation; None: no limit)."""
    until, cap = cfg.duration_s, cfg.num_requests
    sids = itertools.count()
    tenants: list[TenantSpec | None] = list(cfg.tenants) or [None]
    senders: list[Sender] = []
    for i, t in enumerate(tenants):
        if t is None:
            rl, rs = _rng(seed, 1), _rng(seed, 2, 0)
        else:
            rl, rs = _rng(seed, 2, 3, i, 0), _rng(seed, 2, 3, i, 2)
        senders.append(Sender(i, t, cfg, rl, rs, block_size, base_dir, max_model_len))

    traffic = Traffic(until=until)
    parts: list[Part] = []
    closed_limits: list[int | None] = []
    named = bool(cfg.tenants)

    # The shared arrival process and the senders with a weight.
    shared = [(s, t) for s, t in zip(senders, tenants, strict=True) if t is None or t.arrival is None]
    groups: list[tuple[Arrivals, list[Sender], list[float], np.random.Generator,
                       np.random.Generator, int | None]] = []
    if shared:
        groups.append((cfg.arrival, [s for s, _ in shared],
                       [(t.weight or 1.0) if t else 1.0 for _, t in shared],
                       _rng(seed, 0), _rng(seed, 2, 2), cap))
    for i, (s, t) in enumerate(zip(senders, tenants, strict=True)):
        if t is not None and t.arrival is not None:
            own_cap = t.num_requests
            if not isinstance(t.arrival, ClosedLoopArrivals) and cap is not None:
                own_cap = cap if own_cap is None else min(own_cap, cap)
            groups.append((t.arrival, [s], [1.0], _rng(seed, 2, 3, i, 1), _rng(seed, 2, 3, i, 3),
                           own_cap))

    part_cap: int | None  # NOTE: annotated: the install's mypyc (numpy as Any) inferred None
    for arrival, members, weights, rng_arr, rng_mix, part_cap in groups:
        choose = _chooser(members, weights, rng_mix)
        if isinstance(arrival, ClosedLoopArrivals):
            warm = arrival.warmup_requests
            traffic.closed_loop.append(ClosedLoopGroup(arrival.concurrency, _specs(choose),
                                                       arrival.think_time_s, part_cap,
                                                       arrival.ramp_up_s, warm))
            closed_limits.append(part_cap if part_cap is None else part_cap + warm)
        elif isinstance(arrival, TraceArrivals):
            parts.append(_trace_part(arrival, choose, rng_arr, part_cap, until, base_dir, named))
        else:
            parts.append(_open_part(arrival, members, choose, rng_arr, part_cap, until, sids))

    open_expected: int | None = 0
    if parts:
        counts = [p.count for p in parts]
        total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
        open_expected = total if cap is None else (cap if total is None else min(cap, total))
        items = parts[0].items if len(parts) == 1 else heapq.merge(*(p.items for p in parts),
                                                                   key=itemgetter(0))
        if any(s.sessions is not None for s in senders):
            traffic.sessions.append(_as_sessions(items, cap))
        else:
            split = _Split(_capped(items, cap))
            traffic.open_loop.append(OpenLoopStream(split.times(), split.specs(),
                                                    cfg.max_concurrency))
    if open_expected is None or any(c is None for c in closed_limits):
        traffic.expected_requests = None
    else:
        traffic.expected_requests = open_expected + sum(c for c in closed_limits if c is not None)
    return traffic

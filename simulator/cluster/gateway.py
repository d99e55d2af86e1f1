"""The API front door: who may call, what is valid, how much each tenant may use, when to say no.

What this models: an API gateway in front of an LLM fleet (Envoy AI Gateway, Kong, LiteLLM proxy,
a cloud API front end) together with vLLM's own request validation:

- **auth**: the request's API key is looked up in the key store; an unknown or missing key is
  refused with 401, and the key's owner — not the client's claim — is the tenant;
- **validation**: prompt + ``max_tokens`` > ``max_model_len`` of the target model → 400;
- **rate limits**: per tenant, token buckets on requests/min and on tokens/min. The token bucket is
  charged up front with the prompt plus an *estimate* of the output (``output_estimate_tokens``)
  and reconciled with the actual usage when the request ends (unused estimate refunded, overrun
  charged), as usage-based gateways do; an empty bucket → 429;
- **daily token quotas**: per tenant, reset every simulated day; spent → 429;
- **global load shedding**: when the fleet's waiting requests (scraped gauges + router queues) reach
  a threshold → 429, except for priority classes declared exempt;
- **priority classes and weighted fair sharing**: a tenant's priority class becomes its requests'
  priority; requests held at the router while replicas are saturated leave in priority-class order
  and, within a class, FCFS or by a virtual token counter per tenant (:class:`FairQueue`);
- **latency**: a fixed processing time per request (applied by the fleet on the way in).

Leaves out: per-key (as opposed to per-tenant) limits, distributed/approximate rate-limit state,
``Retry-After`` hints, request body parsing cost that depends on size.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable

from simulator.cluster.request import Attempt, Stage
from simulator.cluster.spec import GatewayConfig, TenantPolicy
from simulator.engine.request import Request
from simulator.metrics import names

DAY_S = 86_400.0


def validate(req: Request, max_model_len: int) -> str | None:
    """Reason to reject the request (an HTTP status with a short reason), or None to accept."""
    if req.prompt_len + req.max_tokens > max_model_len:
        return names.R_INVALID
    return None


class TokenBucket:
    """Refills at ``per_min``/60 per second up to one minute's worth; may go negative when a
    reconciliation charges more than was estimated."""

    __slots__ = ("cap", "level", "rate", "t")

    def __init__(self, per_min: float, now: float) -> None:
        self.rate = per_min / 60.0
        self.cap = per_min
        self.level = per_min
        self.t = now

    def refill(self, now: float) -> None:
        if now > self.t:
            self.level = min(self.cap, self.level + (now - self.t) * self.rate)
            self.t = now

    def has(self, n: float, now: float) -> bool:
        self.refill(now)
        return self.level >= n

    def take(self, n: float) -> None:
        self.level -= n

    def give(self, n: float) -> None:
        self.level = min(self.cap, self.level + n)


class TenantState:
    """The gateway's counters for one tenant."""

    __slots__ = ("day", "day_used", "policy", "requests", "tokens")

    def __init__(self, policy: TenantPolicy, now: float) -> None:
        self.policy = policy
        self.requests = TokenBucket(policy.requests_per_min, now) if policy.requests_per_min else None
        self.tokens = TokenBucket(policy.tokens_per_min, now) if policy.tokens_per_min else None
        self.day = 0
        self.day_used = 0


class Gateway:
    """Admission decisions for attempts; the fleet calls :meth:`admit` and :meth:`settle`."""

    def __init__(self, cfg: GatewayConfig, fleet_waiting: Callable[[], int]) -> None:
        self.cfg = cfg
        self.fleet_waiting = fleet_waiting
        self.tenants: dict[str, TenantState] = {}
        self._priority: dict[str, int | None] = {}
        """Tenant → its policy's priority (None: the request's own)."""
        self.checks_limits = any(p.requests_per_min or p.tokens_per_min or p.daily_tokens
                                 for p in [cfg.default_tenant, *cfg.tenants.values()])
        # NOTE: read per request, kept as typed fields (a frozen pydantic model's attribute is a
        # generic lookup from compiled code).
        self._auth: bool = cfg.auth
        self._shed_at: int | None = cfg.shed_when_waiting

    def resolve_tenant(self, claimed: str, api_key: str | None) -> str | None:
        """The tenant a request counts against, or None for 401."""
        if not self._auth:
            return claimed
        if api_key is None:
            return None
        return self.cfg.api_keys.get(api_key)

    def priority(self, tenant: str, requested: int) -> int:
        try:
            p = self._priority[tenant]  # NOTE: a tenant's policy is fixed for the run
        except KeyError:
            p = self._priority[tenant] = self.cfg.policy(tenant).priority
        return requested if p is None else p

    def _state(self, tenant: str, now: float) -> TenantState:
        st = self.tenants.get(tenant)
        if st is None:
            st = self.tenants[tenant] = TenantState(self.cfg.policy(tenant), now)
        return st

    def admit(self, att: Attempt, now: float) -> str | None:
        """Rate limits, quota, shedding (after auth and validation). Charges the tenant's buckets
        when it admits; returns the 429 reason when it does not."""
        cfg = self.cfg
        if self.checks_limits:
            st = self._state(att.tenant, now)
            pol = st.policy
            est = att.req.prompt_len + cfg.output_estimate_tokens
            if st.requests is not None and not st.requests.has(1, now):
                return names.R_RATE_REQUESTS
            if st.tokens is not None and not st.tokens.has(est, now):
                return names.R_RATE_TOKENS
            if pol.daily_tokens is not None:
                day = int(now // DAY_S)
                if day != st.day:
                    st.day, st.day_used = day, 0
                if st.day_used + est > pol.daily_tokens:
                    return names.R_QUOTA
            if cfg.shed_when_waiting is not None and self._shed(att):
                return names.R_SHED
            if st.requests is not None:
                st.requests.take(1)
            if st.tokens is not None:
                st.tokens.take(est)
            if pol.daily_tokens is not None:
                st.day_used += est
            att.charged_tokens = est
            return None
        if self._shed_at is not None and self._shed(att):
            return names.R_SHED
        return None

    def _shed(self, att: Attempt) -> bool:
        cfg = self.cfg
        exempt = cfg.shed_exempt_priority
        if exempt is not None and att.req.priority <= exempt:
            return False
        assert cfg.shed_when_waiting is not None
        return self.fleet_waiting() >= cfg.shed_when_waiting

    def settle(self, att: Attempt, now: float) -> None:
        """Reconcile the up-front charge with what the attempt actually used."""
        if not att.charged_tokens:
            return
        req = att.req
        used = (req.prompt_len if req.scheduled_time >= 0 else 0) + req.num_output_tokens
        delta = att.charged_tokens - used
        att.charged_tokens = 0
        st = self.tenants[att.tenant]
        if st.tokens is not None:
            st.tokens.refill(now)
            if delta >= 0:
                st.tokens.give(delta)
            else:
                st.tokens.take(-delta)
        if st.policy.daily_tokens is not None and int(now // DAY_S) == st.day:
            st.day_used -= delta


class FairQueue:
    """Requests held at the router, by priority class, then FCFS or weighted fair (VTC).

    VTC (virtual token counter, Sheng et al., "Fairness in Serving Large Language Models", OSDI '24):
    each tenant has a counter of the service it received — prompt tokens × ``w_in`` when a request
    is sent to a replica, output tokens × ``w_out`` when it is served — divided by its weight; the next
    request comes from the backlogged tenant with the smallest counter. A tenant that becomes
    backlogged after being idle is lifted to the smallest counter of the backlogged tenants, so idle
    time banks no credit. Cancelled entries (client timeouts) are dropped lazily.
    """

    def __init__(self, policy: str, weight: Callable[[str], float], w_in: float = 1.0,
                 w_out: float = 2.0) -> None:
        self.vtc = policy == "vtc"
        self.weight = weight
        self.w_in, self.w_out = w_in, w_out
        self._n = 0
        self._seq = itertools.count()
        self._front = itertools.count(1)
        self._heap: list[tuple[int, int, Attempt]] = []
        self._by: dict[int, dict[str, deque[Attempt]]] = {}
        self.counter: dict[str, float] = {}
        self.max_len = 0

    def __len__(self) -> int:
        return self._n

    def push(self, att: Attempt) -> None:
        self._n += 1
        self.max_len = max(self.max_len, self._n)
        if not self.vtc:
            heapq.heappush(self._heap, (att.req.priority, next(self._seq), att))
            return
        t = att.tenant
        if not self._backlogged(t):
            backlog = [self.counter.get(u, 0.0) for by in self._by.values()
                       for u, q in by.items() if q and u != t]
            if backlog:
                self.counter[t] = max(self.counter.get(t, 0.0), min(backlog))
        self._by.setdefault(att.req.priority, {}).setdefault(t, deque()).append(att)

    def _backlogged(self, tenant: str) -> bool:
        return any(by.get(tenant) for by in self._by.values())

    def discard(self, att: Attempt) -> None:
        """A queued attempt left (client timeout): forget it (lazily)."""
        self._n -= 1

    def pop(self) -> Attempt | None:
        """The next attempt to dispatch (None if empty)."""
        if not self.vtc:
            while self._heap:
                att = heapq.heappop(self._heap)[2]
                if att.stage == Stage.QUEUED:
                    self._n -= 1
                    return att
            return None
        for prio in sorted(self._by):
            by = self._by[prio]
            for q in by.values():
                while q and q[0].stage != Stage.QUEUED:
                    q.popleft()
            live = [t for t, q in by.items() if q]
            if not live:
                continue
            t = min(live, key=lambda u: (self.counter.get(u, 0.0), u))
            self._n -= 1
            return by[t].popleft()
        return None

    def push_front(self, att: Attempt) -> None:
        """Put back an attempt that could not be placed after all (keeps its turn)."""
        self._n += 1
        if not self.vtc:
            heapq.heappush(self._heap, (att.req.priority, -next(self._front), att))
            return
        self._by.setdefault(att.req.priority, {}).setdefault(att.tenant, deque()).appendleft(att)

    def dispatched(self, tenant: str, prompt_tokens: int) -> None:
        """Charge a tenant's prompt tokens when one of its requests reaches a replica (VTC)."""
        if self.vtc:
            self.counter[tenant] = self.counter.get(tenant, 0.0) + \
                prompt_tokens * self.w_in / self.weight(tenant)

    def served(self, tenant: str, output_tokens: int) -> None:
        """Charge a tenant's output tokens when one of its requests has been served (VTC)."""
        if self.vtc and output_tokens:
            self.counter[tenant] = self.counter.get(tenant, 0.0) + \
                output_tokens * self.w_out / self.weight(tenant)

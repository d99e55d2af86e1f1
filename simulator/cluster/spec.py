"""Scenario models of the serving path around the replicas: fleet (pools, regions, router,
disaggregation), gateway (auth, limits, shedding, fairness), clients (timeouts, retries) and faults.

What this models: the knobs of the fleet a planner turns — which pools of which model on which GPU
sit in which region and zone, how the router picks a replica and what it does when every replica is
busy, what the API gateway lets through, how clients give up and retry, and what breaks when. The
defaults reproduce the minimal fleet of the core issue exactly: one pool, least-outstanding routing,
no gateway latency, no limits, no timeouts, no retries, no faults.

Every model is strict (unknown fields are errors) and frozen. Cross-checks that only need this part
of the tree live in validators here; checks against the hardware profiles or the workload are made
when the fleet is built (:mod:`simulator.run`). ``simulator.config`` re-exports these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.profiles import KvDtype, Strict, WeightDtype

RouterKind = Literal["round_robin", "random", "power_of_two", "least_outstanding", "least_kv",
                     "prefix_affinity"]
RetryOn = Literal[429, 502, 503, "timeout"]
_RETRY_ON_DEFAULT: tuple[RetryOn, ...] = (429, 502, 503, "timeout")

# --------------------------------------------------------------------------------------------
# Router
# --------------------------------------------------------------------------------------------


class OutputCapConfig(Strict):
    """Cap ``max_tokens`` of new requests while their replica group is loaded (graceful degradation:
    shorter answers instead of longer queues)."""

    when_waiting_per_replica: float = Field(ge=0)
    """Apply the cap when the group's scraped ``num_requests_waiting`` per routable replica is at
    least this."""
    max_tokens: int = Field(ge=1)
    """The cap on output tokens (a request that would generate more is cut there)."""


class RouterConfig(Strict):
    """How the fleet's front end picks a replica for each request."""

    kind: RouterKind = "least_outstanding"
    """Policy (:data:`simulator.cluster.router.ROUTERS`): ``round_robin`` cycles; ``random`` picks
    uniformly; ``power_of_two`` samples two and takes the one with fewer outstanding requests;
    ``least_outstanding`` takes the fewest requests in flight (ties to the lowest index) as counted by
    the router itself; ``least_kv`` takes the lowest scraped ``kv_cache_usage_perc``;
    ``prefix_affinity`` consistent-hashes the request's leading shared prefix blocks onto a ring of
    replicas and walks the ring past replicas over the load bound."""
    metrics_staleness_s: float = Field(default=0.5, ge=0)
    """Period at which the router scrapes the replicas' gauges (``num_requests_waiting``,
    ``kv_cache_usage_perc``): everything gauge-based (``least_kv``, shedding, spill-over, fallback,
    output cap) sees values up to this old. 0 = read live (an oracle, for comparison). Outstanding
    counts are the router's own and always exact."""
    prefix_blocks: int = Field(default=4, ge=1)
    """``prefix_affinity``: how many leading shared prefix blocks form the hash key. Small enough
    that a conversation's first turn already has them (later turns then share its key)."""
    prefix_skip_blocks: int | Literal["auto"] = "auto"
    """``prefix_affinity``: leading blocks left out of the key. ``auto``: the blocks every request
    routed so far has shared (a system prompt common to all, e.g. Mooncake's first 512-token
    block), learned as the running longest common prefix; a number: exactly that many (e.g. one
    system prompt shared by most but not all requests: its tokens / ``block_size``; 0: none)."""

    @field_validator("prefix_skip_blocks")
    @classmethod
    def _skip(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("prefix_skip_blocks must be >= 0 or 'auto'")
        return v
    load_bound: float = Field(default=1.25, ge=1.0)
    """``prefix_affinity``: a replica takes a request only while its outstanding count is below
    ``load_bound`` × (mean outstanding + 1) — consistent hashing with bounded loads."""
    virtual_nodes: int = Field(default=64, ge=1)
    """``prefix_affinity``: points per replica on the hash ring."""
    max_outstanding_per_replica: int | None = Field(default=None, ge=1)
    """A replica with this many requests outstanding is *saturated* and gets no more (None = never
    saturated). What happens when all are saturated is ``when_saturated``."""
    when_saturated: Literal["queue", "shed"] = "queue"
    """``queue``: hold the request at the router until a replica has room (ordered by
    ``gateway.fairness`` and priority class); ``shed``: answer 429 at once."""
    max_queue: int | None = Field(default=None, ge=0)
    """Most requests the router holds (per replica group) before answering 429 (None = unbounded)."""
    output_cap: OutputCapConfig | None = None
    """Cap output length under load (None = never)."""
    eject_after_failures: int | None = Field(default=5, ge=1)
    """Circuit breaking (outlier ejection): after this many consecutive 5xx failures from a replica,
    the router stops sending to it for ``ejection_s`` (None = never eject)."""
    ejection_s: float = Field(default=30.0, gt=0)
    """How long an ejected replica gets no traffic (less if the health checks find it healthy again
    meanwhile)."""


# --------------------------------------------------------------------------------------------
# Topology: pools, regions, disaggregation
# --------------------------------------------------------------------------------------------


class PoolPricing(Strict):
    """How one pool's GPUs are paid for, when it differs from the scenario's ``cost`` (a spot pool
    next to an on-demand one; reserved capacity with a commitment)."""

    kind: Literal["on_demand", "spot", "reserved"] | None = None
    """Which quote of the GPU profile applies (default ``cost.pricing``)."""
    provider: str | None = None
    """Pick the first quote of ``kind`` whose provider contains this text (default
    ``cost.provider``)."""
    usd_per_gpu_hour: float | None = Field(default=None, gt=0)
    """This pool's price per GPU-hour (wins over the profile's quotes and over
    ``cost.usd_per_gpu_hour``)."""
    committed_gpus: int | None = Field(default=None, ge=0)
    """``kind: reserved`` only: GPUs committed to (a reservation or committed-use discount) —
    paid at the reserved price for the whole run whether held or not; GPUs held above the
    commitment are paid at ``overflow_usd_per_gpu_hour`` (default: the profile's on-demand quote),
    prorated per second. None: every held GPU at the reserved price, nothing above."""
    overflow_usd_per_gpu_hour: float | None = Field(default=None, gt=0)
    """Price of GPUs held above ``committed_gpus`` (default: the GPU's on-demand quote)."""

    @model_validator(mode="after")
    def _check(self) -> PoolPricing:
        if self.committed_gpus is not None and self.kind != "reserved":
            raise ValueError("pricing.committed_gpus is a reservation: set pricing.kind: reserved "
                             "(or remove committed_gpus)")
        if self.overflow_usd_per_gpu_hour is not None and self.committed_gpus is None:
            raise ValueError("pricing.overflow_usd_per_gpu_hour prices GPUs above a commitment: "
                             "set pricing.committed_gpus too")
        return self


class PoolConfig(Strict):
    """A group of identical replicas of one model, in one region and zone, with one role."""

    name: str = Field(min_length=1, max_length=100)
    """Pool name (unique), used by routes, faults and results (``pool`` column)."""
    model: str | None = None
    """Model profile; default: the scenario's ``model.name``."""
    weight_dtype: WeightDtype | None = None
    """Weight format; default: the scenario's ``model.weight_dtype`` when the model is the same,
    else the model's native format."""
    kv_cache_dtype: Literal["auto"] | KvDtype | None = None
    """KV-cache format; default: the scenario's ``model.kv_cache_dtype``."""
    served_model: str | None = None
    """The model name clients ask for (routes and fallbacks refer to it); default: the model name.
    Pools with the same served model form one routing target (e.g. one per region)."""
    gpu: str | None = None
    """GPU profile; default ``fleet.gpu``."""
    tp: int | None = Field(default=None, ge=1, le=64)
    """Tensor-parallel size; default ``fleet.tp``."""
    replicas: int = Field(default=1, ge=1, le=100_000)
    """Replicas in the pool."""
    role: Literal["mixed", "prefill", "decode"] = "mixed"
    """``mixed``: an ordinary vLLM replica; ``prefill`` / ``decode``: disaggregated serving — a
    prefill pool computes prompts and hands the KV cache to its ``decode_pool``."""
    decode_pool: str | None = None
    """Prefill pools only: the decode pool that continues their requests."""
    region: str = "default"
    """Region the pool runs in (see ``fleet.regions``)."""
    zone: str = "a"
    """Availability zone (a ``zone_loss`` fault takes down every pool in it)."""
    engine: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the scenario's ``engine`` fields for this pool (``vllm serve`` names)."""
    tenants: list[str] | None = None
    """Dedicated pool: only these tenants are routed here (None = any tenant)."""
    pin: dict[str, list[int]] = Field(default_factory=dict)
    """Tenant (LoRA) pinning: tenant → indices of the replicas of this pool that hold its adapter;
    that tenant's requests go only to those replicas (other tenants are unaffected)."""
    pricing: PoolPricing | None = None
    """This pool's prices (default: the scenario's ``cost``)."""
    weight: float = Field(default=1.0, gt=0)
    """Routing weight: the relative capacity of one of its replicas next to the other pools of
    the same model (e.g. 1.6 for an H200 pool beside H100 pools). The load-aware policies
    (``least_outstanding``, ``power_of_two``) then pick the largest weight / (outstanding + 1)
    (Envoy's weighted least-request) instead of the fewest outstanding. All 1: unweighted."""

    @model_validator(mode="after")
    def _check(self) -> PoolConfig:
        if self.role == "prefill" and not self.decode_pool:
            raise ValueError(f"pool {self.name!r} has role prefill but no decode_pool; name the "
                             f"decode pool that continues its requests")
        if self.role != "prefill" and self.decode_pool:
            raise ValueError(f"pool {self.name!r}: decode_pool is only read for role prefill")
        for tenant, idx in self.pin.items():
            bad = [i for i in idx if not 0 <= i < self.replicas]
            if bad or not idx:
                raise ValueError(f"pool {self.name!r}: pin[{tenant!r}] must list replica indices "
                                 f"in 0..{self.replicas - 1} (got {idx})")
        return self


class RegionConfig(Strict):
    """Where clients are and how far they are from the fleet."""

    name: str
    """Region name (pools name it in ``region``)."""
    client_share: float = Field(default=1.0, ge=0)
    """Relative share of requests whose clients are in this region."""
    client_rtt_s: float = Field(default=0.0, ge=0)
    """Round trip between a client in this region and the region's gateway (half on the way in,
    half on the way back)."""


class DegradeConfig(Strict):
    """Graceful degradation: send a served model's requests to a smaller one when it is overloaded."""

    primary: str
    """Served model that may be overloaded."""
    fallback: str
    """Served model that takes its requests then."""
    when_waiting_per_replica: float = Field(default=4.0, ge=0)
    """Fall back when every replica group of the primary has at least this many scraped waiting
    requests per routable replica, or is saturated, or has no routable replica."""


class KvTransferConfig(Strict):
    """The link that carries a request's KV cache from its prefill replica to its decode replica."""

    bandwidth_gb_s: float = Field(default=50.0, gt=0)
    """Link bandwidth in GB/s shared equally by the transfers on it at once. 50 GB/s = one 400 Gbps
    RDMA NIC (ConnectX-7/EFA); Mooncake measured 87 GB/s on 4×200 Gbps and up to 190 GB/s on
    8×400 Gbps RoCE; NVLink within a node 900 GB/s (H100/H200); naive TCP < 1 GB/s (FACTS.md)."""
    latency_s: float = Field(default=0.0005, ge=0)
    """Fixed cost per transfer (connection/metadata handshake and propagation)."""
    shared: Literal["prefill_replica", "fleet"] = "prefill_replica"
    """``prefill_replica``: each prefill replica has its own link (its NICs); ``fleet``: one link for
    all transfers (a shared fabric bottleneck)."""


class HealthConfig(Strict):
    """Active health checks of the replicas (Kubernetes readiness / Envoy health checking)."""

    interval_s: float = Field(default=5.0, gt=0)
    """Probe period."""
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive failed probes before the router stops routing to a replica (detection delay ≈
    interval × threshold)."""
    success_threshold: int = Field(default=1, ge=1)
    """Consecutive good probes before a recovered replica gets traffic again."""


class FleetConfig(Strict):
    """The replicas serving the model(s), and the router in front of them."""

    gpu: str = "H100-SXM"
    """GPU profile name (default for every pool)."""
    tp: int = Field(default=1, ge=1, le=64)
    """Tensor-parallel size: GPUs per replica (default for every pool)."""
    replicas: int = Field(default=1, ge=1, le=100_000)
    """Number of identical replicas (single-pool fleets; with ``pools`` set replicas per pool)."""
    router: RouterConfig = RouterConfig()
    """Routing policy."""
    pools: list[PoolConfig] = Field(default_factory=list)
    """Several pools (models, regions, prefill/decode roles). Empty: one pool named ``default`` of
    ``replicas`` × (``model``, ``gpu``, ``tp``, ``engine``)."""
    routes: dict[str, str] = Field(default_factory=dict)
    """Tenant → served model. Tenants not listed go to the first pool's served model."""
    degrade: list[DegradeConfig] = Field(default_factory=list)
    """Fallbacks to a smaller model under overload."""
    regions: list[RegionConfig] = Field(default_factory=list)
    """Client regions (empty: one region ``default`` with no network latency)."""
    inter_region_rtt_s: float = Field(default=0.08, ge=0)
    """Round trip between two regions, paid by a request served outside its client's region."""
    region_aware: bool = True
    """Route to the client's region first and spill over to other regions only when its pools are
    unavailable, saturated or over ``spill_when_waiting_per_replica``; false: one replica group
    across regions (the policy alone decides, ignoring distance). Within a region every pool of
    the served model takes traffic (see ``pool_preference``)."""
    pool_preference: Literal["none", "order"] = "none"
    """How pools of one served model in one region share requests. ``none``: every ready replica
    of the model in the region is a candidate and the router policy balances them by load (what a
    Kubernetes Service, the Gateway API inference extension, the vLLM production-stack router and
    llm-d do). ``order``: the pools are tried in the order listed, the next one only when every
    replica of the previous is saturated (``router.max_outstanding_per_replica``), unavailable or
    over ``spill_when_waiting_per_replica`` — fill reserved capacity first, then spill to spot or
    on-demand. NOTE: without a saturation limit or spill threshold, ``order`` sends everything to
    the first pool while it is up."""
    spill_when_waiting_per_replica: float | None = Field(default=None, ge=0)
    """Region spill-over threshold on scraped waiting requests per routable replica (None: spill
    only when the local pools are saturated or down)."""
    kv_transfer: KvTransferConfig = KvTransferConfig()
    """Prefill → decode KV-cache link (disaggregated pools only)."""
    aggregate: bool = False
    """Run the same GPUs aggregated: every prefill pool and its decode pool are merged into one mixed
    pool with their replicas summed (same GPU count), for a like-for-like comparison."""

    @model_validator(mode="after")
    def _check(self) -> FleetConfig:
        # NOTE: replicas == 1 is the default a dumped scenario carries: only another value clashes.
        if self.pools and self.replicas != 1:
            raise ValueError("fleet.replicas is for single-pool fleets; with fleet.pools set the "
                             "replicas of each pool instead")
        names = [p.name for p in self.pools]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"pool names must be unique; repeated: {dup}")
        by_name = {p.name: p for p in self.pools}
        decode_users: dict[str, str] = {}
        for p in self.pools:
            if p.decode_pool is not None:
                d = by_name.get(p.decode_pool)
                if d is None or d.role != "decode":
                    raise ValueError(f"pool {p.name!r}: decode_pool {p.decode_pool!r} must name a "
                                     f"pool with role decode; pools: {names}")
                decode_users[d.name] = p.name
        orphans = [p.name for p in self.pools if p.role == "decode" and p.name not in decode_users]
        if orphans:
            raise ValueError(f"decode pool(s) {orphans} are not the decode_pool of any prefill pool")
        if self.pools and all(p.role == "decode" for p in self.pools):
            raise ValueError("at least one pool must take requests (role mixed or prefill)")
        if self.regions:
            rnames = [r.name for r in self.regions]
            if len(set(rnames)) != len(rnames):
                raise ValueError(f"region names must be unique: {rnames}")
            unknown = sorted({p.region for p in self.pools} - set(rnames))
            if unknown or (not self.pools and "default" not in rnames):
                raise ValueError(f"pool region(s) {unknown or ['default']} not among fleet.regions "
                                 f"{rnames}; add them or set each pool's region")
            if sum(r.client_share for r in self.regions) <= 0:
                raise ValueError("fleet.regions: at least one region needs client_share > 0")
        return self


# --------------------------------------------------------------------------------------------
# Gateway
# --------------------------------------------------------------------------------------------


class TenantPolicy(Strict):
    """What the gateway allows one tenant."""

    requests_per_min: float | None = Field(default=None, gt=0)
    """Token bucket on requests: refills at this rate, holds one minute's worth (429 when empty)."""
    tokens_per_min: float | None = Field(default=None, gt=0)
    """Token bucket on tokens (prompt + ``gateway.output_estimate_tokens`` charged up front,
    reconciled with the actual usage when the request ends; holds one minute's worth)."""
    daily_tokens: int | None = Field(default=None, ge=1)
    """Quota of tokens per simulated day (reset every 86,400 s; 429 once spent)."""
    pricing: PoolPricing | None = None
    """This pool's prices (default: the scenario's ``cost``)."""
    weight: float = Field(default=1.0, gt=0)
    """Share in weighted fair queueing (``gateway.fairness: vtc``)."""
    priority: int | None = None
    """Priority class (lower = more important; sets the request's priority for the router queue and
    for ``engine.scheduling_policy: priority``). None = the workload's priority."""


class GatewayConfig(Strict):
    """The API front door: who may call, how much, and when to say no."""

    latency_s: float = Field(default=0.0, ge=0)
    """Time the gateway adds to every request on its way in (auth, parsing, policy)."""
    auth: bool = False
    """Require an API key: a request's ``api_key`` must be in ``api_keys`` (else 401); the key, not
    the client's claim, decides the tenant. False: the workload's tenant label is trusted."""
    api_keys: dict[str, str] = Field(default_factory=dict)
    """Key store: API key → tenant name."""
    tenants: dict[str, TenantPolicy] = Field(default_factory=dict)
    """Per-tenant policy by tenant name (tenants are declared in the workload)."""
    default_tenant: TenantPolicy = TenantPolicy()
    """Policy of tenants not listed in ``tenants``."""
    output_estimate_tokens: int = Field(default=256, ge=0)
    """Output tokens charged up front against token limits and quotas (as a gateway charges
    ``max_tokens`` or a default); the difference to the actual output is settled at the end."""
    shed_when_waiting: int | None = Field(default=None, ge=0)
    """Global load shedding: answer 429 when the fleet's waiting requests (scraped
    ``num_requests_waiting`` summed over replicas, plus the router's queues) reach this."""
    shed_exempt_priority: int | None = None
    """Requests whose priority class is at most this are never shed (None = all may be shed)."""
    fairness: Literal["fcfs", "vtc"] = "fcfs"
    """Order of requests held at the router when replicas are saturated: ``fcfs`` (by priority
    class, then arrival) or ``vtc`` (by priority class, then the tenant with the smallest virtual
    token counter per weight — weighted fair sharing after Sheng et al., OSDI '24)."""
    vtc_input_weight: float = Field(default=1.0, ge=0)
    """``vtc``: service charged per prompt token."""
    vtc_output_weight: float = Field(default=2.0, ge=0)
    """``vtc``: service charged per output token."""

    def policy(self, tenant: str) -> TenantPolicy:
        return self.tenants.get(tenant, self.default_tenant)


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


class ImmediateRetry(Strict):
    """Retry at once (what naive clients do; the recipe for a retry storm)."""

    kind: Literal["immediate"] = "immediate"


class ExponentialBackoff(Strict):
    """Wait base × multiplier^(k−1), capped, with jitter, before retry k."""

    kind: Literal["exponential"] = "exponential"
    base_s: float = Field(default=0.5, ge=0)
    """Wait before the first retry (before jitter)."""
    multiplier: float = Field(default=2.0, ge=1)
    """Growth per retry."""
    max_s: float = Field(default=30.0, ge=0)
    """Cap on the wait."""
    jitter: Literal["full", "equal", "none"] = "full"
    """``full``: uniform in [0, wait]; ``equal``: wait/2 + uniform in [0, wait/2]; ``none``."""


Backoff = Annotated[ImmediateRetry | ExponentialBackoff, Field(discriminator="kind")]


class RetryBudget(Strict):
    """Cap retries to a fraction of requests (Finagle/Envoy-style retry budget, shared by all
    clients): each new request deposits ``ratio`` tokens, each retry spends one; ``min_per_s``
    tokens trickle in per second; at most ``burst`` tokens are banked."""

    ratio: float = Field(default=0.2, ge=0)
    """Retries allowed per original request, on average."""
    min_per_s: float = Field(default=1.0, ge=0)
    """Retries per second allowed whatever the request rate."""
    burst: float = Field(default=10.0, ge=1)
    """Most tokens banked (and the starting balance)."""


class RetryConfig(Strict):
    """When and how a client tries again."""

    max_attempts: int = Field(default=1, ge=1)
    """Attempts per request including the first (1 = no retries)."""
    on_errors: list[RetryOn] = Field(default_factory=lambda: list(_RETRY_ON_DEFAULT))
    """Which failures are retried: HTTP 429 (rate limited / shed), 502 (replica failed), 503 (no
    healthy replica), ``timeout`` (the client's own). 400 and 401 are never retried."""
    backoff: Backoff = ExponentialBackoff()
    """Wait before each retry."""
    budget: RetryBudget | None = None
    """Retry budget (None = unlimited)."""


class ClientConfig(Strict):
    """What the clients do when the service is slow or fails."""

    timeout_s: float | None = Field(default=None, gt=0)
    """Per attempt: give up when the whole response has not arrived after this long; the server
    aborts the request and frees its KV blocks (None = wait forever)."""
    first_token_timeout_s: float | None = Field(default=None, gt=0)
    """Per attempt: give up when no token has arrived after this long (None = no limit)."""
    retry: RetryConfig = RetryConfig()
    """Retries."""

    @property
    def is_trivial(self) -> bool:
        """No timeout and no retries: requests need no client process."""
        return (self.timeout_s is None and self.first_token_timeout_s is None
                and self.retry.max_attempts == 1)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


class CrashFault(Strict):
    """A replica dies at a given time (process crash, GPU Xid, node failure)."""

    kind: Literal["crash"] = "crash"
    at_s: float = Field(ge=0)
    """When."""
    pool: str | None = None
    """Pool of the replica (default: the first pool)."""
    replica: int = Field(default=0, ge=0)
    """Index of the replica within the pool."""
    recover_after_s: float | None = Field(default=None, ge=0)
    """Back (empty caches) after this long; None = never."""


class SpotPreemption(Strict):
    """A spot/preemptible instance is reclaimed: a notice, then the replica dies."""

    kind: Literal["spot_preemption"] = "spot_preemption"
    at_s: float = Field(ge=0)
    """When the notice arrives."""
    pool: str | None = None
    """Pool of the replica (default: the first pool)."""
    replica: int = Field(default=0, ge=0)
    """Index of the replica within the pool."""
    notice_s: float = Field(default=30.0, ge=0)
    """Notice before the instance is gone (GCP 30 s, AWS 120 s)."""
    replace_after_s: float | None = Field(default=None, ge=0)
    """A replacement serves this long after the instance is gone; None = never."""


class ZoneLoss(Strict):
    """Every replica of every pool in an availability zone dies at once."""

    kind: Literal["zone_loss"] = "zone_loss"
    at_s: float = Field(ge=0)
    """When."""
    zone: str
    """The zone (pools' ``zone``)."""
    duration_s: float | None = Field(default=None, ge=0)
    """The zone is back after this long; None = never."""


Fault = Annotated[CrashFault | SpotPreemption | ZoneLoss, Field(discriminator="kind")]


class MtbfConfig(Strict):
    """Random crashes: each replica fails after exponential times with this mean."""

    mean_s: float = Field(gt=0)
    """Mean time between failures of one replica."""
    repair_s: float | None = Field(default=300.0, ge=0)
    """Time until the replica is back; None = never."""
    pools: list[str] | None = None
    """Only these pools (None = all)."""


class FaultsConfig(Strict):
    """What breaks, and how the fleet notices."""

    events: list[Fault] = Field(default_factory=list)
    """Scheduled faults."""
    mtbf: MtbfConfig | None = None
    """Random crashes."""
    health: HealthConfig = HealthConfig()
    """Health checking (runs only when something can fail)."""
    drain_on_notice: bool = True
    """On a spot notice, stop routing new requests to the replica (in-flight ones continue)."""

    @property
    def any(self) -> bool:
        return bool(self.events) or self.mtbf is not None


# Priors of vLLM's API server (simulator.cluster.frontend models it).
TOKENIZE_S_PER_TOKEN = 2.7e-6
"""HF ``tokenizers`` 0.23.3 byte-level BPE (100k–128k vocabulary) encoding 128–16k-token prompts
on one core of this project's 2-core development machine (``scripts/measure_frontend.py``, three
runs on 2026-12-07): medians 2.7, 2.0 and 5.1 µs per token, the last with both cores busy; the
first run is kept."""
DETOKENIZE_S_PER_TOKEN = 1.3e-6
"""The same tokenizer's incremental ``DecodeStream.step`` (what vLLM v1's fast incremental
detokenizer calls per new token): 0.6–1.5 µs per token over the same runs
(``scripts/measure_frontend.py``)."""
OUTPUT_S_PER_REQUEST = 20e-6
"""Per request per step in the API server: detokenising the new token plus building the
``RequestOutput``, the SSE chunk's JSON and the socket write (prior: 1.3 µs measured for the
detokenisation, the Python-level rest taken as ~19 µs; not isolated by any data here)."""
REQUEST_S = 0.5e-3
"""Per request before tokenisation: HTTP parsing, request validation, chat-template rendering,
sampling parameters and the ``EngineCoreRequest`` sent over ZMQ (prior, not isolated by any data
here)."""


class APIServerConfig(Strict):
    """The API server in front of each replica's engine core (``vllm serve``'s front end)."""

    enabled: bool = True
    """Model the front end. Off: requests reach the engine core and tokens reach the client
    instantly (what vLLM's offline ``LLM`` class does — benchmark_throughput / benchmark_latency
    runs have no API server)."""
    api_server_count: int = Field(default=1, ge=1, le=256)
    """``--api-server-count``: API server processes; requests are spread over them round robin
    and each has its own tokenizer thread and output loop."""
    request_s: float = Field(default=REQUEST_S, ge=0, le=10)
    """CPU seconds per request before tokenisation (:data:`REQUEST_S`)."""
    tokenize_s_per_token: float = Field(default=TOKENIZE_S_PER_TOKEN, ge=0, le=1)
    """CPU seconds per prompt token to tokenise (:data:`TOKENIZE_S_PER_TOKEN`)."""
    output_s: float = Field(default=OUTPUT_S_PER_REQUEST, ge=0, le=1)
    """CPU seconds per request per step to detokenise and stream its new token (see
    :data:`OUTPUT_S_PER_REQUEST`)."""

"""Scenario models of autoscaling and cold starts: the ``autoscaling:`` and ``provisioning:``
sections of a scenario.

What this models: the knobs a planner turns to make a fleet follow its traffic —

- ``autoscaling``: how the autoscaler sees the replicas (a Prometheus-style scrape every
  ``scrape_interval_s``, averaged over ``window_s``: it acts on stale data, as in production), and per
  pool the signals it scales on (Kubernetes HPA ``Pods`` metrics, a KEDA-style queue scaler with
  scale-to-zero, a pre-warming time table, a forecast from the recent arrival rate), the replica
  bounds and the HPA ``behavior`` (stabilization windows, rate policies; field names as in
  ``autoscaling/v2`` so a planner can paste their own), and an optional warm pool of sleeping
  replicas (vLLM sleep mode);
- ``provisioning``: what a new replica goes through before it takes traffic (node acquisition from a
  capacity-limited pool, image pull, weight fetch from shared storage, load into GPU memory,
  torch.compile, CUDA-graph capture, warm-up, readiness probe) and how scale-down drains it. Every
  duration has a default for the model's size class (``8b`` or ``70b``) from published figures
  (/work/shared/FACTS.md, cited next to each), and every one can be overridden.

Both sections are optional: without ``autoscaling`` the fleet is static and runs exactly as before.
Leaves out: the cluster autoscaler's own node-group logic (node scale-down delay, bin-packing across
node shapes), image pre-pulling daemons, pod disruption budgets.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simulator.profiles import Strict

PodsMetric = Literal["num_requests_waiting", "num_requests_running", "kv_cache_usage_perc",
                     "generation_tokens_per_s", "time_to_first_token_p90_s"]
"""Per-replica signals the metrics pipeline exports (vLLM's Prometheus names where one exists;
tokens/s is the rate of ``generation_tokens_total``, TTFT p90 is read from the
``time_to_first_token_seconds`` histogram over the window)."""

# --------------------------------------------------------------------------------------------
# HPA behavior (autoscaling/v2 HorizontalPodAutoscalerBehavior, field names kept)
# --------------------------------------------------------------------------------------------


class HpaPolicy(Strict):
    """One rate policy: at most ``value`` pods (or percent of the replicas at the start of the
    period) added / removed per ``periodSeconds``."""

    type: Literal["Pods", "Percent"]
    """``Pods``: a number of replicas; ``Percent``: a percentage of the period's starting count."""
    value: int = Field(ge=1)
    """How many pods / what percentage."""
    periodSeconds: int = Field(ge=1, le=1800)
    """The window the change is counted over (Kubernetes allows 1..1800)."""


class HpaRules(Strict):
    """``scaleUp`` or ``scaleDown`` rules (HPAScalingRules)."""

    stabilizationWindowSeconds: int | None = Field(default=None, ge=0, le=3600)
    """Use the most conservative recommendation of this window (the lowest for scale-up, the highest
    for scale-down). None: the Kubernetes default (0 up, 300 down)."""
    selectPolicy: Literal["Max", "Min", "Disabled"] = "Max"
    """Which policy wins when several apply: the one allowing the biggest change (Max), the smallest
    (Min), or none (Disabled: never scale in this direction)."""
    policies: list[HpaPolicy] | None = None
    """Rate policies. None: the Kubernetes default (up: 4 Pods or 100 Percent per 15 s, whichever is
    more; down: 100 Percent per 15 s)."""


class HpaBehavior(Strict):
    """HPA ``behavior`` (paste a Deployment's own)."""

    scaleUp: HpaRules = HpaRules()
    """Scale-up rules."""
    scaleDown: HpaRules = HpaRules()
    """Scale-down rules."""


DEFAULT_SCALE_UP = HpaRules(stabilizationWindowSeconds=0, selectPolicy="Max", policies=[
    HpaPolicy(type="Pods", value=4, periodSeconds=15),
    HpaPolicy(type="Percent", value=100, periodSeconds=15)])
"""Kubernetes default scaleUp (kubernetes.io, 'Horizontal Pod Autoscaling', default behavior)."""
DEFAULT_SCALE_DOWN = HpaRules(stabilizationWindowSeconds=300, selectPolicy="Max", policies=[
    HpaPolicy(type="Percent", value=100, periodSeconds=15)])
"""Kubernetes default scaleDown (same source)."""

# --------------------------------------------------------------------------------------------
# Signals (policies): what a pool scales on
# --------------------------------------------------------------------------------------------


class PodsSignal(Strict):
    """HPA ``Pods`` metric with an ``AverageValue`` target: desired = ceil(current × average /
    target), within the HPA's tolerance, with its handling of replicas that report no metrics yet."""

    kind: Literal["pods"] = "pods"
    metric: PodsMetric = "num_requests_waiting"
    """Per-replica signal (as scraped and averaged by the metrics pipeline)."""
    target: float = Field(gt=0)
    """Target average value per replica (``kv_cache_usage_perc`` is a fraction 0..1)."""


class QueueSignal(Strict):
    """KEDA-style queue scaler: desired = ceil(queue / target) (an ``External`` metric with an
    ``AverageValue`` target), activation from zero when the queue exceeds
    ``activation_threshold``, back to zero after ``cooldown_period_s`` of a queue at or below it.
    The queue is the pool's waiting requests plus the requests the router holds for it."""

    kind: Literal["queue"] = "queue"
    target: float = Field(gt=0)
    """Queue length per replica (KEDA ``queueLength`` / ``targetValue``)."""
    metric: Literal["waiting", "in_flight"] = "waiting"
    """What the queue counts: ``waiting`` — requests waiting at the pool's replicas
    (``num_requests_waiting``) plus those the router holds for it; ``in_flight`` — those plus the
    requests running (``num_requests_running``: a KEDA Prometheus scaler on
    ``num_requests_running + num_requests_waiting``). NOTE: on ``waiting`` a replica that keeps up
    has an empty queue, so with ``min_replicas: 0`` the cooldown runs out while traffic arrives
    and the pool scales to zero under it (``autoscaling.scale_to_zero_under_traffic``);
    ``in_flight`` stays active while any request runs."""
    activation_threshold: float = Field(default=0.0, ge=0)
    """The pool is active (≥ 1 replica) while the queue exceeds this (KEDA ``activationValue``)."""
    cooldown_period_s: float = Field(default=300.0, ge=0)
    """Idle time before scaling 1 → 0 (KEDA ``cooldownPeriod``, default 300 s)."""


class ScheduleEntry(Strict):
    """From ``at_s`` on, keep at least ``replicas``."""

    at_s: float = Field(ge=0)
    """Simulated time the entry starts."""
    replicas: int = Field(ge=0)
    """Replica floor from then on."""


class ScheduleSignal(Strict):
    """Scheduled pre-warming: a time table of replica floors, applied ``lead_s`` early so the
    replicas are ready when the traffic comes (a cron-style KEDA scaler)."""

    kind: Literal["schedule"] = "schedule"
    entries: list[ScheduleEntry] = Field(min_length=1)
    """The table (sorted by ``at_s``)."""
    lead_s: float = Field(default=0.0, ge=0)
    """Apply each entry this much before its ``at_s`` (≈ the cold-start time)."""


class ForecastSignal(Strict):
    """Predictive pre-warming: the fleet's request rate over ``history_s``, extrapolated linearly
    ``lookahead_s`` ahead, divided by what one replica serves."""

    kind: Literal["forecast"] = "forecast"
    requests_per_s_per_replica: float = Field(gt=0)
    """Sustainable request rate of one replica (from a static run or ``servesim plan``)."""
    history_s: float = Field(default=120.0, gt=0)
    """How far back the trend is fitted."""
    lookahead_s: float = Field(default=300.0, ge=0)
    """How far ahead it is extrapolated (≈ the cold-start time)."""


Signal = Annotated[PodsSignal | QueueSignal | ScheduleSignal | ForecastSignal,
                   Field(discriminator="kind")]


class WarmPoolConfig(Strict):
    """Replicas kept loaded but asleep (vLLM sleep mode level 1: weights offloaded to CPU memory,
    KV cache freed; the GPUs are held and billed). A scale-up wakes them in seconds; the pool is
    refilled through the cold-start pipeline; scale-down puts replicas back to sleep while it is
    below ``size``."""

    size: int = Field(default=0, ge=0)
    """Sleeping replicas kept (0: no warm pool)."""
    wake_s: float | None = Field(default=None, ge=0)
    """Time to wake one. None: the size-class default (``provisioning``)."""


class PoolAutoscaling(Strict):
    """The autoscaler of one pool."""

    min_replicas: int = Field(default=1, ge=0)
    """Lower bound (HPA ``minReplicas``; 0 only with a ``queue`` signal: KEDA scale-to-zero)."""
    max_replicas: int = Field(default=8, ge=1, le=10_000)
    """Upper bound (HPA ``maxReplicas``)."""
    signals: list[Signal] = Field(min_length=1)
    """What it scales on; with several, the largest proposal wins (as the HPA does with several
    metrics)."""
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    """No change while |metric / target − 1| ≤ tolerance (HPA default 0.1)."""
    sync_period_s: float = Field(default=15.0, gt=0)
    """How often the controller decides (``--horizontal-pod-autoscaler-sync-period``, default 15 s;
    KEDA's ``pollingInterval`` is 30 s)."""
    behavior: HpaBehavior = HpaBehavior()
    """HPA behavior: stabilization windows and rate policies."""
    warm_pool: WarmPoolConfig = WarmPoolConfig()
    """Sleeping replicas that wake in seconds."""

    @model_validator(mode="after")
    def _check(self) -> PoolAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} exceeds max_replicas "
                             f"{self.max_replicas}; raise max_replicas")
        if self.min_replicas == 0 and not any(isinstance(s, QueueSignal) for s in self.signals):
            raise ValueError("min_replicas 0 (scale to zero) needs a 'queue' signal (KEDA "
                             "activation); add one or set min_replicas >= 1")
        return self


class AutoscalingConfig(Strict):
    """Autoscaling (absent: a static fleet)."""

    scrape_interval_s: float = Field(default=15.0, gt=0)
    """Prometheus scrape interval of the replicas' ``/metrics`` (a common default, 15 s)."""
    window_s: float = Field(default=60.0, gt=0)
    """The autoscaler reads each signal averaged over this window (``avg_over_time(…[1m])``, the
    Prometheus adapter's usual query)."""
    pools: dict[str, PoolAutoscaling] = Field(min_length=1)
    """Pool name (``default`` for a single-pool fleet) → its autoscaler; pools not named stay
    static. Per-pool scaling covers prefill and decode pools separately."""
    timeseries_interval_s: float = Field(default=60.0, gt=0)
    """Row spacing of the fleet time series (``Results.extra["fleet_timeseries"]``)."""


# --------------------------------------------------------------------------------------------
# Provisioning (the cold start of one replica)
# --------------------------------------------------------------------------------------------


class ProvisioningConfig(Strict):
    """The cold-start pipeline of a new replica. Every ``None`` takes the default of the model's
    size class (``size_class``; table in :data:`simulator.cluster.provisioning.CLASS_DEFAULTS`)."""

    size_class: Literal["auto", "8b", "70b"] = "auto"
    """Which defaults apply; auto: ``70b`` for models over 20 B parameters, else ``8b``."""
    node_acquire_mean_s: float | None = Field(default=None, ge=0)
    """Mean time to get a GPU node from the cloud (lognormal)."""
    node_acquire_cv: float = Field(default=0.5, ge=0)
    """Coefficient of variation of the acquisition time (0: fixed)."""
    node_capacity: int | None = Field(default=None, ge=0)
    """Most nodes the provider will give the autoscalers at once, beyond the replicas the fleet
    starts with (None: unlimited); above it a request waits (a stock-out) until a node is released
    — and is not billed while waiting."""
    stockout_probability: float = Field(default=0.0, ge=0, le=1)
    """Chance that an acquisition attempt finds no capacity (no node, no bill); retried after
    ``stockout_retry_s``."""
    stockout_retry_s: float = Field(default=60.0, gt=0)
    """Wait before retrying after a stock-out."""
    replicas_per_node: int = Field(default=1, ge=1)
    """Replicas sharing one node (its image and weight cache). 1: each replica rents its own
    ``tp``-GPU machine."""
    image_gb: float | None = Field(default=None, ge=0)
    """Container image size without weights."""
    image_pull_gb_s: float | None = Field(default=None, gt=0)
    """Image pull bandwidth of one node."""
    image_extract_gb_s: float | None = Field(default=None, gt=0)
    """Layer extraction rate."""
    weights_gb: float | None = Field(default=None, ge=0)
    """Checkpoint size; None: from the model profile and weight dtype."""
    storage_gb_s: float | None = Field(default=None, gt=0)
    """Total bandwidth of the shared weight storage, shared by all loads at once."""
    per_load_gb_s: float | None = Field(default=None, gt=0)
    """Cap of one load (its NIC / single stream); None: no cap."""
    weights_cached_on_node: bool = False
    """Weights already on the node's local disk (baked into the image or pre-fetched): no fetch
    from shared storage."""
    cache_weights_on_node: bool = True
    """A node keeps fetched weights on local disk for its next replica."""
    load_s: float | None = Field(default=None, ge=0)
    """Load weights from local disk into GPU memory."""
    compile_s: float | None = Field(default=None, ge=0)
    """torch.compile (cold cache)."""
    cuda_graph_s: float | None = Field(default=None, ge=0)
    """CUDA-graph capture."""
    warmup_s: float | None = Field(default=None, ge=0)
    """Warm-up requests / profiling run before the server reports ready."""
    readiness_delay_s: float | None = Field(default=None, ge=0)
    """From the server being up to the readiness probe passing (probe period)."""
    wake_s: float | None = Field(default=None, ge=0)
    """Wake a sleeping replica (vLLM sleep mode)."""
    drain_timeout_s: float | None = Field(default=600.0, gt=0)
    """Scale-down: in-flight requests get this long to finish before the replica is killed
    (``terminationGracePeriodSeconds``, raised from Kubernetes' 30 s as LLM charts do); None:
    wait for all."""


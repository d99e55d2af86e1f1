"""The scenario tree: one YAML file describes a what-if (model, fleet, engine, workload, metrics).

What this models: the knobs a capacity planner turns — which model in which precision, on which GPU,
with which vLLM engine arguments (named exactly as ``vllm serve`` flags), how many replicas behind
which router, and what traffic arrives. Every model is strict (unknown fields are errors), frozen,
and documented field by field; cross-field checks that need the hardware profiles (does the model
fit?) live in :func:`simulator.run.build` and produce a one-line error saying what to change.

``load_scenario(path, overrides)`` applies ``--set a.b.c=value`` overrides to the raw YAML mapping
and validates the result through the same models, so an override obeys the same rules as the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from simulator.cluster.autoscale_spec import AutoscalingConfig, ProvisioningConfig
from simulator.cluster.spec import (  # noqa: F401  (re-exported: the fleet's models live there)
    ClientConfig,
    FaultsConfig,
    FleetConfig,
    GatewayConfig,
    PoolConfig,
    RouterConfig,
)
from simulator.errors import (
    ConfigError,
    clean_loc,
    format_validation_error,
    read_yaml,
    safe_load,
)
from simulator.plan_spec import CostConfig, SloConfig
from simulator.profiles import Calibration, Strict, WeightDtype, data_root

# --------------------------------------------------------------------------------------------
# Model and hardware
# --------------------------------------------------------------------------------------------


class ModelConfig(Strict):
    """Which model is served and in which precision."""

    name: str = "Llama-3.1-8B"
    """Model profile name (``servesim profiles``)."""
    weight_dtype: WeightDtype | None = None
    """Weight format (bf16, fp8, int4, fp4 …); default: the model's native format."""
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp8"] = "auto"
    """KV-cache format; ``auto`` = the activation dtype (bf16), as vLLM's ``--kv-cache-dtype auto``."""


class EngineConfig(Strict):
    """vLLM v1 engine arguments (``vllm serve`` flag names, underscores for dashes)."""

    max_num_seqs: int = Field(default=256, ge=1)
    """Most requests running at once."""
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    """Token budget of one step (prefill chunks + decodes)."""
    max_model_len: int | None = Field(default=None, ge=16)
    """Longest prompt + output; default: the model's ``max_position_embeddings``."""
    enable_chunked_prefill: bool = True
    """Split long prompts across steps to fit the token budget."""
    long_prefill_token_threshold: int = Field(default=0, ge=0)
    """Cap on tokens one request gets per step (0 = no cap)."""
    enable_prefix_caching: bool = True
    """Reuse cached KV blocks of identical prompt prefixes."""
    block_size: int = Field(default=16, ge=1)
    """Tokens per KV-cache block."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Fraction of GPU memory vLLM may use (weights + activations + KV cache)."""
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"
    """Order of the waiting queue and choice of preemption victim."""
    memory_reserve_gib: float = Field(default=1.0, ge=0)
    """Per-GPU memory outside torch tensors: CUDA/ROCm context, NCCL buffers and CUDA graphs
    (vLLM typically reports 0.5–1.5 GiB). Subtracted before the KV cache is sized."""

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if not self.enable_chunked_prefill and self.max_model_len is not None \
                and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                f"with enable_chunked_prefill false, max_num_batched_tokens "
                f"({self.max_num_batched_tokens}) must be >= max_model_len ({self.max_model_len}), "
                f"as vLLM requires; raise it or enable chunked prefill")
        return self


class StepTimeConfig(Strict):
    """Which step-time model predicts how long each engine step takes."""

    backend: Literal["roofline", "table", "aiconfigurator"] = "roofline"
    """``roofline``: the calibrated physical model (simulator.engine.step_time); ``table``: the
    user's measured step times from ``table_file``, interpolated (simulator.engine.step_time_table);
    ``aiconfigurator``: NVIDIA's measured vLLM kernel database (optional package, ``pip install
    "servesim[aiconfigurator]"``; NVIDIA GPUs and models it covers; simulator.engine.step_time_aic)."""
    calibration: str = "auto"
    """``auto``: newest calibration file for the GPU, else the GPU-independent prior;
    ``prior``: the prior; or a vLLM version family present in hardware_profiles/calibration/.
    (roofline only)"""
    overrides: dict[str, float] = Field(default_factory=dict)
    """Per-coefficient overrides on top of the chosen calibration (field names of Calibration).
    (roofline only)"""
    table_file: str | None = None
    """CSV of measured step times for backend ``table``: columns num_tokens, num_seqs,
    step_time_ms and optionally avg_context (schema: simulator.engine.step_time_table). A relative
    path is taken from the scenario file's folder (the working directory for scenarios built in
    code). It must be measured for this scenario's model, GPU, TP and dtypes."""
    table_interpolation: Literal["linear", "nearest"] = "linear"
    """Backend ``table``: ``linear`` (multilinear between measured grid points) or ``nearest``
    (nearest measured point). Outside the measured range both clamp to the edge."""
    aiconfigurator_version: str | None = None
    """Backend ``aiconfigurator``: the vLLM version of its kernel data (e.g. ``0.24.0``, or the
    aliases ``current`` / ``previous``); unset: its current data for the GPU."""
    aiconfigurator_cpu_overhead: bool = False
    """Backend ``aiconfigurator``: also add the CPU-side step, per-sequence and per-token overhead
    of the GPU's servesim calibration to the measured kernel times. Off by default: on the silicon
    validation points kernel times alone predict TPOT better (benchmarks/aiconfigurator_crosscheck.md)."""

    @model_validator(mode="after")
    def _check(self) -> StepTimeConfig:
        unknown = set(self.overrides) - set(Calibration.model_fields)
        if unknown:
            raise ValueError(f"unknown calibration coefficient(s) {sorted(unknown)}; known: "
                             f"{', '.join(Calibration.model_fields)}")
        # NOTE: the table backend replaces the roofline entirely, so roofline-only settings would
        # silently do nothing: refuse them rather than let a user believe they apply.
        if self.backend == "table":
            if not self.table_file:
                raise ValueError("backend 'table' needs table_file: a CSV of measured step times "
                                 "(num_tokens, num_seqs, step_time_ms[, avg_context]); set it or "
                                 "use backend 'roofline'")
            if self.overrides:
                raise ValueError("overrides adjust the roofline calibration and have no effect "
                                 "with backend 'table'; remove them or use backend 'roofline'")
            if self.calibration != "auto":
                raise ValueError(f"calibration '{self.calibration}' selects roofline coefficients "
                                 f"and has no effect with backend 'table'; remove it")
        elif self.table_file is not None:
            raise ValueError("table_file is only read by backend 'table'; set backend: table or "
                             "remove table_file")
        if self.backend != "aiconfigurator" and (self.aiconfigurator_version is not None
                                                 or self.aiconfigurator_cpu_overhead):
            raise ValueError("aiconfigurator_version and aiconfigurator_cpu_overhead are only read "
                             "by backend 'aiconfigurator'; set backend: aiconfigurator or remove "
                             "them")
        if self.backend == "aiconfigurator":
            if self.overrides:
                raise ValueError("overrides adjust the roofline calibration and have no effect "
                                 "with backend 'aiconfigurator'; remove them or use backend "
                                 "'roofline'")
            if self.calibration != "auto" and not self.aiconfigurator_cpu_overhead:
                raise ValueError(f"with backend 'aiconfigurator', calibration "
                                 f"'{self.calibration}' only supplies the CPU overhead, which is "
                                 f"off; set aiconfigurator_cpu_overhead: true or remove calibration")
        return self


# --------------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------------


# NOTE: the workload models live in simulator.workload.spec (with the arrival, length, session
# and tenant kinds); they are re-exported here so ``from simulator.config import …`` keeps working.
from simulator.workload.spec import (  # noqa: E402, F401
    Arrivals,
    ClosedLoopArrivals,
    DiurnalArrivals,
    EmpiricalLength,
    FittedArrivals,
    FixedLength,
    GammaArrivals,
    Length,
    LognormalLength,
    MMPPArrivals,
    MMPPState,
    NormalLength,
    OfflineArrivals,
    OnOffArrivals,
    PoissonArrivals,
    RampArrivals,
    RateStep,
    SessionSpec,
    StepsArrivals,
    TableLength,
    TenantSpec,
    TraceArrivals,
    WeibullArrivals,
    WorkloadConfig,
)


class MetricsConfig(Strict):
    """What is recorded and over which window the summary is computed."""

    warmup_s: float = Field(default=0.0, ge=0)
    """Requests arriving before this time are excluded from the summary (still simulated)."""
    sample_interval_s: float = Field(default=1.0, gt=0)
    """Period of the per-replica gauge samples (num_requests_running, kv_cache_usage_perc …)."""
    record_steps: bool = True
    """Keep one row per engine step (disable for very long runs)."""
    record_itl: bool = True
    """Keep every inter-token gap (``Results.itl``, one row per streamed token: 16 bytes each,
    3 GB for a million ShareGPT-like requests). Off: ``Results.itl`` is empty and the summary's
    ``itl_ms`` is null; each request's ``itl_mean_s`` / ``itl_max_s`` and every TPOT figure are
    still exact (disable for very long runs)."""
    max_sim_time_s: float = Field(default=86_400.0, gt=0)
    """Safety stop: requests still unfinished then are reported in flight."""


class SimConfig(Strict):
    """How the simulator runs (never what it predicts: results are the same for every setting)."""

    fast_path: bool = True
    """Decode fast path: plan a replica's run of decode-only steps at once (step times for the whole
    run, per-request counters and tokens applied when the run ends or something touches the
    replica) instead of scheduling each step afresh (simulator.cluster.replica). Per-request
    results are identical with it off; turn it off to check that, or to step through the engine
    loop one step at a time."""


class Scenario(Strict):
    """A complete what-if."""

    name: str = "default"
    """Short name used in reports."""
    description: str = ""
    """What the scenario asks."""
    seed: int = Field(default=0, ge=0)
    """Seed of the single random generator (same seed + scenario → identical results)."""
    model: ModelConfig = ModelConfig()
    fleet: FleetConfig = FleetConfig()
    engine: EngineConfig = EngineConfig()
    step_time: StepTimeConfig = StepTimeConfig()
    workload: WorkloadConfig = WorkloadConfig()
    metrics: MetricsConfig = MetricsConfig()
    sim: SimConfig = SimConfig()
    """Simulator mechanics that do not change results (the decode fast path)."""
    slo: SloConfig | None = None
    """Latency targets checked in the summary (attainment, goodput); unset: none
    (simulator.plan_spec)."""
    cost: CostConfig = CostConfig()
    """How GPU time is priced and billed (simulator.plan_spec, simulator.cost)."""
    gateway: GatewayConfig = GatewayConfig()
    """API gateway: auth, validation, per-tenant limits and quotas, load shedding, fairness
    (simulator.cluster.spec)."""
    clients: ClientConfig = ClientConfig()
    """Client behaviour: timeouts and retries (simulator.cluster.spec)."""
    faults: FaultsConfig = FaultsConfig()
    """Replica crashes, spot preemptions, zone loss; health checks (simulator.cluster.spec)."""
    autoscaling: AutoscalingConfig | None = None
    """Autoscalers per pool (HPA / KEDA queue / pre-warming; simulator.cluster.autoscale_spec);
    unset: a static fleet."""
    provisioning: ProvisioningConfig | None = None
    """Cold start of replicas added by the autoscaler (node, image, weights, compile, warm-up;
    simulator.cluster.autoscale_spec); unset: the size-class defaults. Read only with
    ``autoscaling``."""
    base_dir: str | None = Field(default=None, exclude=True)
    """Folder of the scenario file (set by the loader; relative paths resolve from it)."""


# --------------------------------------------------------------------------------------------
# Loading with overrides
# --------------------------------------------------------------------------------------------

DEFAULT_SCENARIO = "default.yaml"


def default_scenario_path() -> Path:
    return data_root("scenarios") / DEFAULT_SCENARIO


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a","b","c"], value parsed as YAML scalar)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected path.to.field=value")
    key, _, raw = item.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty field path")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def set_path(data: dict[str, Any], path: str | list[str], value: Any) -> None:
    """Set ``a.b.c`` (or ``["a", "b", "c"]``) in a nested mapping, creating missing levels."""
    parts = [p for p in path.split(".") if p] if isinstance(path, str) else path
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        set_path(data, path, value)
    return data


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None,
                  seed: int | None = None) -> Scenario:
    """Load a scenario file (default: the embedded default scenario) with ``--set`` overrides."""
    p = Path(path) if path is not None else default_scenario_path()
    data, node = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of scenario fields at the top level")
    if overrides:
        data = apply_overrides(data, list(overrides))
    if seed is not None:
        data["seed"] = seed
    data["base_dir"] = str(p.resolve().parent)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        loc = [str(x) for x in clean_loc(tuple(e.errors()[0]["loc"]), data)]
        for item in overrides or []:
            opath, _ = parse_override(item)
            if loc[: len(opath)] == opath or opath[: len(loc)] == loc:
                raise ConfigError(format_validation_error(e, f"--set {item}", data=data)) from None
        raise ConfigError(format_validation_error(e, str(p), node, data=data)) from None


def scenario_from_dict(data: dict[str, Any], where: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where, data=data)) from None

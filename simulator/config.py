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
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from simulator.errors import ConfigError, clean_loc, format_validation_error, read_yaml
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


class RouterConfig(Strict):
    """How the fleet's front end picks a replica for each request."""

    kind: Literal["round_robin", "least_outstanding"] = "least_outstanding"
    """Policy: ``round_robin`` cycles; ``least_outstanding`` picks the replica with the fewest
    requests in flight (ties to the lowest index), as counted by the router itself."""


class FleetConfig(Strict):
    """The replicas serving the model."""

    gpu: str = "H100-SXM"
    """GPU profile name."""
    tp: int = Field(default=1, ge=1, le=64)
    """Tensor-parallel size: GPUs per replica."""
    replicas: int = Field(default=1, ge=1, le=100_000)
    """Number of identical replicas."""
    router: RouterConfig = RouterConfig()
    """Routing policy."""


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

    backend: Literal["roofline"] = "roofline"
    """``roofline``: the calibrated physical model (simulator.engine.step_time)."""
    calibration: str = "auto"
    """``auto``: newest calibration file for the GPU, else the GPU-independent prior;
    ``prior``: the prior; or a vLLM version family present in hardware_profiles/calibration/."""
    overrides: dict[str, float] = Field(default_factory=dict)
    """Per-coefficient overrides on top of the chosen calibration (field names of Calibration)."""

    @model_validator(mode="after")
    def _check(self) -> StepTimeConfig:
        unknown = set(self.overrides) - set(Calibration.model_fields)
        if unknown:
            raise ValueError(f"unknown calibration coefficient(s) {sorted(unknown)}; known: "
                             f"{', '.join(Calibration.model_fields)}")
        return self


# --------------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------------


class FixedLength(Strict):
    """Every request has the same length."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1)
    """Tokens."""


class LognormalLength(Strict):
    """Lognormal lengths with a given mean and coefficient of variation, clipped to [min, max]."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    """Mean tokens before clipping."""
    cv: float = Field(default=1.0, gt=0)
    """Standard deviation / mean before clipping."""
    min: int = Field(default=1, ge=1)
    """Lower clip."""
    max: int = Field(default=1_000_000, ge=1)
    """Upper clip."""


class EmpiricalLength(Strict):
    """Lengths resampled from a column of a user's CSV file."""

    kind: Literal["empirical"] = "empirical"
    file: str
    """CSV path (relative paths are taken from the scenario file's folder)."""
    column: str
    """Column holding token counts."""


class TableLength(Strict):
    """Lengths drawn from a shipped quantile table (``workloads/lengths/<name>.yaml``)."""

    kind: Literal["table"] = "table"
    name: str = "sharegpt-vllm-bench"
    """Table name, e.g. ``sharegpt-vllm-bench``, ``sharegpt``, ``arxiv-summarization``, ``bwb``,
    ``azure-conv-2023``, ``azure-code-2023``, ``mooncake-conversation``."""
    max: int | None = Field(default=None, ge=1)
    """Optional upper clip."""


Length = Annotated[FixedLength | LognormalLength | EmpiricalLength | TableLength,
                   Field(discriminator="kind")]


class PoissonArrivals(Strict):
    """Open loop: exponential inter-arrival times (vLLM benchmark's ``--request-rate``)."""

    kind: Literal["poisson"] = "poisson"
    rate: float = Field(gt=0)
    """Requests per second."""


class ClosedLoopArrivals(Strict):
    """Closed loop: N clients, each sends its next request when the previous one completes
    (vLLM benchmark's ``--max-concurrency`` with infinite rate)."""

    kind: Literal["closed_loop"] = "closed_loop"
    concurrency: int = Field(ge=1)
    """Number of clients."""
    think_time_s: float = Field(default=0.0, ge=0)
    """Pause between a response and the client's next request."""


class OfflineArrivals(Strict):
    """Offline batch: every request arrives at t = 0 (vLLM's offline throughput benchmark)."""

    kind: Literal["offline"] = "offline"


Arrivals = Annotated[PoissonArrivals | ClosedLoopArrivals | OfflineArrivals,
                     Field(discriminator="kind")]


class WorkloadConfig(Strict):
    """The traffic: when requests arrive and how long their prompts and outputs are."""

    arrival: Arrivals = PoissonArrivals(rate=10.0)
    """Arrival process."""
    input_len: Length = TableLength(name="sharegpt-vllm-bench", max=None)
    """Prompt tokens (excluding the shared system prompt)."""
    output_len: Length = TableLength(name="sharegpt-vllm-bench", max=None)
    """Generated tokens. For ``table`` lengths with the same name as input_len, the (input, output)
    pair is drawn jointly from the table's copula, keeping their correlation."""
    system_prompt_tokens: int = Field(default=0, ge=0)
    """Tokens of a system prompt shared by every request (exercises prefix caching)."""
    num_requests: int | None = Field(default=2000, ge=1)
    """Requests to send; None to send until ``duration_s``."""
    duration_s: float | None = Field(default=None, gt=0)
    """Stop sending after this many simulated seconds (and stop the run there)."""

    @model_validator(mode="after")
    def _check(self) -> WorkloadConfig:
        if self.num_requests is None and self.duration_s is None:
            raise ValueError("set num_requests or duration_s (or both)")
        return self


class MetricsConfig(Strict):
    """What is recorded and over which window the summary is computed."""

    warmup_s: float = Field(default=0.0, ge=0)
    """Requests arriving before this time are excluded from the summary (still simulated)."""
    sample_interval_s: float = Field(default=1.0, gt=0)
    """Period of the per-replica gauge samples (num_requests_running, kv_cache_usage_perc …)."""
    record_steps: bool = True
    """Keep one row per engine step (disable for very long runs)."""
    max_sim_time_s: float = Field(default=86_400.0, gt=0)
    """Safety stop: requests still unfinished then are reported in flight."""


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
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[path[-1]] = value
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

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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from simulator.cluster.autoscale_spec import AutoscalingConfig, ProvisioningConfig
from simulator.cluster.spec import (  # noqa: F401  (re-exported: the fleet's models live there)
    APIServerConfig,
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
    clip_text,
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

    max_num_seqs: int = Field(default=256, ge=1, le=1_000_000)
    """Most requests running at once."""
    max_num_batched_tokens: int = Field(default=8192, ge=1, le=10_000_000)
    """Token budget of one step (prefill chunks + decodes)."""
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)
    """Longest prompt + output; default: the model's ``max_position_embeddings``."""
    enable_chunked_prefill: bool = True
    """Split long prompts across steps to fit the token budget."""
    long_prefill_token_threshold: int = Field(default=0, ge=0, le=10_000_000)
    """Cap on tokens one request gets per step (0 = no cap)."""
    enable_prefix_caching: bool = True
    """Reuse cached KV blocks of identical prompt prefixes."""
    block_size: int = Field(default=16, ge=1, le=4096)
    """Tokens per KV-cache block."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Fraction of GPU memory vLLM may use (weights + activations + KV cache)."""
    scheduling_policy: Literal["fcfs", "priority"] = "fcfs"
    """Order of the waiting queue and choice of preemption victim."""
    scheduler: Literal["v1", "v0"] = "v1"
    """Which vLLM engine's scheduler: ``v1`` (vllm/v1/core/sched/scheduler.py, the default engine
    since vLLM 0.8) or ``v0`` (vllm/core/scheduler.py of vLLM ≤ 0.7 or ``VLLM_USE_V1=0``: with
    chunked prefill off, a step runs either whole new prompts — prefills first — or the running
    decodes, never both; see simulator/engine/scheduler.py). Published results of vLLM < 0.8 ran
    V0."""
    num_scheduler_steps: int = Field(default=1, ge=1, le=64)
    """vLLM 0.6's multi-step scheduling (``--num-scheduler-steps``, V0 only): one scheduling
    pass runs this many decode steps, paying the CPU step overhead once; new prompts join at the
    end of a pass."""
    memory_reserve_gib: float = Field(default=1.0, ge=0, le=4096)
    """Per-GPU memory outside torch tensors: CUDA/ROCm context, NCCL buffers and CUDA graphs
    (vLLM typically reports 0.5–1.5 GiB). Subtracted before the KV cache is sized."""
    api_server: APIServerConfig = APIServerConfig()
    """The API server in front of the engine core (``vllm serve``'s front end: tokenisation in,
    detokenisation and streaming out; simulator.cluster.frontend). ``enabled: false`` for vLLM's
    offline ``LLM`` class (no HTTP server)."""

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.num_scheduler_steps > 1 and self.scheduler != "v0":
            raise ValueError(
                f"num_scheduler_steps {self.num_scheduler_steps}: multi-step scheduling exists only "
                f"in vLLM's V0 engine (0.6-0.7); set engine.scheduler: v0 or num_scheduler_steps: 1")
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
    ``prior``: the prior; a vLLM version family with a calibration file for the GPU, written
    ``vllm-0.24`` or ``0.24`` (``servesim profiles`` lists them; the user data folder's fits from
    ``servesim calibrate --from-bench`` included); or the path of a calibration file (``*.yaml``;
    relative: from the scenario file's folder, or the working directory in ``--set``).
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

    @field_validator("calibration", mode="before")
    @classmethod
    def _family(cls, v: Any) -> Any:
        # NOTE: YAML reads ``calibration: 0.24`` as a number; the family is its text, and the
        # README's ``vllm-0.24`` (the calibration file's name) is the same family.
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if isinstance(v, str) and v.lower().startswith("vllm-") and not v.endswith((".yaml",
                                                                                      ".yml")):
            v = v[len("vllm-"):]
        return v

    @model_validator(mode="after")
    def _check(self) -> StepTimeConfig:
        unknown = set(self.overrides) - set(Calibration.model_fields)
        if unknown:
            raise ValueError(f"unknown calibration coefficient(s) {sorted(unknown)}; known: "
                             f"{', '.join(Calibration.model_fields)}")
        if self.overrides:
            # each override obeys the coefficient's own bounds (Calibration's fields)
            try:
                Calibration.model_validate({**Calibration().model_dump(), **self.overrides})
            except ValidationError as e:
                err = e.errors()[0]
                name = ".".join(str(x) for x in err["loc"])
                raise ValueError(f"overrides.{name}: {err['msg']} (got "
                                 f"{self.overrides.get(name)!r})") from None
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
    UniformLength,
    WeibullArrivals,
    WorkloadConfig,
)


class MetricsConfig(Strict):
    """What is recorded and over which window the summary is computed."""

    warmup_s: float = Field(default=0.0, ge=0, le=1e8)
    """Requests arriving before this time are excluded from the summary (still simulated)."""
    sample_interval_s: float = Field(default=1.0, ge=0.001, le=1e8)
    """Period of the per-replica gauge samples (num_requests_running, kv_cache_usage_perc …); at
    least 1 ms (an engine step's scale; Prometheus scrapes every few seconds)."""
    record_steps: bool = True
    """Keep one row per engine step (disable for very long runs)."""
    record_itl: bool = True
    """Keep every inter-token gap (``Results.itl``, one row per streamed token: 16 bytes each,
    3 GB for a million ShareGPT-like requests). Off: ``Results.itl`` is empty and the summary's
    ``itl_ms`` is null; each request's ``itl_mean_s`` / ``itl_max_s`` and every TPOT figure are
    still exact (disable for very long runs)."""
    max_sim_time_s: float = Field(default=86_400.0, gt=0, le=1e8)
    """Safety stop: requests still unfinished then are reported in flight."""


class SimConfig(Strict):
    """How the simulator runs (never what it predicts: results are the same for every setting)."""

    fast_path: bool = True
    """Decode fast path: plan a replica's run of decode-only steps at once (step times for the whole
    run, per-request counters and tokens applied when the run ends or something touches the
    replica) instead of scheduling each step afresh (simulator.cluster.fast_path). Per-request
    results are identical with it off; turn it off to check that, or to step through the engine
    loop one step at a time."""


class Scenario(Strict):
    """A complete what-if."""

    name: str = "default"
    """Short name used in reports."""
    description: str = ""
    """What the scenario asks."""
    seed: int = Field(default=0, ge=0, lt=2**63)
    """Seed of the single random generator (same seed + scenario → identical results); below
    2**63 (it is stored as a 64-bit integer)."""
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


def shipped_scenarios() -> dict[str, str]:
    """Name → first sentence of the description, for every shipped scenario."""
    out: dict[str, str] = {}
    for f in sorted(data_root("scenarios").glob("*.yaml")):
        try:
            raw = safe_load(f.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        what = " ".join(str(raw.get("description", "")).split()) if isinstance(raw, dict) else ""
        out[f.stem] = what.split(". ")[0].rstrip(".")
    return out


def scenario_path(path: str | Path) -> Path:
    """``path`` itself when it is a file, else the shipped scenario of that name (``chat-h100``,
    ``chat-h100.yaml``), so shipped scenarios run by name from any folder."""
    p = Path(path)
    if p.is_file() or p.parent != Path("."):
        return p
    shipped = data_root("scenarios") / (p.name if p.suffix in (".yaml", ".yml")
                                        else f"{p.name}.yaml")
    if shipped.is_file():
        return shipped
    if not p.exists():
        raise ConfigError(f"{p}: no such scenario file, and no shipped scenario named "
                          f"{p.stem!r}; shipped: {', '.join(shipped_scenarios())} "
                          f"(`servesim scenarios`)")
    return p


# --- the one path syntax of --set, sweeps, plans and mitigations -----------------------------
# ``a.b.c`` walks mappings; ``pools[0]`` (or ``pools.0``) is a list item by index, ``pools[h100]``
# the item whose ``name`` is h100. Setting a union's ``kind`` to a new value starts that mapping
# afresh (the old kind's fields would be unknown to the new one).

PathPart = str | int
"""One step of a resolved path: a mapping key or a list index."""


@dataclass(frozen=True)
class ByName:
    """A list item selected by its ``name`` field (``pools[h100]``)."""

    name: str

    def __str__(self) -> str:
        return f"[{self.name}]"


Selector = str | int | ByName

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\[\]]*)\]|(\.)")


def parse_path(key: str) -> list[Selector]:
    """``fleet.pools[h100].replicas`` → ["fleet", "pools", ByName("h100"), "replicas"];
    ``pools[0]`` and ``pools.0`` → index 0 (a digit segment is an index when the node is a list)."""
    out: list[Selector] = []
    pos = 0
    key = key.strip()
    while pos < len(key):
        m = _SEGMENT.match(key, pos)
        if m is None:
            raise ConfigError(f"{key!r}: cannot read the field path at {key[pos:]!r}; write "
                              f"a.b.c, list items as a[0] or a[name]")
        word, bracket, _dot = m.groups()
        if word is not None:
            out.append(word.strip())
        elif bracket is not None:
            b = bracket.strip()
            if not b:
                raise ConfigError(f"{key!r}: empty [] in the field path; write a[0] or a[name]")
            out.append(int(b) if re.fullmatch(r"-?\d+", b) else ByName(b))
        pos = m.end()
    if not out:
        raise ConfigError(f"{key!r}: empty field path")
    return out


def format_path(parts: Sequence[Selector]) -> str:
    """The inverse of :func:`parse_path` for resolved parts: ``fleet.pools[0].replicas``."""
    s = ""
    for p in parts:
        if isinstance(p, (int, ByName)):
            s += f"[{p.name}]" if isinstance(p, ByName) else f"[{p}]"
        else:
            s += ("." if s else "") + p
    return s


def parse_override(item: str) -> tuple[list[Selector], Any]:
    """``a.b[0].c=value`` → (path parts, value parsed as a YAML scalar or flow mapping/list)."""
    path, value, _raw = _parse_override(item)
    return path, value


def _parse_override(item: str) -> tuple[list[Selector], Any, str]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected path.to.field=value")
    key, _, raw = item.partition("=")
    try:
        path = parse_path(key)
    except ConfigError as e:
        raise ConfigError(f"--set {e}") from None
    try:
        value = safe_load(raw, f"--set {key}") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value, raw.strip()


def _list_item(node: list[Any], sel: int | ByName, where: str) -> int:
    """Index of the item ``sel`` picks in ``node`` (a ConfigError naming the choices if none)."""
    if isinstance(sel, ByName):
        names = [str(x.get("name")) for x in node if isinstance(x, dict) and "name" in x]
        for i, x in enumerate(node):
            if isinstance(x, dict) and str(x.get("name")) == sel.name:
                return i
        raise ConfigError(f"{where}: no item named {sel.name!r}; names: "
                          f"{', '.join(names) or '(the items have no name)'}")
    if not -len(node) <= sel < len(node):
        raise ConfigError(f"{where}: index {sel} is out of range ({len(node)} items)")
    return sel % len(node)


def set_path(data: dict[str, Any], path: str | list[Selector], value: Any) -> list[PathPart]:
    """Set ``a.b[0].c`` / ``a.b[name].c`` (or parsed parts) in a nested mapping, creating missing
    mapping levels; returns the resolved path (names turned into indices). A new ``kind`` for a
    mapping that has another one replaces the mapping by ``{kind: value}``."""
    parts = parse_path(path) if isinstance(path, str) else list(path)
    node: Any = data
    done: list[PathPart] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = format_path(done) or "(top level)"
        if isinstance(node, list):
            if isinstance(part, str) and re.fullmatch(r"-?\d+", part):
                part = int(part)
            if isinstance(part, str):
                raise ConfigError(f"{where} is a list: pick an item as {where}[0] or "
                                  f"{where}[name] before .{part}")
            idx = _list_item(node, part, format_path([*done, part]))
            done.append(idx)
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{where} is a value ({node!r}), not a mapping")
        if not isinstance(part, str):
            if where == "(top level)":
                raise ConfigError(f"{format_path([part])}: the scenario is a mapping")
            raise ConfigError(
                f"{format_path([*done, part])}: {where} is not a list in the scenario"
                + (" file; set the whole list, e.g. --set '" + where + "=[{...}]'"
                   if where not in ("", "(top level)") and not node else ""))
        done.append(part)
        if last:
            if part == "kind" and node.get("kind") not in (None, value):
                node.clear()
            node[part] = value
            break
        nxt = node.get(part)
        if isinstance(nxt, (dict, list)):
            node = nxt
            continue
        if not isinstance(parts[i + 1], str) or re.fullmatch(r"-?\d+", str(parts[i + 1])):
            hint = (" (a single-pool fleet: set fleet.replicas, fleet.gpu, fleet.tp)"
                    if done == ["fleet", "pools"] else "")
            raise ConfigError(f"{format_path([*done, parts[i + 1]])}: "
                              f"{format_path(done)} is not a list in the scenario file; set the "
                              f"whole list, e.g. --set '{format_path(done)}=[{{...}}]'{hint}")
        nxt = {}
        node[part] = nxt
        node = nxt
    return done


def _declared_type(path: list[PathPart]) -> Any:
    """The annotation of the Scenario field at ``path`` (None when it cannot be told: a union of
    models, a free-form mapping)."""
    import types
    import typing

    from pydantic import BaseModel

    tp: Any = Scenario
    for part in path:
        while True:
            origin = typing.get_origin(tp)
            if origin is typing.Annotated:
                tp = typing.get_args(tp)[0]
                continue
            if origin in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(args) != 1:
                    return None
                tp = args[0]
                continue
            break
        if isinstance(part, int):
            if typing.get_origin(tp) is not list:
                return None
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    return tp


def _accepts_only_text(tp: Any) -> bool:
    """True when ``tp`` is ``str`` (optionally None-able): a YAML number or bool there is text."""
    import types
    import typing

    if tp is str:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args == [str]
    return False


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` items in order, except that ``….kind=`` items go first (a kind change
    starts its mapping afresh, so the fields set beside it must come after it)."""
    _apply_overrides(data, overrides)
    return data


def _apply_overrides(data: dict[str, Any], overrides: list[str]
                     ) -> list[tuple[str, list[PathPart]]]:
    parsed = [(item, *_parse_override(item)) for item in overrides]
    order = sorted(range(len(parsed)),
                   key=lambda i: 0 if parsed[i][1] and parsed[i][1][-1] == "kind" else 1)
    applied: list[tuple[str, list[PathPart]]] = []
    for i in order:
        item, path, value, raw = parsed[i]
        if not isinstance(value, str) and not isinstance(value, (dict, list)) and value is not None:
            resolved_guess = [p if isinstance(p, (str, int)) else 0 for p in path]
            if _accepts_only_text(_declared_type(resolved_guess)):
                value = raw  # NOTE: the text as written (0.10 stays "0.10", not "0.1")
        try:
            done = set_path(data, path, value)
        except ConfigError as e:
            raise ConfigError(f"--set {clip_text(item, 120)}: {e}") from None
        # a kind change answers for the whole mapping it started afresh
        applied.append((item, done[:-1] if done and done[-1] == "kind" else done))
    return applied


def load_scenario(path: str | Path | None = None, overrides: list[str] | None = None,
                  seed: int | None = None) -> Scenario:
    """Load a scenario file (default: the embedded default scenario) with ``--set`` overrides."""
    p = scenario_path(path) if path is not None else default_scenario_path()
    data, node = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of scenario fields at the top level")
    applied = _apply_overrides(data, list(overrides)) if overrides else []
    if seed is not None:
        data["seed"] = seed
    data["base_dir"] = str(p.resolve().parent)
    _resolve_calibration_path(data, p, any(path[:2] == ["step_time", "calibration"]
                                           for _, path in applied))
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        loc = [str(x) for x in clean_loc(tuple(e.errors()[0]["loc"]), data)]
        # NOTE: the last --set touching the failing field is the one to blame (a kind change
        # before it starts the sub-tree afresh, so the file's old fields cannot be).
        if seed is not None and loc[:1] == ["seed"]:
            raise ConfigError(format_validation_error(e, "--seed", data=data)) from None
        for item, opath in reversed(applied):
            spath = [str(x) for x in opath]
            if loc[: len(spath)] == spath or spath[: len(loc)] == loc:
                raise ConfigError(format_validation_error(
                    e, f"--set {clip_text(item, 120)}", data=data)) from None
        raise ConfigError(format_validation_error(e, str(p), node, data=data)) from None


def _resolve_calibration_path(data: dict[str, Any], scenario_file: Path, from_set: bool) -> None:
    """A ``step_time.calibration`` naming a file (``*.yaml``) is made absolute: from the working
    directory when it came from ``--set``, from the scenario file's folder when written there."""
    st = data.get("step_time")
    if not isinstance(st, dict):
        return
    cal = st.get("calibration")
    if not isinstance(cal, str) or not cal.endswith((".yaml", ".yml")):
        return
    f = Path(cal).expanduser()
    if not f.is_absolute():
        f = (Path.cwd() if from_set else scenario_file.resolve().parent) / f
    st["calibration"] = str(f)


def scenario_from_dict(data: dict[str, Any], where: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where, data=data)) from None

"""Hardware and model profiles: the GPUs, model architectures and step-time calibrations as data.

What this models: the published spec sheet of a GPU (memory, bandwidth, dense FLOP/s, links, price),
the published architecture of a model (layers, heads, KV heads, experts, parameters) and the fitted
coefficients of the step-time model for a GPU. All three are YAML files under ``hardware_profiles/``
validated into pydantic models on load; there is no class per GPU or per model.

From these the module derives the numbers every other layer needs: weight bytes per TP rank,
KV-cache bytes per token per rank, and the memory budget that decides how many KV blocks a replica has
(the same arithmetic vLLM's ``determine_available_memory`` does, with the activation/graph reserve as
an explicit, documented constant instead of a profiling run).

Leaves out: pipeline parallelism, sliding-window KV *memory* savings (gpt-oss alternates sliding
layers; the KV cache is charged as if every layer kept every token, a conservative upper bound —
their attention time is priced over the window, ``sliding_window_layers``), MLA latent KV
compression.

Why one module (~720 lines): the three kinds of profile share one lookup (the packaged
``hardware_profiles/`` folder, the user's overrides, the index and the calibration families) and
the memory budget needs a GPU and a model together; most of the length is the documented fields of
the pydantic models (:class:`Calibration` alone has one per fitted coefficient, each with its
meaning). It sits at the bottom of the layers, imported by a third of the package.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Hashable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.errors import ConfigError, load_yaml_model, safe_load

GiB = 1024**3

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
KvDtype = Literal["bf16", "fp16", "fp8"]

#: Bytes per parameter of each weight format. NOTE: int4 (AWQ/GPTQ, group 128) carries a bf16
#: scale (+ zero point) per 128 weights: 0.5 + 4/128 ≈ 0.53; MXFP4 carries one 8-bit scale per 32
#: weights: 0.5 + 1/32 ≈ 0.53. fp8 checkpoints keep per-tensor/per-channel scales (negligible).
BYTES_PER_PARAM: dict[str, float] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.53,
    "fp4": 0.53,
}


@functools.cache
def _number_not_bool(tp: Any) -> bool:
    """True when annotation ``tp`` takes a number (int or float) but not a bool."""
    import types
    import typing

    seen: list[Any] = []
    todo = [tp]
    while todo:
        t = todo.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            todo.append(typing.get_args(t)[0])
        elif origin in (typing.Union, types.UnionType):
            todo.extend(typing.get_args(t))
        else:
            seen.append(t)
    return bool(seen) and any(t in (int, float) for t in seen) and not any(
        t in (bool, Any, object) for t in seen)


class Strict(BaseModel):
    """Base for every profile and config model: unknown fields are errors, objects are frozen,
    floats must be finite (``.inf``/``.nan`` are refused: no knob means "forever" by infinity)
    and a number field refuses ``true``/``false`` (pydantic would read them as 1 and 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # NOTE: a model-level check (a field validator on "*" would also sit on the
        # discriminator fields, which pydantic forbids).
        if isinstance(data, dict):
            fields = cls.model_fields
            for k, v in data.items():
                if not (isinstance(v, bool) and k in fields):
                    continue
                ann: Hashable = fields[k].annotation  # type: ignore[assignment]
                if _number_not_bool(ann):
                    raise ValueError(f"{k}: expected a number, not the boolean {str(v).lower()}")
        return data


# --------------------------------------------------------------------------------------------
# GPUs
# --------------------------------------------------------------------------------------------


class Price(Strict):
    """One dated price quote for a GPU-hour."""

    kind: Literal["on_demand", "spot", "reserved"] = "on_demand"
    """Billing model the quote is for."""
    usd_per_gpu_hour: float = Field(gt=0)
    """Price in US dollars per GPU per hour."""
    provider: str
    """Who quoted it (cloud or marketplace)."""
    date: str
    """When the quote was collected (YYYY-MM or YYYY-MM-DD)."""
    source: str
    """Where the figure comes from."""


class GpuProfile(Strict):
    """Spec sheet of one accelerator, per GPU, dense (no 2:4 sparsity)."""

    name: str
    """Profile name used in scenarios, e.g. ``H100-SXM``."""
    vendor: Literal["nvidia", "amd", "intel", "other"]
    """Vendor (decides the software stack family: CUDA or ROCm)."""
    memory_gb: float = Field(gt=0)
    """Marketing HBM capacity in GB (as on the datasheet)."""
    usable_memory_gib: float = Field(gt=0)
    """Memory the runtime reports as total (``torch.cuda.mem_get_info``), GiB. vLLM's
    ``gpu_memory_utilization`` is a fraction of this."""
    mem_bandwidth_gbps: float = Field(gt=0)
    """Peak HBM bandwidth, GB/s (1e9 bytes/s)."""
    bf16_tflops: float = Field(gt=0)
    """Peak dense BF16 tensor throughput, TFLOP/s."""
    fp8_tflops: float | None = Field(default=None, gt=0)
    """Peak dense FP8 tensor throughput, TFLOP/s; None when the GPU has no FP8 tensor cores."""
    fp4_tflops: float | None = Field(default=None, gt=0)
    """Peak dense FP4 throughput, TFLOP/s, where the GPU has it."""
    int8_tops: float | None = Field(default=None, gt=0)
    """Peak dense INT8 throughput, TOP/s, where published."""
    link_bandwidth_gbps: float = Field(gt=0)
    """Intra-node GPU-to-GPU bandwidth per GPU, GB/s, as published (NVLink / Infinity Fabric / PCIe)."""
    link_kind: str
    """Name of the intra-node interconnect (NVLink4, Infinity Fabric, PCIe4 …)."""
    gpus_per_node: int = Field(default=8, ge=1)
    """GPUs in one server of this kind (the largest TP without crossing nodes)."""
    tdp_w: float = Field(gt=0)
    """Board power, W."""
    prices: list[Price] = Field(min_length=1)
    """Dated price quotes; the first ``on_demand`` one is the default unless a scenario overrides it."""
    sources: dict[str, str]
    """Citation for each figure above, keyed by field name."""

    @model_validator(mode="after")
    def _sources_name_fields(self) -> GpuProfile:
        unknown = set(self.sources) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"sources names unknown fields {sorted(unknown)}")
        return self

    def peak_tflops(self, dtype: str) -> float:
        """Dense tensor peak for GEMMs whose weights are in ``dtype``.

        NOTE: int4/fp4 weight-only kernels (AWQ, Marlin, MXFP4 on Hopper) dequantise to bf16 and run
        the math in bf16, so they get the bf16 peak; only GPUs with native FP4 math get fp4_tflops.
        """
        if dtype == "fp8" and self.fp8_tflops:
            return self.fp8_tflops
        if dtype == "fp4" and self.fp4_tflops:
            return self.fp4_tflops
        return self.bf16_tflops

    def default_price(self, kind: str = "on_demand") -> Price:
        for p in self.prices:
            if p.kind == kind:
                return p
        raise ConfigError(f"GPU {self.name} has no {kind} price; add one under prices: in its profile")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class ModelProfile(Strict):
    """Architecture of one model, from its published ``config.json``."""

    name: str
    """Profile name used in scenarios, e.g. ``Llama-3.1-8B``."""
    hf_id: str
    """Hugging Face repository the figures come from."""
    num_layers: int = Field(ge=1)
    """``num_hidden_layers``."""
    hidden_size: int = Field(ge=1)
    """``hidden_size`` (d_model)."""
    num_attention_heads: int = Field(ge=1)
    """Query heads."""
    num_kv_heads: int = Field(ge=1)
    """Key/value heads (GQA); equal to num_attention_heads for MHA."""
    head_dim: int = Field(ge=1)
    """Per-head dimension (``head_dim``, else hidden_size / num_attention_heads)."""
    intermediate_size: int = Field(ge=1)
    """Dense MLP width; for MoE models the width of one expert (``moe_intermediate_size``)."""
    vocab_size: int = Field(ge=1)
    """Vocabulary size (embedding and LM-head rows)."""
    tie_word_embeddings: bool = False
    """Whether the LM head shares the embedding matrix."""
    num_experts: int = Field(default=1, ge=1)
    """Routed experts per MoE layer (1 = dense model)."""
    num_experts_per_token: int = Field(default=1, ge=1)
    """Experts each token is routed to (top-k)."""
    num_shared_experts: int = Field(default=0, ge=0)
    """Always-active shared experts per MoE layer."""
    total_params_b: float = Field(gt=0)
    """Published total parameter count, billions (all experts)."""
    active_params_b: float = Field(gt=0)
    """Published parameters active per token, billions (= total for dense models)."""
    max_position_embeddings: int = Field(ge=1)
    """Longest context the model supports; the default ``max_model_len``."""
    weight_dtypes: list[WeightDtype] = Field(min_length=1)
    """Weight formats with a published checkpoint or supported quantisation."""
    kv_dtypes: list[KvDtype] = Field(default_factory=lambda: list[KvDtype](["bf16", "fp8"]))
    """KV-cache formats vLLM supports for this model."""
    native_dtype: WeightDtype = "bf16"
    """Format of the reference checkpoint."""
    sliding_window: int | None = Field(default=None, ge=1)
    """Sliding-window length for the layers that use one, if any."""
    sliding_window_layers: int = Field(default=0, ge=0)
    """How many layers attend only to the last ``sliding_window`` tokens (gpt-oss: 18 of 36,
    alternating with full attention). Their attention FLOPs and KV reads are priced over the
    window; their KV memory is still charged in full (see module note)."""
    hidden_output_tokens: int = Field(default=0, ge=0, le=64)
    """Output tokens the model's chat format opens every answer with that the server's parser
    streams to no one (a client's TTFT ends at the first visible token): gpt-oss's harmony header
    ``<|channel|>analysis<|message|>`` is 3, Qwen3's ``<think>`` (thinking on, its default) 1.
    A run's ``ttft_s`` adds this many inter-token times; ``first_token_s`` stays the first token
    delivered."""
    source: str
    """Where the figures come from (config.json URL, model card)."""

    @model_validator(mode="after")
    def _check(self) -> ModelProfile:
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")
        if self.num_experts_per_token > self.num_experts:
            raise ValueError("num_experts_per_token exceeds num_experts")
        if self.active_params_b > self.total_params_b * 1.0001:
            raise ValueError("active_params_b exceeds total_params_b")
        if self.sliding_window_layers > self.num_layers:
            raise ValueError("sliding_window_layers exceeds num_layers")
        if self.sliding_window_layers and self.sliding_window is None:
            raise ValueError("sliding_window_layers needs sliding_window")
        return self

    # ---- parameter accounting from the architecture ------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def attn_params_per_layer(self) -> int:
        """Q, K, V and O projections (biases ignored)."""
        q = self.hidden_size * self.num_attention_heads * self.head_dim
        kv = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        o = self.num_attention_heads * self.head_dim * self.hidden_size
        return q + kv + o

    @property
    def expert_params(self) -> int:
        """One gated MLP (gate, up, down) of width ``intermediate_size``."""
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def router_params_per_layer(self) -> int:
        return self.hidden_size * self.num_experts if self.is_moe else 0

    @property
    def embedding_params(self) -> int:
        """Embedding plus (untied) LM head."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def derived_total_params(self) -> int:
        """Parameters implied by the architecture (all experts resident)."""
        experts = (self.num_experts if self.is_moe else 1) + self.num_shared_experts
        per_layer = self.attn_params_per_layer + experts * self.expert_params
        per_layer += self.router_params_per_layer
        return self.num_layers * per_layer + self.embedding_params

    def derived_active_params(self) -> int:
        """Parameters touched per token: attention, top-k + shared experts, embeddings."""
        experts = (self.num_experts_per_token if self.is_moe else 1) + self.num_shared_experts
        per_layer = self.attn_params_per_layer + experts * self.expert_params
        per_layer += self.router_params_per_layer
        return self.num_layers * per_layer + self.embedding_params

    # ---- bytes ----------------------------------------------------------------------------
    def weight_bytes(self, dtype: str) -> float:
        """Bytes of all weights on all ranks.

        NOTE: quantised checkpoints (fp8, int4, fp4) keep the embedding and LM head in bf16, as
        vLLM's FP8/AWQ/MXFP4 checkpoints do; the published total parameter count is scaled so the
        non-embedding part matches it.
        """
        embed = self.embedding_params
        body = max(self.total_params_b * 1e9 - embed, 0.0)
        return body * BYTES_PER_PARAM[dtype] + embed * BYTES_PER_PARAM["bf16"]

    def weight_bytes_per_rank(self, dtype: str, tp: int) -> float:
        return self.weight_bytes(dtype) / tp

    def kv_heads_per_rank(self, tp: int) -> int:
        """KV heads held by one TP rank: heads are split across ranks, replicated when tp > heads."""
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token(self, kv_dtype: str, tp: int = 1) -> int:
        """KV-cache bytes one token occupies on one TP rank: 2 (K and V) × layers × kv heads/rank ×
        head_dim × bytes of the KV dtype."""
        return (
            2
            * self.num_layers
            * self.kv_heads_per_rank(tp)
            * self.head_dim
            * int(BYTES_PER_PARAM[kv_dtype])
        )


# --------------------------------------------------------------------------------------------
# Step-time calibration
# --------------------------------------------------------------------------------------------


class Calibration(Strict):
    """Coefficients of the roofline step-time model (``simulator.engine.step_time``).

    Each efficiency is the fraction of the GPU's spec-sheet peak (FLOP/s, HBM or link bandwidth) a
    kernel class reaches; each ``*_latency_us`` is the fixed time one kernel call costs however
    little it does (launch ramp, tail, synchronisation); the overheads are per-step costs outside the
    GPU kernels (scheduler, input preparation, sampling, Python). The defaults are *priors* — round
    figures from published measurements (FACTS.md) — not fits; a fitted file in
    ``hardware_profiles/calibration/`` replaces them (``servesim calibrate``).
    """

    # ---- linear layers (GEMMs) ------------------------------------------------------------------
    gemm_efficiency: float = Field(default=0.70, gt=0, le=1)
    """Fraction of dense BF16 peak FLOP/s that large linear-layer GEMMs reach, for bf16/fp16
    weights and for weight-only int4/fp4 kernels (which dequantise and run the math in bf16)."""
    gemm_efficiency_fp8: float = Field(default=0.55, gt=0, le=1)
    """Fraction of dense FP8 peak FLOP/s that large FP8 (W8A8) GEMMs reach (MI300X hipBLASLt:
    49%; H100 CUTLASS: ~55–65%)."""
    gemm_m_half: float = Field(default=64.0, ge=0)
    """Tokens (GEMM M) at which GEMM compute efficiency is half its maximum: models the poor
    tensor-core use of skinny GEMMs. eff(M) = gemm_efficiency × M / (M + gemm_m_half)."""
    gemm_latency_us: float = Field(default=4.0, ge=0)
    """Fixed time of one linear-layer GEMM kernel, µs (4 per dense layer: QKV, O, gate-up, down;
    plus one for the LM head)."""
    weight_bw_efficiency: float = Field(default=0.84, gt=0, le=1)
    """Fraction of HBM peak reached while streaming weights (memory-bound small-M GEMMs; H100 70B
    decode: ~84%, Nsight). Also used for the element-wise activation traffic."""
    gemm_nk_half: float = Field(default=0.0, ge=0)
    """Per-rank weight elements of one GEMM (N × K) at which compute efficiency is half its
    maximum, for bf16/int4/fp4 weights: a small weight matrix leaves SMs idle (few output tiles)
    or runs a short K loop. eff(M, N·K) = eff(M) × N·K / (N·K + gemm_nk_half). 0 = no size law
    (every linear layer of a step is then costed as one GEMM)."""
    gemm_nk_half_fp8: float = Field(default=0.0, ge=0)
    """As ``gemm_nk_half`` for FP8 (W8A8) GEMMs, whose efficiency depends far more on size
    (aiconfigurator H100/H200 tables: ~25% of the large-shape throughput at N·K = 2 M)."""
    fp8_act_quant: bool = False
    """Cost the activation quantisation of W8A8 FP8 linear layers as its own kernel before each
    GEMM: reads the bf16 input and writes FP8 (3 bytes per element of M × K) at HBM speed
    (``weight_bw_efficiency``) plus ``fp8_act_quant_latency_us``."""
    fp8_act_quant_latency_us: float = Field(default=0.0, ge=0)
    """Fixed time of one FP8 activation-quantisation kernel, µs (with ``fp8_act_quant``)."""

    # ---- mixture-of-experts layers ------------------------------------------------------------
    moe_efficiency: float = Field(default=0.45, gt=0, le=1)
    """Fraction of dense peak FLOP/s the fused-MoE expert GEMMs reach at many tokens per expert
    (same small-M law as dense GEMMs, with M = tokens per touched expert)."""
    moe_bw_efficiency: float = Field(default=0.75, gt=0, le=1)
    """Fraction of HBM peak reached streaming the touched experts' weights."""
    moe_efficiency_fp8: float = Field(default=0.25, gt=0, le=1)
    """As ``moe_efficiency`` for FP8 (block-scaled) experts, as a fraction of the FP8 peak."""
    moe_bw_efficiency_fp8: float = Field(default=0.65, gt=0, le=1)
    """As ``moe_bw_efficiency`` for FP8 experts."""
    moe_efficiency_fp4: float | None = Field(default=None, gt=0, le=1)
    """As ``moe_efficiency`` for 4-bit weight-only experts (MXFP4 / INT4, W4A16: dequantised, math
    at the BF16 peak); None: use ``moe_efficiency``."""
    moe_bw_efficiency_fp4: float | None = Field(default=None, gt=0, le=1)
    """As ``moe_bw_efficiency`` for 4-bit weight-only experts; None: use ``moe_bw_efficiency``."""
    moe_latency_us: float = Field(default=20.0, ge=0)
    """Fixed time of one fused-MoE layer (routing, permute, grouped GEMMs, un-permute), µs."""
    moe_latency_us_fp4: float | None = Field(default=None, ge=0)
    """As ``moe_latency_us`` for 4-bit weight-only experts; None: use ``moe_latency_us``."""
    moe_m_half: float | None = Field(default=None, gt=0)
    """Tokens per expert at which the fused-MoE GEMMs reach half of ``moe_efficiency`` (the
    grouped kernel's own ``gemm_m_half``: it tiles all experts' tokens in one launch, so small
    per-expert batches cost it less than they cost a dense GEMM); None: use ``gemm_m_half``."""
    moe_m_half_fp4: float | None = Field(default=None, gt=0)
    """As ``moe_m_half`` for 4-bit weight-only experts; None: use ``moe_m_half``."""

    # ---- attention ------------------------------------------------------------------------------
    attn_efficiency: float = Field(default=0.45, gt=0, le=1)
    """Fraction of dense BF16 peak reached by prefill (flash) attention FLOPs on long sequences."""
    attn_kv_half: float = Field(default=256.0, ge=0)
    """Mean keys attended per prefill query at which prefill attention reaches half of
    ``attn_efficiency``: short prompts leave the flash-attention tiles under-used."""
    kv_bw_efficiency: float = Field(default=0.55, gt=0, le=1)
    """Fraction of HBM peak reached reading a bf16/fp16 paged KV cache in decode attention
    (~42–60% measured end to end on H100)."""
    kv_bw_efficiency_fp8: float = Field(default=0.55, gt=0, le=1)
    """As ``kv_bw_efficiency`` for an fp8 KV cache (the kernel dequantises on the fly)."""
    attn_par_half: float = Field(default=0.0, ge=0)
    """(decode sequence × KV head) pairs per rank at which the paged decode-attention kernel
    reaches half of ``kv_bw_efficiency``: each (sequence, KV head) is one group of thread blocks,
    so a batch with few of them (TP8 with one KV head per rank) leaves SMs idle, and one with
    many streams at full speed. eff = kv_bw_efficiency × P / (P + attn_par_half). 0 = no law."""
    attn_latency_us: float = Field(default=10.0, ge=0)
    """Fixed time of one attention kernel call (one per layer per step), µs."""
    attn_per_seq_us: float = Field(default=0.02, ge=0)
    """Attention time per scheduled sequence per layer beyond its FLOPs and bytes, µs (block-table
    walk and per-sequence work of the varlen/paged kernel; visible as large decode batches with
    short contexts)."""

    # ---- tensor parallelism -----------------------------------------------------------------------
    allreduce_latency_us: float = Field(default=8.0, ge=0)
    """Fixed latency of one tensor-parallel all-reduce, µs."""
    allreduce_bw_efficiency: float = Field(default=0.6, gt=0, le=1)
    """Fraction of the published intra-node link bandwidth (``link_bandwidth_gbps``) one ring
    all-reduce reaches as bus bandwidth."""
    allreduce_latency_us_by_tp: dict[Annotated[int, Field(ge=2)],
                                     Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    """``allreduce_latency_us`` for one tensor-parallel group size (2, 4, 8); sizes not listed use
    ``allreduce_latency_us``. The measured curves differ by group size beyond what the ring formula
    carries (vLLM's one-shot vs two-shot custom all-reduce, NVSwitch reduction at 8 GPUs)."""
    allreduce_bw_efficiency_by_tp: dict[Annotated[int, Field(ge=2)],
                                        Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict)
    """``allreduce_bw_efficiency`` for one tensor-parallel group size; sizes not listed use
    ``allreduce_bw_efficiency``."""

    # ---- other GPU work and CPU overhead ----------------------------------------------------------
    layer_overhead_us: float = Field(default=10.0, ge=0)
    """Fixed time per layer per step of the small kernels that are neither GEMMs nor attention
    (fused add + RMSNorm ×2, rotary embedding, activation, KV-cache write), µs. Their bytes are
    costed separately at HBM speed."""
    step_overhead_us: float = Field(default=3000.0, ge=0)
    """Fixed cost of one engine step outside the GPU kernels, µs (schedule, prepare, sample)."""
    per_seq_overhead_us: float = Field(default=10.0, ge=0)
    """Extra per-step cost per scheduled sequence, µs (input prep, sampling, detokenise)."""
    per_token_overhead_us: float = Field(default=0.0, ge=0)
    """Extra per-step cost per scheduled token, µs (input prep of large prefills)."""


class CalibrationProvenance(Strict):
    """Where a calibration came from, so it can be reproduced and its error judged."""

    method: str
    """How the coefficients were obtained (prior, fit on …)."""
    data: list[str] = Field(default_factory=list)
    """Data folders/files used, relative to the shared data root."""
    commit: str | None = None
    """Commit of the data source."""
    date: str
    """When the file was written."""
    residuals: dict[str, float] = Field(default_factory=dict)
    """Fit residual statistics (e.g. median |rel error| on the fit set)."""
    validation: dict[str, float] = Field(default_factory=dict)
    """Error on held-out data (suite → median |error| %)."""
    regime: dict[str, Any] = Field(default_factory=dict)
    """The step shapes the fit data covered: ``running_seqs`` and ``tokens_per_step`` ([min,
    max] sequences and tokens in one step), ``context`` ([min, max] tokens per sequence), ``tp``
    (tensor-parallel sizes) and ``source`` (which data). A run reports how much of it lay outside
    (``summary["regime"]``, :mod:`simulator.metrics.regime`)."""


class CalibrationProfile(Strict):
    """A calibration file: coefficients for one GPU and one vLLM version family."""

    gpu: str
    """GPU profile name it applies to."""
    vllm_family: str
    """vLLM version family the data came from, e.g. ``0.10`` or ``prior``."""
    coefficients: Calibration
    """The fitted coefficients."""
    provenance: CalibrationProvenance
    """Data, method and error."""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

ProfileKind = Annotated[str, Literal["gpus", "models", "calibration"]]


def data_root(name: str) -> Path:
    """Directory of a shipped data folder (``hardware_profiles``, ``workloads``, ``scenarios``).

    Looked up in this order: ``$SERVESIM_<NAME>_DIR``; the source checkout (repository top level);
    the copy shipped inside the wheel (``simulator/_data/<name>``).
    """
    env = os.environ.get(f"SERVESIM_{name.upper()}_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    repo = here.parent / name
    if repo.is_dir():
        return repo
    shipped = Path(str(resources.files("simulator"))) / "_data" / name
    return shipped


def _profile_dir(kind: str) -> Path:
    return data_root("hardware_profiles") / kind


def _names(kind: str) -> list[str]:
    d = _profile_dir(kind)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


@functools.cache
def _index(kind: str) -> dict[str, Path]:
    """Map lower-cased profile name → file, for case-insensitive lookup."""
    out: dict[str, Path] = {}
    d = _profile_dir(kind)
    for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        with p.open() as fh:
            raw = safe_load(fh) or {}
        name = raw.get("name", p.stem) if isinstance(raw, dict) else p.stem
        out[str(name).lower()] = p
        out[p.stem.lower()] = p
    return out


def _lookup(kind: str, name: str, what: str) -> Path:
    idx = _index(kind)
    path = idx.get(name.lower())
    if path is None:
        known = ", ".join(sorted({p.stem for p in idx.values()}))
        raise ConfigError(f"unknown {what} '{name}'; known: {known} (run `servesim profiles`)")
    return path


@functools.cache
def load_gpu(name: str) -> GpuProfile:
    """Load a GPU profile by name (case-insensitive)."""
    return load_yaml_model(_lookup("gpus", name, "gpu"), GpuProfile)


@functools.cache
def load_model(name: str) -> ModelProfile:
    """Load a model profile by name (case-insensitive)."""
    return load_yaml_model(_lookup("models", name, "model"), ModelProfile)


def list_gpus() -> list[GpuProfile]:
    return [load_gpu(n) for n in _names("gpus")]


def list_models() -> list[ModelProfile]:
    return [load_model(n) for n in _names("models")]


_CALIBRATIONS: dict[Path, tuple[tuple[int, int], CalibrationProfile]] = {}
"""Parsed calibration files by path, with the (mtime, size) they were read at."""


def list_calibrations() -> list[CalibrationProfile]:
    """Every calibration file, parsed once per version of the file (a sweep or a validation
    simulates hundreds of scenarios; a refit rewrites the files and is read afresh)."""
    out = []
    for n in _names("calibration"):
        path = _profile_dir("calibration") / f"{n}.yaml"
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _CALIBRATIONS.get(path)
        if hit is None or hit[0] != stamp:
            hit = _CALIBRATIONS[path] = (stamp, load_yaml_model(path, CalibrationProfile))
        out.append(hit[1])
    return out


def user_data_dir() -> Path:
    """The user's servesim data folder: ``$SERVESIM_USER_DIR``, else ``$XDG_DATA_HOME/servesim``,
    else ``~/.local/share/servesim`` (the XDG default; never inside the installed package)."""
    env = os.environ.get("SERVESIM_USER_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "servesim"


def user_calibration_dir() -> Path:
    """Where ``servesim calibrate --from-bench`` writes fits by default (read by
    :func:`list_calibrations` beside the shipped ones)."""
    return user_data_dir() / "calibration"


def _read_calibration(path: Path) -> CalibrationProfile:
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _CALIBRATIONS.get(path)
    if hit is None or hit[0] != stamp:
        hit = _CALIBRATIONS[path] = (stamp, load_yaml_model(path, CalibrationProfile))
    return hit[1]


def user_calibrations() -> list[CalibrationProfile]:
    """The fits in the user data folder (:func:`user_calibration_dir`)."""
    d = user_calibration_dir()
    return [_read_calibration(p) for p in sorted(d.glob("*.yaml"))] if d.is_dir() else []


def calibration_families(gpu: str | None = None) -> list[str]:
    """The vLLM families with a calibration file (for ``gpu`` if given), oldest first."""
    fams = {c.vllm_family for c in [*list_calibrations(), *user_calibrations()]
            if gpu is None or c.gpu.lower() == gpu.lower()}
    return sorted(fams, key=_family_key)


def find_calibration(gpu: str, family: str | None = None) -> CalibrationProfile | None:
    """The calibration file for ``gpu`` (and vLLM ``family`` if given); newest family wins.
    ``family`` may also be the path of a calibration file (``*.yaml``), read as is; a file made
    for another GPU is refused. A named family not shipped for the GPU is looked up in the user
    data folder (:func:`user_calibration_dir`); ``auto`` and shipped families read only the
    shipped files, so a user's folder never changes a run that does not name its fit."""
    if family is not None and family.endswith((".yaml", ".yml")):
        path = Path(family).expanduser()
        if not path.is_file():
            raise ConfigError(f"step_time.calibration: {path}: no such calibration file")
        prof = _read_calibration(path)
        if prof.gpu.lower() != gpu.lower():
            raise ConfigError(f"step_time.calibration: {path} is a calibration for {prof.gpu}, "
                              f"but the fleet runs {gpu}; use a file fitted on {gpu}")
        return prof
    matches = [c for c in list_calibrations() if c.gpu.lower() == gpu.lower()]
    if family is not None:
        matches = [c for c in matches if c.vllm_family == family]
        if not matches:
            matches = [c for c in user_calibrations()
                       if c.gpu.lower() == gpu.lower() and c.vllm_family == family]
    if not matches:
        return None
    return sorted(matches, key=lambda c: _family_key(c.vllm_family))[-1]


def _family_key(family: str) -> tuple[int, ...]:
    parts = []
    for tok in family.replace("-", ".").split("."):
        parts.append(int(tok) if tok.isdigit() else -1)
    return tuple(parts)


# --------------------------------------------------------------------------------------------
# Memory budget of one replica (vLLM's determine_available_memory, made explicit)
# --------------------------------------------------------------------------------------------


class MemoryBudget(Strict):
    """Per-rank memory arithmetic of one replica, GiB."""

    usable_gib: float
    """gpu_memory_utilization × usable memory."""
    weights_gib: float
    """Weights on one rank."""
    activation_gib: float
    """Peak activation memory of a max_num_batched_tokens forward pass on one rank."""
    reserve_gib: float
    """Fixed non-torch + CUDA-graph reserve."""
    kv_cache_gib: float
    """What is left for the KV cache."""
    kv_bytes_per_token: int
    """KV bytes per token on one rank."""
    num_blocks: int
    """KV blocks of block_size tokens that fit."""
    block_size: int
    """Tokens per block."""

    @property
    def max_tokens(self) -> int:
        return self.num_blocks * self.block_size


def activation_bytes(model: ModelProfile, tp: int, max_num_batched_tokens: int,
                     max_num_seqs: int) -> float:
    """Peak activation memory of vLLM's profiling forward pass on one rank.

    NOTE: vLLM measures this by running a dummy batch of ``max_num_batched_tokens``; we estimate the
    live tensors of that pass: hidden states and residual (bf16), the fused QKV output, the gated MLP
    intermediate (2 × intermediate/tp, bf16; for MoE the top-k expert intermediates), plus fp32 logits
    for ``max_num_seqs`` sampled rows. Within ~0.5 GiB of what vLLM logs for Llama-3.1-8B/70B.
    """
    m = max_num_batched_tokens
    h = model.hidden_size
    qkv = (model.num_attention_heads + 2 * model.num_kv_heads) * model.head_dim / tp
    k = model.num_experts_per_token if model.is_moe else 1
    mlp = 2 * model.intermediate_size * k / tp
    per_token = 2.0 * (4 * h + qkv + mlp)
    logits = 4.0 * max_num_seqs * model.vocab_size / tp
    return m * per_token + logits


def memory_budget(
    model: ModelProfile,
    gpu: GpuProfile,
    *,
    tp: int,
    weight_dtype: str,
    kv_dtype: str,
    gpu_memory_utilization: float,
    block_size: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    reserve_gib: float,
) -> MemoryBudget:
    """KV-cache capacity of one replica: gmu × memory − weights/tp − activations − reserve."""
    usable = gpu_memory_utilization * gpu.usable_memory_gib
    weights = model.weight_bytes_per_rank(weight_dtype, tp) / GiB
    act = activation_bytes(model, tp, max_num_batched_tokens, max_num_seqs) / GiB
    kv = usable - weights - act - reserve_gib
    per_tok = model.kv_bytes_per_token(kv_dtype, tp)
    blocks = max(0, math.floor(kv * GiB / (per_tok * block_size))) if kv > 0 else 0
    return MemoryBudget(
        usable_gib=usable,
        weights_gib=weights,
        activation_gib=act,
        reserve_gib=reserve_gib,
        kv_cache_gib=kv,
        kv_bytes_per_token=per_tok,
        num_blocks=blocks,
        block_size=block_size,
    )

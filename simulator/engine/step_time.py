"""How long one engine step takes on a GPU: a roofline model of a vLLM forward pass.

What this models: one step of a tensor-parallel replica running the scheduler's batch (a mix of
prefill chunks and decodes, like vLLM v1's single flattened batch). Per TP rank:

- linear layers (QKV, O, MLP or the touched MoE experts) as GEMMs with M = scheduled tokens:
  time = max(FLOPs / (peak × eff(M)), weight bytes / (HBM × weight_bw_efficiency)),
  eff(M) = gemm_efficiency × M / (M + gemm_m_half) — skinny GEMMs waste the tensor cores;
- the LM head on the sampled rows only (one per sequence), its own roofline;
- attention: prefill chunks by causal FLOPs (4·d per query–key pair per head) over the tokens
  already in the cache plus the chunk; decodes by the KV bytes they read (paged, bandwidth-bound);
- tensor-parallel all-reduces: two per layer, ring cost latency + 2(tp−1)/tp × bytes / link;
- CPU-side overhead per step, per sequence and per token (scheduling, input preparation, sampling).

The efficiencies and overheads are data (``Calibration``), fitted per GPU by ``simulator.calibrate``.
Kernels of a step run back to back, so their times add. Leaves out: pipeline parallelism, expert
parallelism (TP shards experts), overlap of communication with compute, speculative decoding,
CUDA-graph padding of the decode batch, and GPU clock throttling (absorbed by the fitted efficiencies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from simulator.engine.scheduler import StepPlan
from simulator.profiles import BYTES_PER_PARAM, Calibration, GpuProfile, ModelProfile


class StepTimeModel(Protocol):
    """Anything that predicts the wall time of an engine step from its plan."""

    def predict(self, plan: StepPlan) -> float:
        """Seconds the step takes."""
        ...


@dataclass(frozen=True)
class StepBreakdown:
    """Seconds per component of one step (for tests, reports and calibration)."""

    gemm: float
    lm_head: float
    attention: float
    allreduce: float
    overhead: float

    @property
    def total(self) -> float:
        return self.gemm + self.lm_head + self.attention + self.allreduce + self.overhead


class RooflineStepTime:
    """The calibrated physical model (see module docstring)."""

    def __init__(self, model: ModelProfile, gpu: GpuProfile, *, tp: int, weight_dtype: str,
                 kv_dtype: str, calibration: Calibration) -> None:
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.cal = c = calibration
        wb = BYTES_PER_PARAM[weight_dtype]
        m = model
        L = m.num_layers
        # ---- linear layers, per rank -----------------------------------------------------
        embed_one = m.vocab_size * m.hidden_size
        # Active linear params per token, from the architecture (attention, router, top-k and
        # shared experts; the embedding lookup is free and the LM head is costed separately).
        # NOTE: published "active" counts disagree on whether they include embeddings.
        active_linear = float(m.derived_active_params() - m.embedding_params)
        self.linear_flops_per_token = 2.0 * active_linear / tp
        self.dense_linear_bytes = (L * m.attn_params_per_layer + L * m.router_params_per_layer)
        self.dense_linear_bytes *= wb / tp
        self.expert_bytes = m.expert_params * wb / tp  # one expert, one layer, one rank
        self.num_layers = L
        self.num_experts = m.num_experts
        self.top_k = m.num_experts_per_token
        self.shared_experts = m.num_shared_experts
        # Scale architecture bytes so that all weights together match the published total
        # (biases, norms and other small terms the architecture formula leaves out).
        self._param_scale = (m.total_params_b * 1e9) / m.derived_total_params()
        self.peak_flops = gpu.peak_tflops(weight_dtype) * 1e12
        self.bf16_flops = gpu.bf16_tflops * 1e12
        self.hbm = gpu.mem_bandwidth_gbps * 1e9
        # ---- LM head (bf16, vocab-parallel) ---------------------------------------------------
        self.lm_head_flops_per_seq = 2.0 * embed_one / tp
        self.lm_head_bytes = embed_one * BYTES_PER_PARAM["bf16"] / tp
        # ---- attention ---------------------------------------------------------------------------
        q_heads = max(1, m.num_attention_heads // tp)
        self.attn_flops_per_pair = 4.0 * L * q_heads * m.head_dim  # QK^T + PV, 2 FLOP per MAC
        self.kv_bytes_per_token = m.kv_bytes_per_token(kv_dtype, tp)
        # ---- tensor-parallel all-reduce -----------------------------------------------------------
        self.ar_bytes_per_token = m.hidden_size * BYTES_PER_PARAM["bf16"]
        self.ar_count = 2 * L if tp > 1 else 0
        self.ar_factor = 2.0 * (tp - 1) / tp if tp > 1 else 0.0
        self.link = gpu.link_bandwidth_gbps * 1e9
        self._eff_hbm_w = self.hbm * c.weight_bw_efficiency
        self._eff_hbm_kv = self.hbm * c.kv_bw_efficiency

    # --------------------------------------------------------------------------------------------
    def mlp_weight_bytes(self, num_tokens: int) -> float:
        """Weight bytes of the MLPs read by a step of ``num_tokens`` tokens (all layers, one rank).

        NOTE: for MoE, a batch of T tokens touches E × (1 − (1 − k/E)^T) distinct experts per layer
        in expectation (uniform routing); only those experts' weights are streamed.
        """
        if self.num_experts > 1:
            e, k = self.num_experts, self.top_k
            touched = e * (1.0 - (1.0 - k / e) ** num_tokens)
            touched += self.shared_experts
        else:
            touched = 1.0 + self.shared_experts
        return self.num_layers * touched * self.expert_bytes * self._param_scale

    def breakdown_totals(self, num_tokens: int, num_seqs: int, decode_ctx: int,
                         prefill: list[tuple[int, int]]) -> StepBreakdown:
        """Component times for a step given its totals.

        ``decode_ctx`` is the summed context of the one-token entries; ``prefill`` lists
        (new tokens, context before) of the multi-token entries.
        """
        c = self.cal
        if num_tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0)
        # Linear layers.
        eff = c.gemm_efficiency * num_tokens / (num_tokens + c.gemm_m_half)
        t_compute = self.linear_flops_per_token * num_tokens / (self.peak_flops * eff)
        w_bytes = self.dense_linear_bytes * self._param_scale + self.mlp_weight_bytes(num_tokens)
        t_gemm = max(t_compute, w_bytes / self._eff_hbm_w)
        # LM head on sampled rows.
        eff_lm = c.gemm_efficiency * num_seqs / (num_seqs + c.gemm_m_half)
        t_lm = max(self.lm_head_flops_per_seq * num_seqs / (self.bf16_flops * eff_lm),
                   self.lm_head_bytes / self._eff_hbm_w)
        # Attention.
        pairs = float(decode_ctx + num_seqs - len(prefill)) if num_seqs > len(prefill) else 0.0
        p_pairs = 0.0
        p_kv_tokens = 0
        for n, ctx in prefill:
            p_pairs += n * (ctx + (n + 1) / 2.0)
            p_kv_tokens += ctx + n
        t_dec = max(pairs * self.attn_flops_per_pair / (self.bf16_flops * c.attn_efficiency),
                    pairs * self.kv_bytes_per_token / self._eff_hbm_kv)
        t_pre = max(p_pairs * self.attn_flops_per_pair / (self.bf16_flops * c.attn_efficiency),
                    p_kv_tokens * self.kv_bytes_per_token / self._eff_hbm_kv)
        # All-reduce.
        t_ar = 0.0
        if self.ar_count:
            msg = num_tokens * self.ar_bytes_per_token
            per = c.allreduce_latency_us * 1e-6 + self.ar_factor * msg / (
                self.link * c.allreduce_bw_efficiency)
            t_ar = self.ar_count * per
        t_over = (c.step_overhead_us + c.per_seq_overhead_us * num_seqs
                  + c.per_token_overhead_us * num_tokens) * 1e-6
        return StepBreakdown(t_gemm, t_lm, t_dec + t_pre, t_ar, t_over)

    def breakdown(self, plan: StepPlan) -> StepBreakdown:
        decode_ctx = 0
        prefill: list[tuple[int, int]] = []
        for n, ctx in zip(plan.num_new_tokens, plan.context_lens, strict=True):
            if n == 1:
                decode_ctx += ctx
            else:
                prefill.append((n, ctx))
        return self.breakdown_totals(plan.num_tokens, plan.num_seqs, decode_ctx, prefill)

    def predict(self, plan: StepPlan) -> float:
        return self.breakdown(plan).total

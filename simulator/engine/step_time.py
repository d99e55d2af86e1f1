"""How long one engine step takes on a GPU: a roofline model of a vLLM forward pass.

What this models: one step of a tensor-parallel replica running the scheduler's batch (a mix of
prefill chunks and decodes, like vLLM v1's single flattened batch). Per TP rank, kernels of a step run
back to back, so their times add:

- dense linear layers (QKV, O, MLP gate-up and down; for MoE models QKV, O, the router and any
  shared experts) as GEMMs with M = scheduled tokens, one roofline per weight dtype:
  time = max(FLOPs / (peak × eff(M)), weight bytes / (HBM × weight_bw_efficiency)) + per-kernel
  latency, with eff(M) = gemm_efficiency[dtype] × M / (M + gemm_m_half) — skinny GEMMs waste the
  tensor cores. FP8 weights use the FP8 peak and ``gemm_efficiency_fp8``; int4/fp4 weight-only
  kernels dequantise, so they use the BF16 peak and ``gemm_efficiency`` with their smaller bytes.
  When the calibration sets ``gemm_nk_half*`` or ``fp8_act_quant``, each GEMM class (QKV, O,
  router, gate-up, down) gets its own roofline with eff × N·K / (N·K + nk_half) — small weight
  matrices fill the GPU poorly — and W8A8 FP8 layers pay vLLM's per-token activation quantisation
  as a separate kernel (read bf16, write fp8: 3 bytes per M × K element, plus a launch latency);
- MoE expert layers as one fused kernel per layer: a batch of T tokens touches E·(1 − (1 − k/E)^T)
  distinct experts in expectation (uniform routing), whose weights are streamed once; its FLOPs run
  at ``moe_efficiency`` (``moe_efficiency_fp8`` for FP8 experts) with the same small-M law at
  M = tokens per touched expert, its bytes at ``moe_bw_efficiency`` (``…_fp8``; 4-bit weight-only
  experts, e.g. gpt-oss MXFP4, use ``moe_*_fp4`` when the calibration has them);
- the LM head (bf16, vocab-parallel) on the sampled rows only (one per sequence), its own roofline;
- attention, one kernel call per layer: prefill chunks by causal FLOPs (4·head_dim per query–key pair
  per head) over the tokens already in the cache plus the chunk, at ``attn_efficiency`` scaled by
  K / (K + attn_kv_half) where K is the mean number of keys per prefill query; decodes by the paged KV
  bytes they read (bandwidth-bound, efficiency per KV dtype); plus a latency per call and a small
  cost per sequence per layer;
- tensor-parallel all-reduces: two per layer, latency + 2(tp−1)/tp × bytes / (link × efficiency);
- the other per-layer kernels (fused add + RMSNorm ×2, rotary, activation, KV-cache write): a fixed
  time per layer plus their activation bytes at HBM speed;
- CPU-side overhead per step, per sequence and per token (scheduling, input preparation, sampling).

Every physical count (FLOPs, weight, KV and activation bytes, kernel and all-reduce counts) comes from
the model's architecture; the efficiencies, latencies and overheads are data (``Calibration``), fitted
per GPU by :mod:`simulator.calibrate.fit` with the same kernel formulas (the ``*_seconds`` functions
below). Leaves out: pipeline parallelism, expert parallelism (TP shards experts), overlap of
communication with compute, speculative decoding, CUDA-graph padding of the decode batch, routing
skew between experts, and GPU clock throttling (absorbed by the fitted efficiencies).

Why one module (~720 lines): the fitter prices the measured kernels with the very ``*_seconds``
functions the step's total is built from, and the compiled engine calls them inline per step; split
apart, the formulas the calibration fits and the ones the simulation runs could drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import numpy as np

from simulator.engine.scheduler import StepPlan
from simulator.profiles import BYTES_PER_PARAM, Calibration, GpuProfile, ModelProfile

#: A float or a numpy array of floats: every formula below works elementwise on both, so the
#: simulator calls it with scalars per step and the fitter with arrays of many steps at once.
#: NOTE: spelled Any, not ``float | np.ndarray``: the install compiles this module with numpy
#: invisible to mypyc (simulator/_native.py BUILD_MYPY_CONFIG), where that union collapses to a
#: float and the compiled functions refuse the fitter's arrays. The hot paths (predict_totals,
#: the decode run-ahead) are annotated float.
Num: TypeAlias = Any

US = 1e-6
SHAPE_CACHE_SIZE = 65_536
"""Step shapes (tokens, sequences) whose shape-only terms a step model keeps (then starts afresh)."""


class StepTimeModel(Protocol):
    """Anything that predicts the wall time of an engine step from its plan."""

    def predict(self, plan: StepPlan) -> float:
        """Seconds the step takes."""
        ...


@dataclass(frozen=True)
class StepBreakdown:
    """Seconds per component of one step (for tests, reports and calibration)."""

    gemm: float
    """Linear layers: dense GEMMs and MoE expert layers."""
    lm_head: float
    """LM head on the sampled rows."""
    attention: float
    """Prefill and decode attention."""
    allreduce: float
    """Tensor-parallel all-reduces."""
    overhead: float
    """CPU-side cost (per step, per sequence, per token)."""
    other: float = 0.0
    """Other per-layer GPU kernels: norms, rotary, activation, KV-cache writes."""

    @property
    def total(self) -> float:
        return self.gemm + self.lm_head + self.attention + self.allreduce + self.overhead + self.other


def prefill_sums(prefill: list[tuple[int, int]], window: int = 0
                 ) -> tuple[int, float, int, float, int]:
    """Over a step's prefill chunks, each (new tokens n, context before): Σ n, the query-key pairs
    Σ n (context + (n + 1) / 2), the KV tokens read Σ (context + n), and the same pairs and KV
    tokens for a layer with a sliding ``window`` (0: none)."""
    p_tok = 0
    p_pairs = 0.0
    p_kv = 0
    w_pairs = 0.0
    w_kv = 0
    for n, ctx in prefill:
        p_tok += n
        p_pairs += n * (ctx + (n + 1) / 2.0)
        p_kv += ctx + n
        if window:
            # Query t (1..n) sees min(ctx + t, window) keys: a ramp up to the window, then flat.
            k = max(0, min(n, window - ctx))
            w_pairs += k * (ctx + (k + 1) / 2.0) + (n - k) * float(window)
            w_kv += min(ctx, window) + n
    return p_tok, p_pairs, p_kv, w_pairs, w_kv


@dataclass(frozen=True)
class StepFeatures:
    """What the step-time model needs to know about a step, independent of the calibration.

    Fields are floats (one step) or numpy arrays of equal shape (many steps, for fitting).
    """

    num_tokens: Num
    """Scheduled tokens (GEMM M)."""
    num_seqs: Num
    """Scheduled sequences (rows sampled by the LM head)."""
    num_decodes: Num
    """Sequences with one new token."""
    decode_pairs: Num
    """Query–key pairs of the decodes: Σ (context + 1)."""
    prefill_tokens: Num
    """New tokens of the multi-token entries."""
    prefill_pairs: Num
    """Causal query–key pairs of the multi-token entries: Σ n·(context + (n + 1)/2)."""
    prefill_kv_tokens: Num
    """KV tokens the multi-token entries touch: Σ (context + n)."""
    steps: Num = 1.0
    """Steps this row stands for: >1 only for runs of decode-only steps of equal shape (same
    tokens and sequences), whose ``decode_pairs`` are then summed — every term is either the same
    each step or linear in the pairs, so the row's time is exactly the run's total."""
    window_prefill_pairs: Num = 0.0
    """``prefill_pairs`` of a sliding-window layer: each query sees at most the window."""
    window_prefill_kv_tokens: Num = 0.0
    """``prefill_kv_tokens`` of a sliding-window layer: Σ (min(context, window) + n)."""

    @classmethod
    def from_totals(cls, num_tokens: int, num_seqs: int, decode_ctx: int,
                    prefill: list[tuple[int, int]], window: int = 0) -> StepFeatures:
        """From the step's totals: summed decode context and (new tokens, context) per prefill;
        ``window`` > 0 also counts the prefill pairs of a layer with that sliding window."""
        n_dec = num_seqs - len(prefill)
        p_tok, p_pairs, p_kv, w_pairs, w_kv = prefill_sums(prefill, window)
        return cls(float(num_tokens), float(num_seqs), float(n_dec),
                   float(decode_ctx + n_dec) if n_dec > 0 else 0.0, float(p_tok), p_pairs,
                   float(p_kv), 1.0, w_pairs, float(w_kv))

    @classmethod
    def from_plan(cls, plan: StepPlan, window: int = 0) -> StepFeatures:
        decode_ctx, prefill = split_plan(plan)
        return cls.from_totals(plan.num_tokens, plan.num_seqs, decode_ctx, prefill, window)


def split_plan(plan: StepPlan) -> tuple[int, list[tuple[int, int]]]:
    """A step's requests as the step-time models see them: the summed context of its decodes
    (one new token each) and the (new tokens, context) of each prefill chunk."""
    decode_ctx = 0
    prefill: list[tuple[int, int]] = []
    for n, ctx in zip(plan.num_new_tokens, plan.context_lens, strict=True):
        if n == 1:
            decode_ctx += ctx
        else:
            prefill.append((n, ctx))
    return decode_ctx, prefill


def _max(a: Num, b: Num) -> Num:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a >= b else b


def _min(a: Num, b: Num) -> Num:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a <= b else b


def _pos(x: Num) -> Num:
    """x where x > 0, else a tiny positive number (keeps the small-M law finite at M = 0)."""
    if isinstance(x, np.ndarray):
        return np.maximum(x, 1e-9)
    return x if x > 1e-9 else 1e-9


# --------------------------------------------------------------------------------------------
# Kernel formulas (shared by the step model and the fitter)
# --------------------------------------------------------------------------------------------


def gemm_seconds(m: Num, flops: Num, weight_bytes: Num, *, peak_flops: Num, efficiency: Num,
                 m_half: float, hbm_bps: float, bw_efficiency: Num, latency_s: float,
                 kernels: float = 1.0) -> Num:
    """Roofline of ``kernels`` GEMMs with M = ``m`` rows, ``flops`` FLOPs and ``weight_bytes`` of
    weights in total: max(compute at eff(M), weight streaming) + kernels × latency."""
    mm = _pos(m)
    eff = efficiency * mm / (mm + m_half)
    return _max(flops / (peak_flops * eff), weight_bytes / (hbm_bps * bw_efficiency)) \
        + kernels * latency_s


def prefill_attention_seconds(pairs: Num, tokens: Num, kv_tokens: Num, *, flops_per_pair: Num,
                              kv_bytes_per_token: Num, peak_flops: float, efficiency: float,
                              kv_half: float, hbm_bps: float, kv_bw_efficiency: Num) -> Num:
    """Causal (flash) attention of prefill chunks, excluding the per-call latency.

    ``pairs`` query–key pairs, ``tokens`` queries, ``kv_tokens`` cached + new keys read. Efficiency
    grows with the mean keys per query K = pairs / tokens as K / (K + kv_half)."""
    keys = pairs / _pos(tokens)
    eff = efficiency * keys / (keys + kv_half) if kv_half > 0 else efficiency
    eff = _pos(eff)
    return _max(pairs * flops_per_pair / (peak_flops * eff),
                kv_tokens * kv_bytes_per_token / (hbm_bps * kv_bw_efficiency))


def decode_attention_seconds(pairs: Num, *, flops_per_pair: Num, kv_bytes_per_token: Num,
                             peak_flops: float, efficiency: float, hbm_bps: float,
                             kv_bw_efficiency: Num) -> Num:
    """Paged decode attention reading ``pairs`` KV tokens, excluding the per-call latency."""
    return _max(pairs * flops_per_pair / (peak_flops * efficiency),
                pairs * kv_bytes_per_token / (hbm_bps * kv_bw_efficiency))


def allreduce_seconds(message_bytes: Num, tp: int, *, link_bps: float, latency_s: float,
                      bw_efficiency: float) -> Num:
    """One ring all-reduce of ``message_bytes`` over ``tp`` GPUs (zero when tp = 1)."""
    if tp <= 1:
        return message_bytes * 0.0
    return latency_s + 2.0 * (tp - 1) / tp * message_bytes / (link_bps * bw_efficiency)


def touched_experts(num_experts: Num, top_k: Num, num_tokens: Num) -> Num:
    """Expected distinct experts a batch of ``num_tokens`` tokens routes to (uniform routing):
    E·(1 − (1 − k/E)^T) — k at T = 1, approaching E for large T."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


# --------------------------------------------------------------------------------------------
# The step model
# --------------------------------------------------------------------------------------------


class RooflineStepTime:
    """The calibrated physical model (see module docstring)."""

    def __init__(self, model: ModelProfile, gpu: GpuProfile, *, tp: int, weight_dtype: str,
                 kv_dtype: str, calibration: Calibration, scheduler_steps: int = 1) -> None:
        self.model = model
        self.gpu = gpu
        self.tp = tp
        self.weight_dtype = weight_dtype
        self.kv_dtype = kv_dtype
        self.cal = c = calibration
        self.scheduler_steps = scheduler_steps
        """Decode steps per scheduling pass (V0 multi-step): their CPU overhead is shared."""
        wb = BYTES_PER_PARAM[weight_dtype]
        m = model
        L = m.num_layers
        h = m.hidden_size
        self.num_layers = L
        self.num_experts = m.num_experts
        self.top_k = m.num_experts_per_token
        self.shared_experts = m.num_shared_experts
        self.is_moe = m.is_moe
        # Scale architecture bytes so that all weights together match the published total
        # (biases, norms and other small terms the architecture formula leaves out).
        self._param_scale = (m.total_params_b * 1e9) / m.derived_total_params()
        # ---- linear layers, per rank -----------------------------------------------------
        # Active linear params per token, from the architecture (attention, router, top-k and
        # shared experts; the embedding lookup is free and the LM head is costed separately).
        # NOTE: published "active" counts disagree on whether they include embeddings.
        active_linear = float(m.derived_active_params() - m.embedding_params)
        self.linear_flops_per_token = 2.0 * active_linear / tp
        dense_mlps = self.shared_experts + (0 if self.is_moe else 1)
        dense_params = L * (m.attn_params_per_layer + m.router_params_per_layer
                            + dense_mlps * m.expert_params)
        self.dense_flops_per_token = 2.0 * dense_params / tp
        self.dense_bytes = dense_params * wb / tp * self._param_scale
        self.expert_flops_per_token = (2.0 * L * self.top_k * m.expert_params / tp
                                       if self.is_moe else 0.0)
        self.expert_bytes = m.expert_params * wb / tp * self._param_scale  # one expert, layer, rank
        # Kernels per step: QKV + O, the router, gate-up + down per dense MLP.
        self.dense_gemm_kernels = L * (2 + (1 if self.is_moe else 0) + 2 * dense_mlps)
        # Per-rank (N, K, kernels per layer) of each dense GEMM class, for the size law and the
        # FP8 activation quantisation (used only when the calibration enables them).
        q_rank = max(1, m.num_attention_heads // tp) * m.head_dim
        kv_rank = m.kv_heads_per_rank(tp) * m.head_dim
        inter_rank = m.intermediate_size // tp
        shapes = [(q_rank + 2 * kv_rank, h, 1), (h, q_rank, 1)]
        if self.is_moe:
            shapes.append((m.num_experts, h, 1))
        if dense_mlps:
            shapes += [(2 * inter_rank, h, dense_mlps), (h, inter_rank, dense_mlps)]
        self.gemm_classes = [(float(n), float(k), float(cnt)) for n, k, cnt in shapes]
        self.weight_bytes_per_param = wb
        self.fp8_gemm = weight_dtype == "fp8" and bool(gpu.fp8_tflops)
        self.sized_gemms = (c.gemm_nk_half > 0 or c.gemm_nk_half_fp8 > 0
                            or (c.fp8_act_quant and self.fp8_gemm))
        if weight_dtype == "fp8" and gpu.fp8_tflops:
            self.peak_flops, self.gemm_eff = gpu.fp8_tflops * 1e12, c.gemm_efficiency_fp8
            self.moe_eff, self.moe_bw = c.moe_efficiency_fp8, c.moe_bw_efficiency_fp8
        else:
            self.peak_flops, self.gemm_eff = gpu.peak_tflops(weight_dtype) * 1e12, c.gemm_efficiency
            self.moe_eff, self.moe_bw = c.moe_efficiency, c.moe_bw_efficiency
        self.moe_latency_us = c.moe_latency_us
        self.moe_m_half = c.moe_m_half or c.gemm_m_half
        if weight_dtype in ("fp4", "int4"):
            self.moe_m_half = c.moe_m_half_fp4 or self.moe_m_half
            if c.moe_efficiency_fp4 is not None:
                self.moe_eff = c.moe_efficiency_fp4
            if c.moe_bw_efficiency_fp4 is not None:
                self.moe_bw = c.moe_bw_efficiency_fp4
            if c.moe_latency_us_fp4 is not None:
                self.moe_latency_us = c.moe_latency_us_fp4
        self.bf16_flops = gpu.bf16_tflops * 1e12
        self.hbm = gpu.mem_bandwidth_gbps * 1e9
        # NOTE: the attention coefficients predict_totals reads every step, kept as plain floats
        # like the terms above (the calibration is frozen): a pydantic attribute read is a Python
        # lookup even from compiled code. The same values, so the same arithmetic, bit for bit.
        self.attn_eff = float(c.attn_efficiency)
        self.attn_kv_half = float(c.attn_kv_half)
        self.attn_par_half = float(c.attn_par_half)
        self.attn_latency_us = float(c.attn_latency_us)
        self.attn_per_seq_us = float(c.attn_per_seq_us)
        # ---- LM head (bf16, vocab-parallel) ---------------------------------------------------
        embed_one = m.vocab_size * h
        self.lm_head_flops_per_seq = 2.0 * embed_one / tp
        self.lm_head_bytes = embed_one * BYTES_PER_PARAM["bf16"] / tp
        lm_nk = embed_one / tp
        self.lm_head_eff = c.gemm_efficiency * lm_nk / (lm_nk + c.gemm_nk_half)
        # ---- attention ---------------------------------------------------------------------------
        q_heads = max(1, m.num_attention_heads // tp)
        self.kv_bytes_per_token = m.kv_bytes_per_token(kv_dtype, tp)
        # Sliding-window layers (gpt-oss) attend to at most ``window`` keys per query: priced
        # apart. attn_flops_per_pair / attn_kv_bytes_per_token cover the full-attention layers.
        n_win = m.sliding_window_layers if m.sliding_window else 0
        self.window = int(m.sliding_window or 0) if n_win else 0
        self.attn_flops_per_pair = 4.0 * (L - n_win) * q_heads * m.head_dim  # QK^T + PV
        self.attn_kv_bytes_per_token: float = float(self.kv_bytes_per_token)
        self.win_flops_per_pair = 4.0 * n_win * q_heads * m.head_dim
        self.win_kv_bytes_per_token = 0.0
        if n_win:
            self.attn_kv_bytes_per_token = self.kv_bytes_per_token * (L - n_win) / L
            self.win_kv_bytes_per_token = self.kv_bytes_per_token * n_win / L
        self.kv_eff = c.kv_bw_efficiency_fp8 if kv_dtype == "fp8" else c.kv_bw_efficiency
        self.kv_heads_rank = float(m.kv_heads_per_rank(tp))
        # ---- tensor-parallel all-reduce -----------------------------------------------------------
        self.ar_bytes_per_token = h * BYTES_PER_PARAM["bf16"]
        self.ar_count = 2 * L if tp > 1 else 0
        self.link = gpu.link_bandwidth_gbps * 1e9
        self.ar_latency_s = c.allreduce_latency_us_by_tp.get(tp, c.allreduce_latency_us) * US
        self.ar_bw_eff = c.allreduce_bw_efficiency_by_tp.get(tp, c.allreduce_bw_efficiency)
        # ---- other per-layer kernels: activation bytes per token (bf16), all layers, one rank.
        # Two fused add+RMSNorm (read x and residual, write both: 4h each), rotary on q and k in
        # place, SiLU-and-mul (read 2I, write I), KV-cache write (read k, v; write the cache).
        q_dim = q_heads * m.head_dim
        kv_dim = m.kv_heads_per_rank(tp) * m.head_dim
        inter = (m.intermediate_size * (self.top_k if self.is_moe else 1)
                 + m.intermediate_size * self.shared_experts) / tp
        elems = 8 * h + 2 * (q_dim + kv_dim) + 3 * inter + 2 * kv_dim
        self.act_bytes_per_token = L * elems * BYTES_PER_PARAM["bf16"] + self.kv_bytes_per_token
        self._shapes: dict[tuple[int, int], tuple[Num, Num, Num, Num]] = {}
        """(tokens, sequences) → shape-only terms of :meth:`predict_totals`."""
        self._by_tokens: dict[int, tuple[Num, Num, Num]] = {}
        """tokens → :meth:`_token_terms`."""
        self._by_seqs: dict[int, Num] = {}
        self._shapes_f: dict[int, tuple[float, float, float, float]] = {}
        """:meth:`_shape` as floats, by ``tokens · 2²¹ + sequences`` (:meth:`predict_totals`)."""
        """sequences → :meth:`_lm_head`."""

    # --------------------------------------------------------------------------------------------
    def sized_gemm_seconds(self, num_tokens: Num) -> Num:
        """Dense linear layers costed one GEMM class at a time (QKV, O, router, gate-up, down), each
        with its own roofline at efficiency eff(M) × N·K / (N·K + nk_half), plus — for W8A8 FP8
        with ``fp8_act_quant`` — the activation quantisation kernel before each GEMM."""
        c = self.cal
        T = num_tokens
        L = float(self.num_layers)
        nk_half = c.gemm_nk_half_fp8 if self.fp8_gemm else c.gemm_nk_half
        quant = c.fp8_act_quant and self.fp8_gemm
        t: Num = 0.0
        for n, k, cnt in self.gemm_classes:
            nk = n * k
            eff = self.gemm_eff * nk / (nk + nk_half)
            kernels = L * cnt
            t = t + gemm_seconds(T, 2.0 * nk * kernels * T,
                                 nk * kernels * self.weight_bytes_per_param * self._param_scale,
                                 peak_flops=self.peak_flops, efficiency=eff,
                                 m_half=c.gemm_m_half, hbm_bps=self.hbm,
                                 bw_efficiency=c.weight_bw_efficiency,
                                 latency_s=c.gemm_latency_us * US, kernels=kernels)
            if quant:
                t = t + kernels * (3.0 * T * k / (self.hbm * c.weight_bw_efficiency)
                                   + c.fp8_act_quant_latency_us * US)
        return t

    def touched(self, num_tokens: Num) -> Num:
        """Distinct routed experts per MoE layer a step of ``num_tokens`` tokens streams."""
        if not self.is_moe:
            return num_tokens * 0.0
        return touched_experts(self.num_experts, self.top_k, num_tokens)

    def mlp_weight_bytes(self, num_tokens: int) -> float:
        """Weight bytes of the MLPs read by a step of ``num_tokens`` tokens (all layers, one rank):
        the dense MLP, or the touched routed experts plus the shared ones."""
        per_layer = (self.shared_experts + (0 if self.is_moe else 1)
                     + float(self.touched(float(num_tokens))))
        return self.num_layers * per_layer * self.expert_bytes

    def weight_bytes_per_step(self, num_tokens: int) -> float:
        """Weight bytes one step streams on one rank: dense layers, touched experts, LM head."""
        routed = self.num_layers * float(self.touched(float(num_tokens))) * self.expert_bytes
        return self.dense_bytes + routed + self.lm_head_bytes

    def linear_flops(self, num_tokens: int) -> float:
        """FLOPs of the linear layers (excluding the LM head) for ``num_tokens`` tokens, one rank."""
        return self.linear_flops_per_token * num_tokens

    # --------------------------------------------------------------------------------------------
    def _shape_terms(self, T: Num, S: Num) -> tuple[Num, Num, Num, Num, Num]:
        """Seconds of one step that depend only on its tokens ``T`` and sequences ``S``: (dense
        and MoE GEMMs, LM head, all-reduce, CPU overhead, other per-layer kernels)."""
        t_gemm, t_ar, t_other = self._token_terms(T)
        return t_gemm, self._lm_head(S), t_ar, self._overhead(T, S), t_other

    def _token_terms(self, T: Num) -> tuple[Num, Num, Num]:
        """The terms that depend only on the tokens ``T``: (dense and MoE GEMMs, all-reduce, other
        per-layer kernels)."""
        c = self.cal
        L = self.num_layers
        # Dense linear layers.
        if self.sized_gemms:
            t_gemm = self.sized_gemm_seconds(T)
        else:
            t_gemm = gemm_seconds(T, self.dense_flops_per_token * T, self.dense_bytes,
                                  peak_flops=self.peak_flops, efficiency=self.gemm_eff,
                                  m_half=c.gemm_m_half, hbm_bps=self.hbm,
                                  bw_efficiency=c.weight_bw_efficiency,
                                  latency_s=c.gemm_latency_us * US,
                                  kernels=self.dense_gemm_kernels)
        # MoE expert layers.
        if self.is_moe:
            touched = self.touched(T)
            per_expert = self.top_k * T / _pos(touched)
            t_gemm = t_gemm + gemm_seconds(
                per_expert, self.expert_flops_per_token * T, L * touched * self.expert_bytes,
                peak_flops=self.peak_flops, efficiency=self.moe_eff, m_half=self.moe_m_half,
                hbm_bps=self.hbm, bw_efficiency=self.moe_bw,
                latency_s=self.moe_latency_us * US, kernels=L)
        # All-reduce.
        t_ar = self.ar_count * allreduce_seconds(
            T * self.ar_bytes_per_token, self.tp, link_bps=self.link,
            latency_s=self.ar_latency_s, bw_efficiency=self.ar_bw_eff)
        # Other per-layer kernels.
        t_other = L * c.layer_overhead_us * US + T * self.act_bytes_per_token / (
            self.hbm * c.weight_bw_efficiency)
        return t_gemm, t_ar, t_other

    def _lm_head(self, S: Num) -> Num:
        """The LM head on the ``S`` sampled rows."""
        c = self.cal
        return gemm_seconds(S, self.lm_head_flops_per_seq * S, self.lm_head_bytes,
                            peak_flops=self.bf16_flops, efficiency=self.lm_head_eff,
                            m_half=c.gemm_m_half, hbm_bps=self.hbm,
                            bw_efficiency=c.weight_bw_efficiency, latency_s=c.gemm_latency_us * US)

    def _overhead(self, T: Num, S: Num) -> Num:
        """CPU-side overhead of a step of ``T`` tokens and ``S`` sequences. With V0 multi-step
        scheduling (``scheduler_steps`` n > 1) a decode-only step (T = S) pays 1/n of the step and
        per-sequence overhead: the pass schedules, prepares inputs and syncs once for n steps."""
        c = self.cal
        # NOTE: annotated: compiled, an inferred float local would refuse the fitter's arrays.
        per_step: Num = c.step_overhead_us + c.per_seq_overhead_us * S
        n = self.scheduler_steps
        if n > 1:
            if isinstance(T, np.ndarray) or isinstance(S, np.ndarray):
                per_step = per_step * np.where(np.asarray(T) == np.asarray(S), 1.0 / n, 1.0)
            elif T == S:
                per_step = per_step / n
        return (per_step + c.per_token_overhead_us * T) * US

    def decode_kv_eff(self, num_decodes: Num) -> Num:
        """Bandwidth efficiency of the decode-attention kernel for ``num_decodes`` sequences:
        ``kv_bw_efficiency`` × P / (P + attn_par_half), P = sequences × KV heads per rank."""
        ph = self.attn_par_half
        if ph <= 0:
            return self.kv_eff
        par = _pos(num_decodes * self.kv_heads_rank)
        return self.kv_eff * par / (par + ph)

    def _attention_layers(self, decode_pairs: Num, prefill_pairs: Num, prefill_tokens: Num,
                          prefill_kv_tokens: Num, flops_per_pair: float,
                          kv_bytes_per_token: float, num_decodes: Num = 1.0) -> Num:
        """Decode + prefill attention of one group of layers (FLOPs and KV bytes summed over the
        group), excluding the per-call latency."""
        c = self.cal
        t_dec = decode_attention_seconds(
            decode_pairs, flops_per_pair=flops_per_pair, kv_bytes_per_token=kv_bytes_per_token,
            peak_flops=self.bf16_flops, efficiency=c.attn_efficiency, hbm_bps=self.hbm,
            kv_bw_efficiency=self.decode_kv_eff(num_decodes))
        t_pre = prefill_attention_seconds(
            prefill_pairs, prefill_tokens, prefill_kv_tokens, flops_per_pair=flops_per_pair,
            kv_bytes_per_token=kv_bytes_per_token, peak_flops=self.bf16_flops,
            efficiency=c.attn_efficiency, kv_half=c.attn_kv_half, hbm_bps=self.hbm,
            kv_bw_efficiency=self.kv_eff)
        return t_dec + t_pre

    def _attention(self, f: StepFeatures) -> Num:
        """Attention seconds of ``f``: one kernel per layer for the whole mixed batch.

        Sliding-window layers: a decode reads min(context + 1, window) keys, taken as
        min(Σ (context + 1), decodes × window) — exact whenever every decode's context has reached
        the window (or none has), which is every decode of a prompt longer than the window."""
        c = self.cal
        att = self._attention_layers(f.decode_pairs, f.prefill_pairs, f.prefill_tokens,
                                     f.prefill_kv_tokens, self.attn_flops_per_pair,
                                     self.attn_kv_bytes_per_token, f.num_decodes)
        if self.window:
            att = att + self._attention_layers(
                _min(f.decode_pairs, f.num_decodes * float(self.window)), f.window_prefill_pairs,
                f.prefill_tokens, f.window_prefill_kv_tokens, self.win_flops_per_pair,
                self.win_kv_bytes_per_token, f.num_decodes)
        return att + f.steps * self.num_layers * (
            c.attn_latency_us + c.attn_per_seq_us * f.num_seqs) * US

    def components(self, f: StepFeatures) -> tuple[Num, Num, Num, Num, Num, Num]:
        """(gemm, lm_head, attention, allreduce, overhead, other) seconds for ``f`` — floats for one
        step, arrays for many. The single implementation of the physics."""
        n = f.steps
        t_gemm, t_lm, t_ar, t_over, t_other = self._shape_terms(f.num_tokens, f.num_seqs)
        return n * t_gemm, n * t_lm, self._attention(f), n * t_ar, n * t_over, n * t_other

    def total(self, f: StepFeatures) -> Num:
        """Step seconds for ``f`` (array in, array out)."""
        g, lm, a, ar, o, x = self.components(f)
        return g + lm + a + ar + o + x

    def breakdown_totals(self, num_tokens: int, num_seqs: int, decode_ctx: int,
                         prefill: list[tuple[int, int]]) -> StepBreakdown:
        """Component times for a step given its totals.

        ``decode_ctx`` is the summed context of the one-token entries; ``prefill`` lists
        (new tokens, context before) of the multi-token entries.
        """
        if num_tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        f = StepFeatures.from_totals(num_tokens, num_seqs, decode_ctx, prefill, self.window)
        g, lm, a, ar, o, x = self.components(f)
        return StepBreakdown(float(g), float(lm), float(a), float(ar), float(o), float(x))

    def breakdown(self, plan: StepPlan) -> StepBreakdown:
        if plan.num_tokens <= 0:
            return StepBreakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        g, lm, a, ar, o, x = self.components(StepFeatures.from_plan(plan, self.window))
        return StepBreakdown(float(g), float(lm), float(a), float(ar), float(o), float(x))

    def predict(self, plan: StepPlan) -> float:
        if plan.num_tokens <= 0:
            return 0.0
        return float(self.total(StepFeatures.from_plan(plan, self.window)))

    def _shape(self, num_tokens: int, num_seqs: int) -> tuple[Num, Num, Num, Num]:
        """(gemm + lm_head, allreduce, overhead, other) of one step of this shape, cached — and
        on a miss the token terms and the LM head are cached apart (mixed steps repeat token
        counts and batch sizes far more often than the pair of them)."""
        key = (num_tokens, num_seqs)
        shape = self._shapes.get(key)
        if shape is None:
            tok = self._by_tokens.get(num_tokens)
            if tok is None:
                tok = self._token_terms(float(num_tokens))
                if len(self._by_tokens) >= SHAPE_CACHE_SIZE:
                    self._by_tokens.clear()
                self._by_tokens[num_tokens] = tok
            lm = self._by_seqs.get(num_seqs)
            if lm is None:
                lm = self._by_seqs[num_seqs] = self._lm_head(float(num_seqs))
            g, ar, x = tok
            o = self._overhead(float(num_tokens), float(num_seqs))
            # NOTE: total() adds g + lm + attention + ar + o + x left to right (one step: n = 1.0
            # scales nothing), so caching g + lm and adding the rest in order is the same number.
            shape = (g + lm, ar, o, x)
            if len(self._shapes) >= SHAPE_CACHE_SIZE:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape

    def _decode_consts(self, n: int) -> tuple[float, float, float, float, float, float, float,
                                              float, float]:
        """The constants of a decode-only step of ``n`` sequences (see :meth:`decode_terms`)."""
        gl, ar, o, x = self._shape(n, n)
        c = self.cal
        fpp, d_flops = self.attn_flops_per_pair, self.bf16_flops * c.attn_efficiency
        kvb = self.attn_kv_bytes_per_token
        d_bytes = self.hbm * float(self.decode_kv_eff(float(n)))
        # _attention() with no prefill: t_dec + 0.0 + the per-layer launches (t_dec ≥ 0, so
        # adding the prefill's exact 0.0 changes nothing).
        launches = 1.0 * self.num_layers * (c.attn_latency_us + c.attn_per_seq_us * float(n)) * US
        return fpp, d_flops, kvb, d_bytes, launches, float(gl), float(ar), float(o), float(x)

    def decode_terms(self, num_seqs: int) -> tuple[float, float, float, float, float, float,
                                                   float, float, float] | None:
        """:meth:`decode_seconds_fn` as constants, for a loop that evaluates it inline (the
        replica's run-ahead, where a call per step costs): ``(fpp, d_flops, kvb, d_bytes,
        launches, gl, ar, o, x)``, and the step of summed context ``ctx`` takes, bit for bit,
        ``float(gl + ((a if a >= b else b) + launches) + ar + o + x)`` with ``pairs =
        float(ctx + num_seqs)``, ``a = pairs * fpp / d_flops``, ``b = pairs * kvb / d_bytes``.
        None for a model with sliding-window layers (use :meth:`decode_seconds_fn`)."""
        return None if self.window else self._decode_consts(num_seqs)

    def decode_seconds_fn(self, num_seqs: int) -> Callable[[int], float]:
        """Step seconds of a decode-only step of ``num_seqs`` sequences as a function of their
        summed context: ``predict_totals(num_seqs, num_seqs, ctx, [])``, bit for bit, at a
        fraction of the cost (the replica runs ahead over millions of such steps). The terms of
        :meth:`components` are the same; only the constants are taken out of the loop."""
        n = num_seqs
        fpp, d_flops, kvb, d_bytes, launches, gl, ar, o, x = self._decode_consts(n)
        if self.window:
            wfpp, wkvb = self.win_flops_per_pair, self.win_kv_bytes_per_token
            cap = float(n) * float(self.window)

            def seconds_win(decode_ctx: int) -> float:
                pairs = float(decode_ctx + n)
                a = pairs * fpp / d_flops
                b = pairs * kvb / d_bytes
                wp = pairs if pairs <= cap else cap
                wa = wp * wfpp / d_flops
                wb = wp * wkvb / d_bytes
                att = (a if a >= b else b) + ((wa if wa >= wb else wb) + 0.0)
                return float(gl + (att + launches) + ar + o + x)

            return seconds_win

        def seconds(decode_ctx: int) -> float:
            pairs = float(decode_ctx + n)
            a = pairs * fpp / d_flops
            b = pairs * kvb / d_bytes
            return float(gl + ((a if a >= b else b) + launches) + ar + o + x)

        return seconds

    def predict_totals(self, num_tokens: int, num_seqs: int, decode_ctx: int,
                       prefill: list[tuple[int, int]]) -> float:
        """:meth:`predict` of a step given its totals (see :meth:`breakdown_totals`) — the same
        number, bit for bit, without building the plan (the replica's decode fast path). The terms
        that depend only on (tokens, sequences) are cached: a serving run repeats a few thousand
        shapes millions of times; only the attention is evaluated every step, as
        :meth:`_attention` of :meth:`StepFeatures.from_totals` would, in scalar arithmetic with
        the same operations in the same order."""
        if num_tokens <= 0:
            return 0.0
        gl, ar, o, x = self._shape_f(num_tokens, num_seqs)
        window = self.window
        n_dec = num_seqs - len(prefill)
        p_tok, p_pairs, p_kv, w_pairs, w_kv = prefill_sums(prefill, window)
        d_pairs = float(decode_ctx + n_dec) if n_dec > 0 else 0.0
        d_flops = self.bf16_flops * self.attn_eff
        p_bytes = self.hbm * self.kv_eff
        d_bytes = (self.hbm * self._decode_kv_eff_f(float(n_dec)) if self.attn_par_half > 0
                   else p_bytes)
        att = self._pair_seconds(d_pairs, float(p_tok), p_pairs, float(p_kv),
                                 self.attn_flops_per_pair, self.attn_kv_bytes_per_token,
                                 d_flops, d_bytes, p_bytes)
        if window:
            cap = float(n_dec) * float(window)
            att = att + self._pair_seconds(d_pairs if d_pairs <= cap else cap, float(p_tok),
                                           w_pairs, float(w_kv), self.win_flops_per_pair,
                                           self.win_kv_bytes_per_token, d_flops, d_bytes,
                                           p_bytes)
        att = att + 1.0 * self.num_layers * (self.attn_latency_us
                                             + self.attn_per_seq_us * float(num_seqs)) * US
        return float(gl + att + ar + o + x)

    def _shape_f(self, num_tokens: int, num_seqs: int) -> tuple[float, float, float, float]:
        """:meth:`_shape` as floats, cached by one int (a tuple key is built, hashed and compared
        on every lookup; the four sums after it were additions of untyped values)."""
        if not 0 <= num_seqs < 2_097_152:
            gl, ar, o, x = self._shape(num_tokens, num_seqs)
            return float(gl), float(ar), float(o), float(x)
        key = num_tokens * 2_097_152 + num_seqs
        got = self._shapes_f.get(key)
        if got is None:
            gl, ar, o, x = self._shape(num_tokens, num_seqs)
            got = (float(gl), float(ar), float(o), float(x))
            if len(self._shapes_f) >= SHAPE_CACHE_SIZE:
                self._shapes_f.clear()
            self._shapes_f[key] = got
        return got

    def _decode_kv_eff_f(self, num_decodes: float) -> float:
        """:meth:`decode_kv_eff` of one step (``attn_par_half`` > 0), in float arithmetic: the
        same operations in the same order."""
        par = num_decodes * self.kv_heads_rank
        if not par > 1e-9:
            par = 1e-9
        return self.kv_eff * par / (par + self.attn_par_half)

    def _pair_seconds(self, d_pairs: float, p_tok: float, p_pairs: float, p_kv: float,
                      fpp: float, kvb: float, d_flops: float, d_bytes: float,
                      p_bytes: float) -> float:
        """:meth:`_attention_layers` for one step in scalar arithmetic (decode + prefill);
        ``d_bytes`` / ``p_bytes``: the decode / prefill kernels' KV bytes per second."""
        a = d_pairs * fpp / d_flops
        b = d_pairs * kvb / d_bytes
        t_dec = a if a >= b else b
        keys = p_pairs / (p_tok if p_tok > 1e-9 else 1e-9)
        eff = (self.attn_eff * keys / (keys + self.attn_kv_half) if self.attn_kv_half > 0
               else self.attn_eff)
        if not eff > 1e-9:
            eff = 1e-9
        a = p_pairs * fpp / (self.bf16_flops * eff)
        b = p_kv * kvb / p_bytes
        return t_dec + (a if a >= b else b)

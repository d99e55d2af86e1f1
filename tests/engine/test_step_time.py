"""Physics of the roofline step-time model, checked against numbers worked out by hand.

The reference is Llama-3.1-8B (config.json: 32 layers, hidden 4096, 32 query heads, 8 KV heads,
head_dim 128, MLP width 14336, vocab 128256, untied LM head) on one H100-SXM, bf16 weights and KV.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator.engine.scheduler import StepPlan
from simulator.engine.step_time import (
    RooflineStepTime,
    StepFeatures,
    allreduce_seconds,
    touched_experts,
)
from simulator.profiles import Calibration, load_gpu, load_model

H100 = load_gpu("H100-SXM")
L8B = load_model("Llama-3.1-8B")

# By hand, per layer of Llama-3.1-8B:
#   attention  q 4096·32·128 = 16,777,216 + k,v 2·4096·8·128 = 8,388,608 + o 32·128·4096 = 16,777,216
#              = 41,943,040
#   MLP        gate, up, down 3·4096·14336 = 176,160,768
#   layer      218,103,808;  × 32 layers = 6,979,321,856
# embedding + LM head: 2 · 128256 · 4096 = 1,050,673,152
# derived_active_params = 6,979,321,856 + 1,050,673,152 = 8,029,995,008 (HF: 8,030,261,248; the
# 266,240 difference is the RMSNorm weights)
# linear FLOPs per token = 2 × (derived_active − embedding) = 2 × 6,979,321,856 = 13,958,643,712
LINEAR_PARAMS_8B = 6_979_321_856
LINEAR_FLOPS_PER_TOKEN_8B = 13_958_643_712
# KV bytes per token: 2 (K, V) × 32 layers × 8 KV heads × 128 × 2 bytes = 131,072
KV_BYTES_8B = 131_072


def model_8b(cal: Calibration | None = None, tp: int = 1) -> RooflineStepTime:
    return RooflineStepTime(L8B, H100, tp=tp, weight_dtype="bf16", kv_dtype="bf16",
                            calibration=cal or Calibration())


def decode_plan(n_seqs: int, ctx: int) -> StepPlan:
    return StepPlan(requests=[None] * n_seqs, num_new_tokens=[1] * n_seqs,  # type: ignore[list-item]
                    context_lens=[ctx] * n_seqs)


def test_linear_flops_per_token_is_twice_the_non_embedding_params():
    assert L8B.derived_active_params() == 8_029_995_008
    assert L8B.derived_active_params() - L8B.embedding_params == LINEAR_PARAMS_8B
    st = model_8b()
    assert st.linear_flops_per_token == LINEAR_FLOPS_PER_TOKEN_8B
    assert st.linear_flops(100) == 100 * LINEAR_FLOPS_PER_TOKEN_8B
    # Sharded over TP ranks.
    assert model_8b(tp=2).linear_flops_per_token == LINEAR_FLOPS_PER_TOKEN_8B / 2


def test_decode_step_reads_the_kv_of_every_attended_token():
    # 32 sequences, each attending to 1000 tokens (999 cached + the new one): 32·1000·131072 bytes.
    cal = Calibration(attn_latency_us=0, attn_per_seq_us=0, kv_bw_efficiency=0.5)
    st = model_8b(cal)
    assert st.kv_bytes_per_token == KV_BYTES_8B
    kv_bytes = 32 * 1000 * KV_BYTES_8B  # 4,194,304,000 bytes
    t = st.breakdown(decode_plan(32, 999)).attention
    # Bandwidth-bound: 4 FLOP per KV byte is far below the ridge point.
    assert t == pytest.approx(kv_bytes / (3350e9 * 0.5), rel=1e-12)


def test_weights_are_streamed_once_per_step_whatever_the_batch():
    st = model_8b()
    # Dense linear weights (scaled to the published 8.03e9 total) + the bf16 LM head; the input
    # embedding is a lookup, not streamed: 13,958,652,390 + 1,050,673,152 ≈ 15,009,325,542 bytes.
    assert st.weight_bytes_per_step(1) == pytest.approx(15_009_325_542, rel=1e-9)
    assert st.weight_bytes_per_step(1) == st.weight_bytes_per_step(256)
    # At batch 1 the dense GEMMs are memory-bound: bytes / (HBM × eff) + one latency per kernel
    # (4 GEMMs per layer).
    cal = Calibration(weight_bw_efficiency=0.8, gemm_latency_us=5.0)
    st = model_8b(cal)
    dense = st.weight_bytes_per_step(1) - st.lm_head_bytes
    assert st.dense_gemm_kernels == 4 * 32
    assert st.breakdown(decode_plan(1, 100)).gemm == pytest.approx(
        dense / (3350e9 * 0.8) + 128 * 5e-6, rel=1e-12)


def test_allreduce_count_is_two_per_layer_with_tp_and_zero_without():
    assert model_8b(tp=1).ar_count == 0
    assert model_8b(tp=1).breakdown(decode_plan(8, 100)).allreduce == 0.0
    st = model_8b(tp=2)
    assert st.ar_count == 2 * 32
    cal = st.cal
    # One decode token per sequence: 8 tokens × 4096 hidden × 2 bytes per all-reduce.
    one = allreduce_seconds(8 * 4096 * 2, 2, link_bps=900e9,
                            latency_s=cal.allreduce_latency_us * 1e-6,
                            bw_efficiency=cal.allreduce_bw_efficiency)
    assert one == pytest.approx(cal.allreduce_latency_us * 1e-6
                                + 1.0 * 65536 / (900e9 * cal.allreduce_bw_efficiency))
    assert st.breakdown(decode_plan(8, 100)).allreduce == pytest.approx(64 * one, rel=1e-12)


def test_moe_touched_experts_is_top_k_at_one_token_and_all_experts_at_many():
    assert touched_experts(128, 8, 1) == pytest.approx(8.0)
    assert touched_experts(8, 2, 1) == pytest.approx(2.0)
    assert touched_experts(128, 8, 10_000) == pytest.approx(128.0, rel=1e-9)
    counts = [touched_experts(128, 8, t) for t in (1, 2, 4, 16, 64, 256)]
    assert all(a < b for a, b in itertools.pairwise(counts))
    # The MoE model streams only the touched experts: more tokens, more expert bytes, up to all.
    q = RooflineStepTime(load_model("Qwen3-30B-A3B"), H100, tp=1, weight_dtype="bf16",
                         kv_dtype="bf16", calibration=Calibration())
    assert q.mlp_weight_bytes(1) == pytest.approx(48 * 8 * q.expert_bytes)
    assert q.mlp_weight_bytes(100_000) == pytest.approx(48 * 128 * q.expert_bytes, rel=1e-9)
    assert q.weight_bytes_per_step(1) < q.weight_bytes_per_step(64)


@pytest.mark.parametrize("model,tp,wdt", [("Llama-3.1-8B", 1, "bf16"), ("Llama-3.1-70B", 4, "fp8"),
                                          ("Qwen3-30B-A3B", 1, "bf16"), ("gpt-oss-120b", 2, "fp4")])
def test_step_time_is_monotone_in_batch_and_context(model, tp, wdt):
    st = RooflineStepTime(load_model(model), H100, tp=tp, weight_dtype=wdt, kv_dtype="bf16",
                          calibration=Calibration())
    by_batch = [st.predict(decode_plan(b, 1000)) for b in (1, 2, 8, 32, 128, 512)]
    assert all(a < b for a, b in itertools.pairwise(by_batch))
    by_ctx = [st.predict(decode_plan(32, c)) for c in (0, 100, 1000, 10_000, 100_000)]
    assert all(a < b for a, b in itertools.pairwise(by_ctx))
    by_prefill = [st.predict(StepPlan(requests=[None], num_new_tokens=[n],  # type: ignore[list-item]
                                      context_lens=[0])) for n in (16, 128, 1024, 8192)]
    assert all(a < b for a, b in itertools.pairwise(by_prefill))


def test_prefill_attention_counts_causal_pairs_and_gets_efficient_with_length():
    cal = Calibration(attn_latency_us=0, attn_per_seq_us=0, attn_efficiency=0.5, attn_kv_half=0)
    st = model_8b(cal)
    # A 1000-token prompt: 1000·1001/2 = 500,500 query-key pairs × 4·32 layers·32 heads·128.
    flops = 500_500 * 4 * 32 * 32 * 128
    plan = StepPlan(requests=[None], num_new_tokens=[1000], context_lens=[0])  # type: ignore[list-item]
    assert st.breakdown(plan).attention == pytest.approx(flops / (989.4e12 * 0.5), rel=1e-12)
    # With kv_half, short prompts run at lower efficiency per FLOP than long ones.
    st2 = model_8b(Calibration(attn_latency_us=0, attn_per_seq_us=0, attn_kv_half=256))

    def per_pair(n: int) -> float:
        p = StepPlan(requests=[None], num_new_tokens=[n], context_lens=[0])  # type: ignore[list-item]
        return st2.breakdown(p).attention / (n * (n + 1) / 2)

    assert per_pair(128) > per_pair(1024) > per_pair(8192)


def test_breakdown_components_add_up_and_arrays_match_scalars():
    st = model_8b(tp=2)
    plan = StepPlan(requests=[None] * 5, num_new_tokens=[1, 1, 1, 300, 40],  # type: ignore[list-item]
                    context_lens=[10, 2000, 500, 0, 4000])
    b = st.breakdown(plan)
    assert b.total == pytest.approx(st.predict(plan), rel=1e-12)
    assert min(b.gemm, b.lm_head, b.attention, b.allreduce, b.overhead, b.other) > 0
    assert st.breakdown_totals(343, 5, 2510, [(300, 0), (40, 4000)]) == b
    # The vectorised path (used by the fitter) gives the same numbers as the scalar one.
    plans = [plan, decode_plan(7, 123), decode_plan(64, 4000)]
    rows = [StepFeatures.from_plan(p) for p in plans]
    arr = StepFeatures(**{k: np.array([getattr(r, k) for r in rows], dtype=float)
                          for k in StepFeatures.__dataclass_fields__})
    np.testing.assert_allclose(st.total(arr), [st.predict(p) for p in plans], rtol=1e-12)


def test_a_run_of_equal_decode_steps_can_be_one_row():
    st = model_8b()
    steps = [decode_plan(16, 100 + j) for j in range(50)]
    total = sum(st.predict(p) for p in steps)
    rows = [StepFeatures.from_plan(p) for p in steps]
    merged = StepFeatures(16.0, 16.0, 16.0, float(sum(r.decode_pairs for r in rows)), 0.0, 0.0,
                          0.0, steps=50.0)
    assert float(st.total(merged)) == pytest.approx(total, rel=1e-12)


def test_fp8_weights_use_the_fp8_peak_and_efficiency():
    cal = Calibration(gemm_efficiency=0.8, gemm_efficiency_fp8=0.4, gemm_m_half=0)
    bf = model_8b(cal)
    f8 = RooflineStepTime(L8B, H100, tp=1, weight_dtype="fp8", kv_dtype="bf16", calibration=cal)
    assert f8.peak_flops == 1979e12 and f8.gemm_eff == 0.4
    assert bf.peak_flops == 989.4e12 and bf.gemm_eff == 0.8
    # int4 weight-only kernels dequantise: bf16 peak and efficiency, a quarter of the bytes.
    i4 = RooflineStepTime(L8B, H100, tp=1, weight_dtype="int4", kv_dtype="bf16", calibration=cal)
    assert i4.peak_flops == 989.4e12 and i4.gemm_eff == 0.8
    assert i4.dense_bytes == pytest.approx(bf.dense_bytes * 0.53 / 2)


def test_empty_step_takes_no_time():
    st = model_8b()
    assert st.predict(StepPlan()) == 0.0
    assert st.breakdown(StepPlan()).total == 0.0


# --------------------------------------------------------------------------------------------
# GEMM size law, FP8 activation quantisation, 4-bit MoE coefficients (opt-in calibration terms)
# --------------------------------------------------------------------------------------------
# Per-rank GEMM classes of Llama-3.1-8B at TP 1 (N, K): QKV (4096 + 2·1024, 4096), O (4096, 4096),
# gate-up (2·14336, 4096), down (4096, 14336). Σ N·K = 25,165,824 + 16,777,216 + 117,440,512
# + 58,720,256 = 218,103,808 = the layer's linear params; Σ K = 3·4096 + 14336 = 26,624.
SUM_K_8B = 26_624


def model_8b_fp8(cal: Calibration) -> RooflineStepTime:
    return RooflineStepTime(L8B, H100, tp=1, weight_dtype="fp8", kv_dtype="bf16", calibration=cal)


def test_gemm_classes_of_llama_8b_sum_to_its_linear_params():
    st = model_8b()
    assert [(n, k) for n, k, _ in st.gemm_classes] == [
        (6144.0, 4096.0), (4096.0, 4096.0), (28672.0, 4096.0), (4096.0, 14336.0)]
    assert sum(n * k * c for n, k, c in st.gemm_classes) * 32 == LINEAR_PARAMS_8B
    assert not st.sized_gemms  # the default calibration keeps one aggregate GEMM


def test_per_class_gemms_equal_the_aggregate_when_compute_bound_and_no_size_law():
    # nk_half = 1e-9 switches the per-class path on while leaving every efficiency at eff × ~1.
    plain = model_8b_fp8(Calibration())
    split = model_8b_fp8(Calibration(gemm_nk_half_fp8=1e-9))
    assert split.sized_gemms and not plain.sized_gemms
    f = StepFeatures.from_totals(8192, 4, 0, [(2048, 0)] * 4)
    assert float(split.components(f)[0]) == pytest.approx(float(plain.components(f)[0]), rel=1e-9)


def test_fp8_activation_quantisation_adds_three_bytes_per_input_element_and_a_launch():
    base = Calibration(gemm_nk_half_fp8=1e-9)
    quant = base.model_copy(update={"fp8_act_quant": True, "fp8_act_quant_latency_us": 2.0})
    T = 1000
    f = StepFeatures.from_totals(T, T, 0, [])
    extra = float(model_8b_fp8(quant).components(f)[0]) - float(model_8b_fp8(base).components(f)[0])
    # 32 layers × (3 B × T × ΣK at 3.35 TB/s × weight_bw_efficiency + 4 kernels × 2 µs)
    by_hand = 32 * (3 * T * SUM_K_8B / (3.35e12 * base.weight_bw_efficiency) + 4 * 2e-6)
    assert extra == pytest.approx(by_hand, rel=1e-9)
    # bf16 weights have no activation quantisation.
    bf16 = model_8b(quant)
    assert float(bf16.components(f)[0]) == pytest.approx(
        float(model_8b(base).components(f)[0]), rel=1e-12)


def test_size_law_halves_the_efficiency_of_a_gemm_of_nk_half_weights():
    # With nk_half = N·K of the O projection (16,777,216), that class runs at half efficiency:
    # its compute time doubles; the other classes slow by NK/(NK + nk_half) too.
    nk_o = 4096.0 * 4096.0
    cal = Calibration(gemm_nk_half=nk_o, gemm_m_half=0.0, gemm_latency_us=0.0)
    st = model_8b(cal)
    T = 8192
    f = StepFeatures.from_totals(T, 1, 0, [(T, 0)])
    peak = H100.bf16_tflops * 1e12 * cal.gemm_efficiency
    by_hand = sum(2.0 * n * k * T * 32 * c / (peak * n * k / (n * k + nk_o))
                  for n, k, c in st.gemm_classes)
    assert float(st.components(f)[0]) == pytest.approx(by_hand, rel=1e-9)
    assert float(st.components(f)[0]) > float(model_8b(cal.model_copy(
        update={"gemm_nk_half": nk_o / 10})).components(f)[0])


def test_four_bit_experts_use_their_own_moe_coefficients_when_calibrated():
    oss = load_model("gpt-oss-120b")

    def moe(cal: Calibration) -> float:
        st = RooflineStepTime(oss, H100, tp=2, weight_dtype="fp4", kv_dtype="bf16",
                              calibration=cal)
        return float(st.components(StepFeatures.from_totals(32, 32, 32 * 1000, []))[0])

    base = Calibration()
    assert moe(base.model_copy(update={"moe_bw_efficiency_fp4": base.moe_bw_efficiency,
                                       "moe_efficiency_fp4": base.moe_efficiency,
                                       "moe_latency_us_fp4": base.moe_latency_us})) == moe(base)
    slower = base.model_copy(update={"moe_bw_efficiency_fp4": base.moe_bw_efficiency / 2,
                                     "moe_latency_us_fp4": base.moe_latency_us * 2})
    assert moe(slower) > moe(base)
    # fp8 experts ignore the 4-bit coefficients.
    fp8 = RooflineStepTime(oss, H100, tp=2, weight_dtype="fp8", kv_dtype="bf16", calibration=slower)
    ref = RooflineStepTime(oss, H100, tp=2, weight_dtype="fp8", kv_dtype="bf16", calibration=base)
    f = StepFeatures.from_totals(32, 32, 32 * 1000, [])
    assert float(fp8.components(f)[0]) == float(ref.components(f)[0])


@pytest.mark.parametrize("gpu,model,tp,wdt", [
    ("H100-SXM", "Llama-3.1-8B", 1, "bf16"), ("H100-SXM", "Llama-3.1-70B", 4, "fp8"),
    ("H200-SXM", "Qwen3-235B-A22B", 4, "fp8"), ("H100-SXM", "gpt-oss-120b", 2, "fp4"),
    ("MI300X", "Llama-3.1-70B", 1, "bf16")])
def test_predict_totals_is_predict_bit_for_bit_with_its_shape_cache(gpu, model, tp, wdt):
    # The replica's fast path prices steps with predict_totals, which caches the terms that
    # depend only on (tokens, sequences); every step must cost exactly what predict() says.
    from simulator.profiles import find_calibration
    g = load_gpu(gpu)
    found = find_calibration(g.name, None)
    cal = found.coefficients if found is not None else Calibration()
    st = RooflineStepTime(load_model(model), g, tp=tp, weight_dtype=wdt, kv_dtype="bf16",
                          calibration=cal)
    rng = np.random.default_rng(7)
    for _ in range(400):
        n_dec = int(rng.integers(0, 40))
        pre = [(int(rng.integers(2, 3000)), int(rng.integers(0, 4000)))
               for _ in range(int(rng.integers(0, 3)))]
        ctx = [int(rng.integers(1, 5000)) for _ in range(n_dec)]
        # Shapes repeat (a small token grid), so the cache is hit as well as filled.
        news = [1] * n_dec + [n for n, _ in pre]
        plan = StepPlan(requests=[None] * len(news), num_new_tokens=news,  # type: ignore[list-item]
                        context_lens=ctx + [c for _, c in pre])
        if not news:
            continue
        want = st.predict(plan)
        assert st.predict_totals(plan.num_tokens, plan.num_seqs, sum(ctx), pre) == want
        assert st.predict_totals(plan.num_tokens, plan.num_seqs, sum(ctx), pre) == want
    # The replica's run-ahead prices plain decode steps with decode_seconds_fn: the same numbers.
    # ... or inline with decode_terms (None for a model with sliding-window layers).
    for n in (1, 2, 7, 64, 255):
        seconds = st.decode_seconds_fn(n)
        terms = st.decode_terms(n)
        assert (terms is None) == bool(st.window)
        for ctx in rng.integers(0, 8_000, 50):
            want = st.predict(decode_plan(n, int(ctx)))
            assert seconds(n * int(ctx)) == want
            if terms is not None:
                fpp, d_flops, kvb, d_bytes, launches, gl, ar, o, x = terms
                pairs = float(n * int(ctx) + n)
                a, b = pairs * fpp / d_flops, pairs * kvb / d_bytes
                assert float(gl + ((a if a >= b else b) + launches) + ar + o + x) == want


def test_sliding_window_layers_attend_to_at_most_the_window():
    # gpt-oss-120b: 36 layers, half of them with a 128-token window; KV per token per layer
    # 2 (K, V) × 8 heads × 64 × 2 bytes = 2,048 bytes, 73,728 over all 36 layers.
    oss = load_model("gpt-oss-120b")
    assert (oss.sliding_window, oss.sliding_window_layers) == (128, 18)
    cal = Calibration(attn_latency_us=0, attn_per_seq_us=0, kv_bw_efficiency=0.5)
    st = RooflineStepTime(oss, H100, tp=1, weight_dtype="fp4", kv_dtype="bf16", calibration=cal)
    assert st.kv_bytes_per_token == 73_728 and st.window == 128
    # Decode, 8 sequences at context 999: the 18 full layers read 8 × 1000 tokens, the 18
    # windowed ones 8 × 128 (all bandwidth-bound).
    t = st.breakdown(decode_plan(8, 999)).attention
    assert t == pytest.approx((8 * 1000 + 8 * 128) * 18 * 2048 / (3350e9 * 0.5), rel=1e-12)
    # Prefill pairs of a windowed layer, by hand: a 200-token prompt from scratch sees
    # 1 + 2 + … + 128 keys, then 128 for each of the last 72 queries; a 50-token chunk after
    # 100 cached tokens ramps from 101 to 128 keys over 28 queries, then 22 × 128.
    f = StepFeatures.from_totals(250, 2, 0, [(200, 0), (50, 100)], window=128)
    assert f.window_prefill_pairs == sum(min(t, 128) for t in range(1, 201)) + sum(
        min(100 + t, 128) for t in range(1, 51))
    assert f.window_prefill_pairs == 8256 + 9216 + 6022
    assert f.window_prefill_kv_tokens == (0 + 200) + (100 + 50)
    assert f.prefill_pairs == 200 * 100.5 + 50 * (100 + 25.5)  # full layers unchanged
    # A long prompt: windowed layers cost a fraction of the full ones, so the step is cheaper
    # than pricing all 36 layers as full attention.
    full = RooflineStepTime(oss.model_copy(update={"sliding_window_layers": 0}), H100, tp=1,
                            weight_dtype="fp4", kv_dtype="bf16", calibration=cal)
    assert full.window == 0
    long = StepPlan(requests=[None], num_new_tokens=[8192],  # type: ignore[list-item]
                    context_lens=[0])
    assert st.breakdown(long).attention < 0.6 * full.breakdown(long).attention


def test_decode_attention_parallelism_law_slows_few_sequence_kv_head_pairs_only():
    # attn_par_half P½: decode KV bandwidth = kv_bw_efficiency × P / (P + P½), P = sequences × KV
    # heads per rank. Llama-3.1-8B TP1 has 8 KV heads per rank, TP8 one.
    base = Calibration(attn_par_half=0.0)
    law = Calibration(attn_par_half=16.0)

    def attn(cal: Calibration, tp: int, n: int) -> float:
        st = RooflineStepTime(L8B, H100, tp=tp, weight_dtype="bf16", kv_dtype="bf16",
                              calibration=cal)
        return float(st.components(StepFeatures.from_totals(n, n, n * 4000, []))[2])

    for tp, n in ((1, 2), (8, 2), (8, 512)):
        kvh = 8 // tp
        p = n * kvh
        lat = 32 * (base.attn_latency_us + base.attn_per_seq_us * n) * 1e-6
        # The bandwidth-bound part grows by exactly (P + P½) / P.
        assert (attn(law, tp, n) - lat) == pytest.approx((attn(base, tp, n) - lat) * (p + 16) / p)
    # Many pairs: within 0.5 % of the plain roofline.
    assert attn(law, 1, 512) == pytest.approx(attn(base, 1, 512), rel=5e-3)


def test_multi_step_scheduling_shares_the_cpu_overhead_of_decode_steps_only():
    cal = Calibration(step_overhead_us=1000.0, per_seq_overhead_us=10.0, per_token_overhead_us=0.0)
    one = RooflineStepTime(L8B, H100, tp=1, weight_dtype="bf16", kv_dtype="bf16", calibration=cal)
    ms = RooflineStepTime(L8B, H100, tp=1, weight_dtype="bf16", kv_dtype="bf16", calibration=cal,
                          scheduler_steps=8)
    dec = one.breakdown_totals(64, 64, 64 * 500, [])
    dec8 = ms.breakdown_totals(64, 64, 64 * 500, [])
    assert dec.overhead == pytest.approx((1000 + 64 * 10) * 1e-6)
    assert dec8.overhead == pytest.approx(dec.overhead / 8)
    assert dec8.total - dec8.overhead == pytest.approx(dec.total - dec.overhead)
    # A step with a prefill pays the whole overhead (a new scheduling pass).
    pre = ms.breakdown_totals(64 + 500, 65, 64 * 500, [(500, 0)])
    assert pre.overhead == pytest.approx(one.breakdown_totals(564, 65, 64 * 500,
                                                              [(500, 0)]).overhead)
    # Arrays (the fitter) and scalars agree.
    f = StepFeatures(np.array([64.0, 564.0]), np.array([64.0, 65.0]), np.array([64.0, 64.0]),
                     np.array([64 * 501.0, 64 * 501.0]), np.array([0.0, 500.0]),
                     np.array([0.0, 500 * 250.5]), np.array([0.0, 500.0]))
    over = ms.components(f)[4]
    assert over[0] == pytest.approx(dec8.overhead) and over[1] == pytest.approx(pre.overhead)

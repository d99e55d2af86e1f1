"""The ``aiconfigurator`` step-time backend: coverage errors and the missing-package error (always),
the plan → kernel-query mapping, the shape caches and a scenario end to end (only where the
optional package ``aiconfigurator-core`` is installed)."""

from __future__ import annotations

import json
import sys
from importlib import resources

import pytest

from simulator import simulate
from simulator.config import scenario_from_dict
from simulator.engine import step_time_aic
from simulator.engine.request import Request
from simulator.engine.scheduler import StepPlan
from simulator.engine.step_time_aic import (
    AIC_CHECKPOINTS,
    AIC_KV_DTYPES,
    AIC_SYSTEMS,
    CONTEXT_BUCKET,
    AiconfiguratorStepTime,
)
from simulator.errors import ConfigError
from simulator.profiles import load_gpu, load_model

try:
    import aiconfigurator_core  # noqa: F401

    HAVE_AIC = True
except ImportError:
    HAVE_AIC = False

needs_aic = pytest.mark.skipif(not HAVE_AIC, reason="optional package aiconfigurator-core not "
                               "installed (pip install \"servesim[aiconfigurator]\")")


def plan(entries: list[tuple[int, int]]) -> StepPlan:
    """A step of (new tokens, context before the step) entries."""
    reqs = [Request(i, max(ctx + n, 1), 8) for i, (n, ctx) in enumerate(entries)]
    return StepPlan(reqs, [n for n, _ in entries], [c for _, c in entries])


def aic_scenario(**step_time: object) -> dict:
    return {
        "model": {"name": "Llama-3.1-8B", "weight_dtype": "bf16"},
        "fleet": {"gpu": "H100-SXM", "tp": 1},
        "engine": {"max_model_len": 4096, "max_num_batched_tokens": 2048},
        "step_time": {"backend": "aiconfigurator", **step_time},
        "workload": {"arrival": {"kind": "closed_loop", "concurrency": 8},
                     "input_len": {"kind": "fixed", "value": 700},
                     "output_len": {"kind": "fixed", "value": 40},
                     "num_requests": 24},
    }


# ---------------------------------------------------------------------------------------------
# Always: coverage tables, refusals, the missing-package error, config checks
# ---------------------------------------------------------------------------------------------


def test_mapping_tables_name_existing_profiles():
    for gpu in AIC_SYSTEMS:
        assert load_gpu(gpu).name == gpu
    for model, dtype in AIC_CHECKPOINTS:
        assert dtype in load_model(model).weight_dtypes, (model, dtype)
    assert set(AIC_KV_DTYPES) == {"bf16", "fp8"}


def test_unsupported_gpu_model_and_dtype_are_one_line_config_errors():
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", tp=1, weight_dtype="bf16", kv_dtype="bf16",
              is_moe=False)
    with pytest.raises(ConfigError, match=r"step_time\.backend.*GPU 'MI300X'.*H100-SXM") as e:
        AiconfiguratorStepTime(**{**kw, "gpu": "MI300X"})  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"does not cover Llama-2-70B with bf16.*Qwen3-32B fp8"):
        AiconfiguratorStepTime(**{**kw, "model": "Llama-2-70B"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"does not cover Llama-3.1-8B with int4"):
        AiconfiguratorStepTime(**{**kw, "weight_dtype": "int4"})  # type: ignore[arg-type]
    # The same refusal through a scenario, before any simulation.
    sc = scenario_from_dict({**aic_scenario(), "fleet": {"gpu": "MI300X", "tp": 1}})
    with pytest.raises(ConfigError, match=r"step_time\.backend: aiconfigurator does not cover"):
        simulate(sc)


def test_missing_package_says_how_to_install_it(monkeypatch):
    # Make the package unimportable (as on a machine without the extra), with no engine cached.
    monkeypatch.setitem(sys.modules, "aiconfigurator_core", None)
    monkeypatch.setitem(sys.modules, "aiconfigurator_core.sdk", None)
    monkeypatch.setattr(step_time_aic, "_ENGINES", {})
    with pytest.raises(ConfigError) as e:
        simulate(scenario_from_dict(aic_scenario()))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("step_time.backend: 'aiconfigurator' needs")
    assert 'pip install "servesim[aiconfigurator]"' in msg


def test_config_refuses_settings_the_backend_ignores():
    with pytest.raises(ConfigError, match="only read by backend 'aiconfigurator'"):
        scenario_from_dict({"step_time": {"aiconfigurator_version": "0.24.0"}})
    with pytest.raises(ConfigError, match="only read by backend 'aiconfigurator'"):
        scenario_from_dict({"step_time": {"aiconfigurator_cpu_overhead": True}})
    with pytest.raises(ConfigError, match="set aiconfigurator_cpu_overhead: true"):
        scenario_from_dict({"step_time": {"backend": "aiconfigurator", "calibration": "prior"}})
    with pytest.raises(ConfigError, match="no effect with backend 'aiconfigurator'"):
        scenario_from_dict({"step_time": {"backend": "aiconfigurator",
                                          "overrides": {"gemm_efficiency": 0.5}}})
    sc = scenario_from_dict(aic_scenario(aiconfigurator_version="0.24.0",
                                         aiconfigurator_cpu_overhead=False))
    assert sc.step_time.backend == "aiconfigurator"


# ---------------------------------------------------------------------------------------------
# With the package: mapping, cache, architecture agreement, end to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama() -> AiconfiguratorStepTime:
    return AiconfiguratorStepTime(model="Llama-3.1-8B", gpu="H100-SXM", tp=1,
                                  weight_dtype="bf16", kv_dtype="bf16", is_moe=False)


@needs_aic
def test_shipped_configs_have_our_architectures():
    root = resources.files("aiconfigurator_core") / "model_configs"
    for (model, _), (model_id, _, _) in AIC_CHECKPOINTS.items():
        cfg = json.loads((root / f"{model_id.replace('/', '--')}_config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        m = load_model(model)
        assert cfg["num_hidden_layers"] == m.num_layers, model_id
        assert cfg["hidden_size"] == m.hidden_size, model_id
        assert cfg["num_attention_heads"] == m.num_attention_heads, model_id
        assert cfg["num_key_value_heads"] == m.num_kv_heads, model_id
        experts = cfg.get("num_local_experts") or cfg.get("num_experts") or 1  # dense: 1
        assert experts == m.num_experts, model_id


@needs_aic
def test_a_step_is_the_sum_of_its_kernel_queries(llama):
    st = llama
    # Decode only (no calibration given: kernels only): the shared ops at M = 4 tokens, 4 sampled
    # rows, plus one decode-attention call at the mean context + 1 (1000 + 1 → the 1008 bucket).
    dec = plan([(1, 990), (1, 1010), (1, 1000), (1, 1000)])
    expect = st.shared_ms(4, 4) + st.decode_attention_ms(4, 1000.0)
    assert st.predict(dec) == pytest.approx(expect * 1e-3)
    # Mixed: two prefill chunks, each its own attention call, and the decodes together.
    mix = plan([(512, 0), (256, 512), (1, 2000), (1, 3000)])
    expect = (st.shared_ms(770, 4) + st.prefill_attention_ms(512, 0)
              + st.prefill_attention_ms(256, 512) + st.decode_attention_ms(2, 2500.0))
    assert st.predict(mix) == pytest.approx(expect * 1e-3)
    assert st.predict(StepPlan()) == 0.0
    # From the step's totals (the replica's fast path): the same number, whatever the chunk order.
    assert st.predict_totals(770, 4, 5000, [(256, 512), (512, 0)]) == st.predict(mix)
    # Physical sanity of the measured kernels: more tokens, more context → not faster.
    assert st.shared_ms(2048, 1) > st.shared_ms(64, 1)
    assert st.decode_attention_ms(64, 4000.0) > st.decode_attention_ms(64, 500.0)
    assert st.prefill_attention_ms(512, 2048) > st.prefill_attention_ms(512, 0)


@needs_aic
def test_cpu_overhead_comes_from_the_calibration(llama):
    from simulator.profiles import Calibration

    cal = Calibration(step_overhead_us=2000.0, per_seq_overhead_us=20.0, per_token_overhead_us=1.0)
    with_cpu = AiconfiguratorStepTime(model="Llama-3.1-8B", gpu="H100-SXM", tp=1,
                                      weight_dtype="bf16", kv_dtype="bf16", is_moe=False,
                                      calibration=cal)
    p = plan([(300, 0), (1, 100), (1, 200)])
    extra = (2000.0 + 20.0 * 3 + 1.0 * 302) * 1e-6
    assert with_cpu.predict(p) == pytest.approx(llama.predict(p) + extra)


@needs_aic
def test_repeated_shapes_are_not_requeried(llama):
    st = AiconfiguratorStepTime(model="Llama-3.1-8B", gpu="H100-SXM", tp=1, weight_dtype="bf16",
                                kv_dtype="bf16", is_moe=False)
    p = plan([(128, 0), (1, 700), (1, 900)])
    first = st.predict(p)
    n = st.queries
    assert n == 3  # shared ops, one prefill chunk, the decodes
    assert st.predict(plan([(128, 0), (1, 700), (1, 900)])) == first
    assert st.queries == n
    # Decode contexts within one bucket share a query; the next bucket is a new one.
    a = st.predict(plan([(1, 800)] * 8))
    q = st.queries
    b = st.predict(plan([(1, 800 + CONTEXT_BUCKET // 2 - 2)] * 8))
    assert st.queries == q and a == b
    st.predict(plan([(1, 800 + 2 * CONTEXT_BUCKET)] * 8))
    assert st.queries == q + 1
    # A fresh instance (empty caches) gives the same numbers: caching changes no result.
    assert llama.predict(p) == first


@needs_aic
def test_moe_layout_falls_back_to_ep_where_only_ep_was_measured():
    kw = dict(model="MiniMax-M2", gpu="H200-SXM", weight_dtype="fp8", kv_dtype="bf16",
              is_moe=True)
    # MiniMax's block-FP8 experts (width 1536) cannot be split 8 ways in 128-wide blocks.
    assert AiconfiguratorStepTime(tp=8, **kw).moe_layout == "ep"  # type: ignore[arg-type]
    assert AiconfiguratorStepTime(tp=2, **kw).moe_layout == "tp"  # type: ignore[arg-type]


@needs_aic
def test_unknown_data_version_and_missing_dtype_data_are_config_errors():
    with pytest.raises(ConfigError, match=r"step_time\.backend: aiconfigurator refused"):
        AiconfiguratorStepTime(model="Llama-3.1-8B", gpu="H100-SXM", tp=1, weight_dtype="bf16",
                               kv_dtype="bf16", is_moe=False, version="0.0.1")
    # A100 has no FP8 tensor cores, so aiconfigurator cannot model FP8 weights there.
    with pytest.raises(ConfigError, match=r"step_time\.backend: aiconfigurator .*a100_sxm"):
        AiconfiguratorStepTime(model="Llama-3.1-8B", gpu="A100-80G", tp=1, weight_dtype="fp8",
                               kv_dtype="bf16", is_moe=False)


@needs_aic
def test_scenario_end_to_end_conserves_is_deterministic_and_near_the_roofline():
    sc = scenario_from_dict(aic_scenario())
    a, b = simulate(sc), simulate(sc)
    req = a.requests
    assert len(req) == 24 and (req["outcome"] == "completed").all()
    assert req["output_tokens"].eq(40).all()
    assert a.requests["ttft_s"].tolist() == b.requests["ttft_s"].tolist()
    assert a.requests["tpot_s"].tolist() == b.requests["tpot_s"].tolist()
    # The replica's decode fast path (predict_totals) gives the same results as step by step.
    slow = simulate(scenario_from_dict({**aic_scenario(), "sim": {"fast_path": False}})).requests
    assert slow["ttft_s"].tolist() == req["ttft_s"].tolist()
    assert slow["finish_s"].tolist() == req["finish_s"].tolist()
    # aiconfigurator_cpu_overhead adds the calibration's CPU-side cost to every step. The default
    # vllm-0.24 family has a V1 prior of zero overhead (nothing to add: identical results); the
    # pre-V1 family v0 has a fitted one.
    v1 = simulate(scenario_from_dict(aic_scenario(aiconfigurator_cpu_overhead=True))).requests
    assert v1["tpot_s"].tolist() == req["tpot_s"].tolist()
    cpu = simulate(scenario_from_dict(aic_scenario(aiconfigurator_cpu_overhead=True,
                                                   calibration="v0"))).requests
    assert (cpu["tpot_s"] > req["tpot_s"]).all()
    # Cross-check: the roofline's GPU terms were fitted on the same vendor's kernel tables, so with
    # the same CPU overhead the two backends agree on this small dense model's TPOT within 25 %.
    roof = simulate(scenario_from_dict({**aic_scenario(),
                                        "step_time": {"calibration": "v0"}})).requests
    ratio = cpu["tpot_s"].mean() / roof["tpot_s"].mean()
    assert 0.75 < ratio < 1.25
